"""The fidelity study on a labelled bank (ropd_kit.fidelity.study with `bank`, decided, links, the CLI's --bank).

Unit part, on a study folder written by hand (no model): three prompts with a good, a harmful, a flipped and a vague
answer each, two with a reference rubric, two teacher references per prompt, one variant's induced judging and its
judging under the reference rubrics, with known scores and verdicts — so every number of the report is known.
The integration test judges a tiny bank for real with SmolLM2-135M on the session's local server and checks the
loss split against the records the judging wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ropd_kit import rundir
from ropd_kit.fidelity import study as fs
from ropd_kit.fidelity.__main__ import main
from ropd_kit.fidelity.decided import advantage_use, reward_parts, zero_spread
from ropd_kit.fidelity.links import criteria_separation, kind_auc
from ropd_kit.fidelity.variants import parse_variant
from ropd_kit.scoring import weighted_score

KINDS = ["good", "harmful", "flipped", "vague"]
LABELS = [1, 0, 0, 0]
# Induced (whole chain) scores: the flipped answer ties the good one; prompt p2's group has no spread at all.
CHAIN = {"p0": [0.8, 0.2, 0.8, 0.5], "p1": [0.8, 0.2, 0.8, 0.5], "p2": [0.5, 0.5, 0.5, 0.5]}
# Induced verdicts on criteria c1 (3 points) and c2 (1): c1 passes the harmful answer only as false, c2 passes all.
CHAIN_VERDICTS = {"good": [True, True], "harmful": [False, True], "flipped": [True, True], "vague": [True, True]}
# Under the reference rubrics (p0, p1 only): the Verifier alone orders every answer right.
REFERENCE = [1.0, 0.0, 0.0, 0.5]
REFERENCE_POINTS = [5, -5]  # r1 "advises the right thing", r2 a pitfall "gives harmful advice"
REFERENCE_VERDICTS = {"good": [True, False], "harmful": [False, True], "flipped": [False, False],
                      "vague": [False, False]}
# p1's reference verdicts are soft: r2's booleans are all False (flat), its probabilities separate.
SOFT_R2 = {"good": 0.1, "harmful": 0.6, "flipped": 0.3, "vague": 0.2}


def rubric_items(task: str) -> list[dict] | None:
    if task == "p2":
        return None
    return [{"criterion": "Advises the right thing", "points": 5, "tags": ["axis:accuracy"]},
            {"criterion": "Gives harmful advice", "points": -5, "tags": ["axis:safety"]}]


def make_bank_study(tmp_path: Path, *, graded: bool = False) -> fs.StudyConfig:
    """A labelled-bank study folder written by hand; returns its StudyConfig (saved as study.json)."""
    study = fs.StudyConfig(bank="bank.jsonl", out=str(tmp_path / "study"), variants=["base"], signals=[], n_boot=200)
    bank = study.bank_path
    tasks, refs, answers = [], [], []
    labels = [3.0, 0.0, 1.0, 2.0] if graded else LABELS
    for task in CHAIN:
        record = {"id": task, "prompt": f"Everyday question {task}?", "answer": None, "domain": "general"}
        if rubric_items(task):
            record["rubric"] = rubric_items(task)
        tasks.append(record)
        for k in range(2):
            refs.append({"task_id": task, "ref_idx": k, "text": f"Teacher reference {k} for {task}.", "model": "m",
                         "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
        for i, kind in enumerate(KINDS):
            answers.append({"task_id": task, "step": 0, "rollout_idx": i, "text": f"A {kind} answer to {task}.",
                            "n_tokens": None, "truncated": False, "label": labels[i], "kind": kind})
    rundir.write_jsonl(bank / rundir.TASKS, tasks)
    rundir.write_jsonl(bank / rundir.TEACHER_REFS, refs)
    rundir.write_jsonl(bank / rundir.ROLLOUTS, answers)
    (bank / fs.LABELLED_BANK_FILE).write_text(json.dumps({
        "source": "bank.jsonl", "shapes": {"ours": 3}, "n_prompts": 3, "n_answers": 12,
        "labels": "graded" if graded else "binary", "kinds": {k: 3 for k in KINDS},
        "n_prompts_with_reference_rubric": 2, "n_prompts_one_label": 0}))

    chain_rubrics, chain_verdicts, ref_rubrics, ref_verdicts = [], [], [], []
    for task, scores in CHAIN.items():
        chain_rubrics.append({"task_id": task, "step": 0, "model": "m", "n_teacher": 2, "n_student": 4, "criteria": [
            {"id": "c1", "text": "Gives the safe advice", "points": 3, "category": "safety"},
            {"id": "c2", "text": "Is polite", "points": 1, "category": "style"}]})
        for i, kind in enumerate(KINDS):
            chain_verdicts.append({"task_id": task, "step": 0, "answer_key": f"student-{i}", "source": "student",
                                   "answer_idx": i, "rollout_idx": i, "judgements": CHAIN_VERDICTS[kind],
                                   "score": scores[i]})
        for k in range(2):
            chain_verdicts.append({"task_id": task, "step": 0, "answer_key": f"teacher-{k}", "source": "teacher",
                                   "answer_idx": k, "ref_idx": k, "judgements": [True, True], "score": 0.9})
        if not rubric_items(task):
            continue
        ref_rubrics.append({"task_id": task, "step": 0, "model": "m", "source": "reference",
                            "reference_points": REFERENCE_POINTS, "criteria": [
                                {"id": "r1", "text": "Advises the right thing", "points": 5, "category": "accuracy"},
                                {"id": "r2", "text": "Gives harmful advice", "points": -2, "category": "safety"}]})
        for i, kind in enumerate(KINDS):
            judgements = list(REFERENCE_VERDICTS[kind])
            record = {"task_id": task, "step": 0, "answer_key": f"student-{i}", "source": "student",
                      "answer_idx": i, "rollout_idx": i, "judgements": judgements, "score": REFERENCE[i]}
            if task == "p1":
                record["judgements"] = [judgements[0], False]
                record["probabilities"] = [float(judgements[0]), SOFT_R2[kind]]
            ref_verdicts.append(record)
        for k in range(2):  # the teacher's references meet half the reference rubric
            ref_verdicts.append({"task_id": task, "step": 0, "answer_key": f"teacher-{k}", "source": "teacher",
                                 "answer_idx": k, "ref_idx": k, "judgements": [False, False], "score": 0.5})
    for folder, rubrics, verdicts in ((study.variant_path("base"), chain_rubrics, chain_verdicts),
                                      (study.reference_path("base"), ref_rubrics, ref_verdicts)):
        rundir.write_jsonl(folder / rundir.RUBRICS, rubrics)
        rundir.write_jsonl(folder / rundir.VERDICTS, verdicts)
        (folder / fs.USAGE_FILE).write_text(json.dumps({"variant": "base", "wall_s": 6.0, "usage": {
            "verifier": {"prompt_tokens": 600, "completion_tokens": 60}}}))
    study.save()
    return study


@pytest.fixture
def result(tmp_path):
    return fs.summarise_study(make_bank_study(tmp_path))


def test_the_bank_labels_decide_correct_and_kinds_are_kept(tmp_path):
    study = make_bank_study(tmp_path)
    bank = fs.Bank.read(study.bank_path)
    assert bank.labelled and not bank.graded
    frame = bank.frame()
    assert list(frame["correct"])[:4] == [True, False, False, False] and list(frame["kind"])[:4] == KINDS
    assert list(frame["label"])[:4] == [1.0, 0.0, 0.0, 0.0]
    graded = fs.Bank.read(make_bank_study(tmp_path / "g", graded=True).bank_path)
    assert graded.graded
    # Graded labels: the prompt's best answers are the right ones for tables by class.
    assert list(graded.frame()["correct"])[:4] == [True, False, False, False]


def test_within_prompt_auc_ties_and_per_kind_from_the_judged_records(result):
    assert result["labels"] == "binary"
    assert list(result["signals"]) == ["rubric:base", "reference:base"]
    within = result["signals"]["rubric:base"]["within_group_auc"]["all"]
    # p0, p1: harmful won, flipped tied, vague won (2.5 of 3); p2: three ties (1.5 of 3).
    assert (within["n_pairs"], within["n_ties"]) == (9, 5)
    assert within["auc"] == pytest.approx(6.5 / 9) and within["low"] <= within["auc"] <= within["high"]
    kinds = result["by_kind"]["rubric:base"]
    assert set(kinds) == {"harmful", "flipped", "vague"}
    assert kinds["harmful"]["auc"] == pytest.approx(2.5 / 3) and kinds["flipped"]["auc"] == 0.5
    assert (kinds["flipped"]["n_pairs"], kinds["flipped"]["n_ties"]) == (3, 3)
    reference = result["signals"]["reference:base"]["within_group_auc"]["all"]
    assert reference["auc"] == 1.0 and reference["n_pairs"] == 6 and reference["n_ties"] == 0
    assert result["by_kind"]["reference:base"]["flipped"]["auc"] == 1.0
    table = fs.kind_table(result)
    assert len(table) == 6 and set(table["kind"]) == {"harmful", "flipped", "vague"}


def test_the_report_fields_of_a_variant(result):
    base = result["variants"]["base"]
    assert base["zero_spread"] == {"n_groups": 3, "n_zero_std": 1, "frac_reward_zero_std": pytest.approx(1 / 3),
                                   "n_groups_unscored": 0}
    assert base["decided"]["answers_checked"] == 0 and base["decided"]["answers"] == 12
    assert base["decided"]["mean_verifier_part"] == pytest.approx(
        3 * (1 + 0.25 + 1 + 1) / 12)  # c1 and c2 over 4 points, no criterion decided by code
    assert base["judge_s_per_scored_answer"] == pytest.approx(6.0 / 12)
    assert base["verifier_failures"]["groups"]["all"]["groups_failed"] == 0
    assert result["references"]["base"]["zero_spread"]["frac_reward_zero_std"] == 0.0
    assert "verifier_part:base" not in result["signals"]  # nothing was decided by code: the reward is the Verifier's
    bank = result["bank"]
    assert bank["labelled"]["kinds"] == {k: 3 for k in KINDS}
    assert bank["answer_check_vs_labels"]["n_checked"] == 0  # open-ended answers: nothing to check by code
    assert base["result_value"]["all"]["share_right"] is None  # open-ended: no result to name
    rows = fs.variant_table(result)
    assert list(rows["rubric"]) == ["induced", "reference"]
    assert rows.loc[0, "zero-spread groups"] == pytest.approx(1 / 3)


def test_the_loss_split_between_teacher_rubricator_and_verifier(result):
    split = result["loss_split"]["base"]
    assert split["n_prompts"] == 2
    assert split["verifier_under_reference"]["auc"] == 1.0
    assert split["whole_chain"]["auc"] == pytest.approx(5 / 6)  # p0 and p1 only
    assert split["lost_by_teacher_and_rubricator"] == pytest.approx(1 / 6)
    teacher = split["teacher_under_reference"]
    assert (teacher["n_refs"], teacher["refs_score"], teacher["good_score"]) == (4, 0.5, 1.0)
    assert teacher["flawed_score"] == pytest.approx((0 + 0 + 0.5) / 3)
    assert teacher["refs_vs_good"]["auc"] == 0.0  # every reference below the good answer: the teacher is weaker
    assert teacher["refs_vs_flawed"]["auc"] == pytest.approx(2.5 / 3)
    assert split["teacher_under_induced"]["refs_vs_good"]["auc"] == 1.0
    # Induced: c1 separates (the harmful answer fails it), c2 passes everything; reference: both separate, p1's
    # pitfall only through its probabilities.
    assert (split["induced_criteria"]["separating"], split["induced_criteria"]["flat"]) == (2, 2)
    assert split["reference_criteria"]["share_separating"] == 1.0
    table = fs.loss_table(result)
    assert table.loc[0, "Verifier, reference rubric"].startswith("1.00") and table.loc[0, "prompts"] == 2


def test_graded_labels_compare_order_within_a_prompt(tmp_path):
    result = fs.summarise_study(make_bank_study(tmp_path, graded=True))
    assert result["labels"] == "graded"
    chain = result["signals"]["rubric:base"]
    assert chain["auc"]["all"]["auc"] is None and "graded" in chain["auc"]["all"]["note"]
    within = chain["within_group_auc"]["all"]
    # labels good 3 > vague 2 > flipped 1 > harmful 0: 6 ordered pairs per prompt
    assert within["n_pairs"] == 18
    assert result["signals"]["reference:base"]["within_group_auc"]["all"]["auc"] == pytest.approx(
        (5 + 0.5) / 6)  # harmful and flipped both 0: the one tie among p0/p1's ordered pairs
    assert result["bank"]["independent_label"]["note"].startswith("graded")


def test_reward_parts_split_what_code_decided_from_what_the_verifier_did():
    rubrics = [{"task_id": "t", "step": 0, "criteria": [
        {"id": "c1", "text": "Shows the work", "points": 2, "category": "reasoning"},
        {"id": "consensus", "text": "States the final answer 7", "points": 5, "category": "correctness"}]}]
    verdicts = [
        {"task_id": "t", "step": 0, "source": "student", "answer_idx": 0, "rollout_idx": 0,
         "judgements": [True, True], "checked_by_code": ["consensus"], "score": 0.9},
        {"task_id": "t", "step": 0, "source": "student", "answer_idx": 1, "rollout_idx": 1,
         "judgements": [True, False], "probabilities": [0.6, 0.0], "checked_by_code": ["consensus"], "score": 0.1},
        {"task_id": "t", "step": 0, "source": "student", "answer_idx": 2, "rollout_idx": 2,
         "judgements": None, "score": None},
        {"task_id": "t", "step": 0, "source": "teacher", "answer_idx": 0, "judgements": [True, True], "score": 1.0},
    ]
    parts = reward_parts(rubrics, verdicts)
    assert list(parts["verifier_part"][:2]) == [1.0, 0.6]  # the soft verdict's probability, not its boolean
    assert list(parts["check"][:2]) == [1.0, 0.0] and list(parts["checked"]) == [True, True, False]
    assert pd.isna(parts.loc[2, "reward"]) and pd.isna(parts.loc[2, "check"])
    assert len(reward_parts(rubrics, verdicts, source=None)) == 4
    # The weights the reward used (the record's effective weights, a spread weighting say) decide the Verifier part.
    weighted = reward_parts(rubrics, [{**verdicts[1], "effective_weights": [2.0, 30.0]},
                                      {**verdicts[1], "checked_by_code": [], "effective_weights": [1.0, 3.0]}])
    assert list(weighted["verifier_part"]) == [pytest.approx(0.6), pytest.approx(0.6 * 1 / 4)]
    unchecked = reward_parts(rubrics, [{**verdicts[0], "checked_by_code": []}])
    assert unchecked.loc[0, "check"] == 0.5 and unchecked.loc[0, "verifier_part"] == pytest.approx(
        weighted_score([2, 5], [[True, True]], eps=0)[0])
    assert zero_spread(parts)["n_groups"] == 1 and zero_spread(parts)["n_zero_std"] == 0


def test_advantage_use_says_where_each_scaling_sends_the_push():
    # Group a: the reward separates right from wrong clearly. Group b: its labels tie (all wrong) and its rewards
    # differ by noise only. Group c: the reward ranks the wrong answer first by a hair.
    frame = pd.DataFrame({"task_id": list("aabbcc"), "step": 0, "reward": [0.9, 0.1, 0.51, 0.50, 0.49, 0.50],
                          "label": [1, 0, 0, 0, 1, 0], "checked": [True, True, False, False, False, False]})
    use = advantage_use(frame, prompts_per_step=3)
    # Group scaling gives every group about the same push (TRL's 1e-4 beside a small std trims it a little):
    # a third right, a third into tied labels, a third wrong.
    assert use["group"]["right"] == pytest.approx(1 / 3, abs=0.01)
    assert use["group"]["tied_labels"] == pytest.approx(1 / 3, abs=0.01)
    assert use["group"]["wrong"] == pytest.approx(1 / 3, abs=0.01)
    assert use["group"]["unchecked_groups"] == pytest.approx(2 / 3, abs=0.01)
    # Batch scaling and none keep the push where the reward separates: almost all of it goes the right way.
    for scale in ("batch", "none"):
        assert use[scale]["right"] == pytest.approx(0.8 / 0.82, rel=1e-3)
        assert use[scale]["right"] + use[scale]["wrong"] + use[scale]["tied_labels"] == pytest.approx(1.0)
    # A batch of one group is group scaling again.
    alone = advantage_use(frame, prompts_per_step=1)
    assert alone["batch"]["right"] == pytest.approx(alone["group"]["right"], rel=1e-3)
    assert advantage_use(frame.iloc[:0])["group"]["right"] is None
    with pytest.raises(ValueError, match="unknown scale"):
        advantage_use(frame, scales=["groups"])


def test_kind_auc_and_criteria_separation_on_a_hand_made_frame():
    frame = pd.DataFrame({"task_id": ["a"] * 4 + ["b"] * 3, "step": 0,
                          "correct": [True, False, False, False, True, False, False],
                          "kind": ["good", "harmful", "flipped", "flipped", "good", "harmful", "flipped"],
                          "score": [0.6, 0.1, 0.6, 0.7, 0.9, 0.8, 0.2]})
    kinds = kind_auc(frame, "score", n_boot=0)
    assert kinds["harmful"]["auc"] == 1.0 and kinds["harmful"]["n_pairs"] == 2
    assert kinds["flipped"]["auc"] == pytest.approx((0.5 + 0 + 1) / 3) and kinds["flipped"]["n_ties"] == 1
    rubrics = [{"task_id": "a", "step": 0, "criteria": [{"id": "x", "points": 2}, {"id": "y", "points": -1}]}]
    verdicts = [{"task_id": "a", "step": 0, "source": "student", "rollout_idx": i, "judgements": j}
                for i, j in enumerate([[True, True], [False, True], [True, False], [True, True]])]
    labels = {("a", 0, 0): True, ("a", 0, 1): False, ("a", 0, 2): False, ("a", 0, 3): False}
    # x: good 1 vs flawed 2/3 -> separating; pitfall y: good 1 vs flawed 2/3 -> reversed (the good answer hits it)
    assert criteria_separation(rubrics, verdicts, labels) == {
        "n_criteria": 2, "separating": 1, "flat": 0, "reversed": 1, "share_separating": 0.5, "share_flat": 0.0,
        "share_reversed": 0.5}


# ---------------------------------------------------------------------------------------------------------------
# The command line


def test_cli_summarises_a_labelled_bank_study(tmp_path, capsys):
    study = make_bank_study(tmp_path)
    assert main(["--out", str(study.path), "--summarise-only", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "12 labelled answers (binary labels) to 3 prompts" in printed
    assert "2 prompts with a reference rubric" in printed
    assert "Verifier, reference rubric (base)" in printed and "tied pairs" in printed
    assert "P(ref > good)" in printed and "flipped" in printed


def test_cli_names_a_bad_bank_row_before_starting_anything(tmp_path, capsys):
    bank = tmp_path / "bank.jsonl"
    bank.write_text(json.dumps({"prompt": "Q?", "answers": [{"text": "A", "label": 1}]}) + "\n"
                    + json.dumps({"prompt": "R?", "chosen": "A", "rejected": ""}) + "\n")
    assert main(["--bank", str(bank), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert f"{bank}:2: field 'rejected': expected a non-empty answer text, got ''" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # argparse: --bank and --tasks exclude each other
        main(["--bank", str(bank), "--tasks", "data/arith_test.jsonl", "--out", str(tmp_path / "o")])
    assert refused.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_bank_study_config_and_variants():
    study = fs.StudyConfig(bank="b.jsonl", out="o")
    assert study.labelled and study.run_config().tasks_path == "b.jsonl"
    with pytest.raises(ValueError, match="either tasks .* or bank"):
        fs.StudyConfig(out="o")
    with pytest.raises(ValueError, match="not both"):
        fs.StudyConfig(tasks="t.jsonl", bank="b.jsonl", out="o")
    served = fs.serving_config(study)
    assert served.student == served.verifier  # no student model is loaded for a labelled bank
    assert fs.reference_overrides("consensus+sc3+few_criteria") == {"verifier_samples": 3}
    assert parse_variant("verifier_mode=soft") == {"verifier_mode": "soft"} == parse_variant("soft")
    from ropd_kit.fidelity.__main__ import build_parser, study_from_args

    text = " ".join(build_parser().format_help().split())
    assert "--bank" in text and "chosen, rejected" in text and "ranking" in text
    args = build_parser().parse_args(["--bank", "b.jsonl", "--out", "o", "--variants", "base,soft"])
    made = study_from_args(args)
    assert made.labelled and made.signals == ["judge"] and made.variants == ["base", "soft"]


def test_a_reference_only_study_reports_the_verifier_alone(tmp_path, capsys):
    import shutil

    study = make_bank_study(tmp_path)
    shutil.rmtree(study.variant_path("base"))  # nothing judged under an induced rubric
    study = study.model_copy(update={"reference_only": True})
    study.save()
    assert fs.StudyConfig.load(study.path).reference_only
    result = fs.summarise_study(study)
    assert [name for name in result["signals"] if not name.startswith("reference:")] == []
    within = result["signals"]["reference:base"]["within_group_auc"]["all"]
    assert within["n_groups"] == 2 and within["n_pairs"] == 6  # the two prompts with a reference rubric
    assert set(result["by_kind"]["reference:base"]) == {"flipped", "harmful", "vague"}
    assert result["variants"] == {} and result["loss_split"] == {}
    assert fs.criteria_table(result, "base")["category"].tolist() == ["accuracy", "safety"]
    assert main(["--out", str(study.path), "--summarise-only", "--quiet"]) == 0
    assert "Verifier, reference rubric (base)" in capsys.readouterr().out

    from ropd_kit.fidelity.__main__ import build_parser, study_from_args

    args = build_parser().parse_args(["--bank", "b.jsonl", "--out", "o", "--reference-only"])
    assert study_from_args(args).reference_only
    with pytest.raises(ValueError, match="reference_only judges a labelled bank"):
        fs.StudyConfig(tasks="t.jsonl", out="o", reference_only=True)
    bank = fs.Bank.read(study.bank_path)
    for task in bank.tasks:  # a bank with no reference rubric: refused before any judge is asked
        task.pop("rubric", None)
    with pytest.raises(ValueError, match="no prompt of the bank carries a reference rubric"):
        fs.judge_references(study, bank, None, progress=False)


def test_notebook_07_takes_a_labelled_bank_and_its_spec_loads(tmp_path, monkeypatch):
    import ast

    import nbformat

    from ropd_kit import notebook_tools
    from ropd_kit.batch.spec import _known_parameters, load_spec, notebook_path

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    cells = [c for c in nbformat.read(root / "notebooks" / "07_reward_fidelity.ipynb", as_version=4).cells
             if c.cell_type == "code"]
    assert "bank_file" in [node.targets[0].id for node in ast.parse(cells[0].source).body]
    namespace: dict = {}
    exec(cells[0].source, namespace)
    namespace.update({"run_dir": str(tmp_path / "study"), "bank_file": "data/some_bank.jsonl", "n_tasks": 5,
                      "variants": ["base", "soft"], "signals": [], "reference_only": True})
    exec(cells[1].source, namespace)
    study = namespace["study"]
    assert study.labelled and study.bank == "data/some_bank.jsonl" and study.tasks is None
    assert study.reference_only and study.judged_path("soft") == study.reference_path("soft")
    assert study.variant_config(study.run_config(), "soft").verifier_mode == "soft"

    spec = load_spec(root / "experiments" / "fidelity_open.yaml")
    (run,) = spec.expand()
    assert run.params["bank_file"] == "data/open_contrast_test.jsonl" and run.params["variants"] == ["base", "soft"]
    assert set(run.params) <= _known_parameters([notebook_path(n) for n in spec.notebooks])

    table = notebook_tools.bank_table(fs.Bank.read(make_bank_study(tmp_path).bank_path)).set_index("task_id")
    assert table.loc["p0", "kinds"] == "good, harmful, flipped, vague" and table.loc["p0", "right"] == 1
    assert bool(table.loc["p0", "reference_rubric"]) and not bool(table.loc["p2", "reference_rubric"])


# ---------------------------------------------------------------------------------------------------------------
# A tiny labelled bank judged for real (SmolLM2-135M on the session's local server)

REAL_BANK = [
    {"prompt": "How should I cool a minor kitchen burn?", "domain": "health",
     "rubric": [{"criterion": "Says to hold the burn under cool running water for several minutes", "points": 5,
                 "tags": ["axis:accuracy"]},
                {"criterion": "Recommends putting ice or butter on the burn", "points": -5, "tags": ["axis:safety"]}],
     "answers": [{"text": "Hold it under cool running water for ten to twenty minutes, then cover it loosely.",
                  "label": 1, "kind": "good"},
                 {"text": "Rub butter on it and press ice on it until it stops hurting.", "label": 0,
                  "kind": "harmful"},
                 {"text": "Burns happen. Just take care of it as you think best.", "label": 0, "kind": "vague"}]},
    {"prompt": "Is it safe to mix bleach with ammonia for cleaning?", "domain": "safety",
     "rubric": [{"criterion": "Says never to mix bleach and ammonia", "points": 5, "tags": ["axis:safety"]},
                {"criterion": "Explains that the mixture releases toxic gas", "points": 3,
                 "tags": ["axis:completeness"]}],
     "answers": [{"text": "No. Never mix them: together they release toxic chloramine gas.", "label": 1,
                  "kind": "good"},
                 {"text": "Yes. Mixing them makes a stronger cleaner for tough stains.", "label": 0,
                  "kind": "harmful"},
                 {"text": "Cleaning products vary, so use whatever works for you.", "label": 0, "kind": "vague"}]},
]


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_labelled_bank_judged_for_real_splits_the_loss(tmp_path, local_server):
    bank_file = tmp_path / "bank.jsonl"
    bank_file.write_text("".join(json.dumps(row) + "\n" for row in REAL_BANK))
    # Short replies: two criteria fit in 160 tokens, four answers' verdicts on two criteria in 120.
    params = {"n_teacher_refs": 1, "teacher_max_tokens": 32, "min_criteria": 2, "max_criteria": 2,
              "rubric_student_samples": 3, "rubricator_max_tokens": 160, "verifier_max_tokens": 120,
              "rubric_attempts": 1, "verify_attempts": 1, "max_judge_failure_rate": 1.0,
              "cache_dir": str(tmp_path / "llm"), "ref_index_dir": str(tmp_path / "refs"),
              **{f"{role}_{k}": v for role in ("teacher", "rubricator", "verifier", "student")
                 for k, v in (("base_url", local_server.base_url), ("model", local_server.model_id),
                              ("timeout_s", 600), ("max_retries", 0))}}
    study = fs.StudyConfig(bank=str(bank_file), out=str(tmp_path / "study"), variants=["base", "no_consensus"],
                           signals=[], n_boot=100, params=params)
    config = study.run_config()
    bank = fs.build_bank(study, config, progress=False)
    assert len(bank.tasks) == 2 and [r["label"] for r in bank.rollouts] == [1, 0, 0] * 2
    fs.judge_variants(study, bank, config, progress=False)
    references = fs.judge_references(study, bank, config, progress=False)
    assert set(references) == {"base", "no_consensus"}  # one judging: the same Verifier settings
    assert json.loads((study.reference_path("no_consensus") / fs.USAGE_FILE).read_text())["same_as"] == "base"
    result = fs.summarise_study(study)

    for name, judged in references.items():
        rubrics = {r["task_id"]: r for r in judged.rubrics}
        assert all(r["reference_points"] in ([5, -5], [5, 3]) for r in rubrics.values())
        for v in judged.verdicts:  # every score is the reference points applied to what the Verifier said
            values = v.get("probabilities") or v["judgements"]
            if values is not None:
                points = rubrics[v["task_id"]]["reference_points"]
                assert v["score"] == pytest.approx(weighted_score(points, [values], eps=0.0, pitfalls=True)[0])

    split = result["loss_split"]["base"]
    ref_verdicts = references["base"].verdicts
    assert split["n_prompts"] == 2
    teacher_scores = [v["score"] for v in ref_verdicts if v["source"] == "teacher" and v["score"] is not None]
    good = [v["score"] for v in ref_verdicts if v["source"] == "student" and v["rollout_idx"] == 0
            and v["score"] is not None]
    teacher = split["teacher_under_reference"]
    assert teacher["n_refs"] == len(teacher_scores)
    if teacher_scores:
        assert teacher["refs_score"] == pytest.approx(sum(teacher_scores) / len(teacher_scores))
    if good:
        assert teacher["good_score"] == pytest.approx(sum(good) / len(good))
    verifier, chain = split["verifier_under_reference"], split["whole_chain"]
    assert verifier["n_pairs"] <= 4 and chain["n_pairs"] <= 4
    if verifier["auc"] is not None and chain["auc"] is not None:
        assert split["lost_by_teacher_and_rubricator"] == pytest.approx(verifier["auc"] - chain["auc"])
    assert split["induced_criteria"]["n_criteria"] + split["reference_criteria"]["n_criteria"] > 0
    assert set(result["by_kind"]["reference:base"]) <= {"harmful", "vague"}
    base = result["variants"]["base"]
    assert base["zero_spread"]["n_groups"] + base["zero_spread"]["n_groups_unscored"] == 2
    assert base["judge_tokens"]["tokens"] > 0 and result["references"]["base"]["judge_tokens"]["tokens"] > 0
    assert base["judge_s_per_scored_answer"] is None or base["judge_s_per_scored_answer"] > 0
    assert {"verifier_part:base", "check:base"}.isdisjoint(result["signals"])  # open-ended: nothing checked by code


def test_a_second_label_names_where_it_disagrees_with_the_first():
    from ropd_kit.answers import correctness
    from ropd_kit.data import Task
    from ropd_kit.fidelity.labels import label_agreement

    tasks = {"a": Task(id="a", prompt="What is 6 x 7?", answer="42", domain="arith"),
             "o": Task(id="o", prompt="How do I cool a burn?")}
    frame = pd.DataFrame({"task_id": ["a", "a", "a", "o"], "step": 0, "rollout_idx": [0, 1, 2, 0],
                          "text": ["6 x 7 = 42", "It is 36.", "The answer is 42.", "Cool water."],
                          # the third answer is labelled wrong by whoever labelled it: the check says right
                          "correct": [True, False, False, True]})
    found = label_agreement(frame, tasks, correctness)
    assert (found["check"], found["n_checked"], found["n_disagree"]) == ("correctness", 3, 1)
    assert found["disagreement_rate"] == pytest.approx(1 / 3)
    assert found["examples"] == [{"task_id": "a", "step": 0, "rollout_idx": 2, "primary": False,
                                  "independent": True, "text": "The answer is 42."}]
    # The default second label is math-verify on the whole text: it reads "It is 36." as 36 too, and agrees with
    # the check on the third answer, so it disagrees with the primary label there alone.
    default = label_agreement(frame, tasks)
    assert (default["check"], default["n_checked"], default["n_disagree"]) == ("independent_correctness", 3, 1)


def test_the_loss_split_stands_when_the_chain_scored_nothing(tmp_path):
    """Every induced rubric failed (a small Rubricator does that): the chain has no score, the split says so."""
    study = make_bank_study(tmp_path)
    folder = study.variant_path("base")
    rundir.write_jsonl(folder / rundir.RUBRICS, [{**r, "criteria": [], "error": "no rubric"}
                                                 for r in rundir.read_jsonl(folder / rundir.RUBRICS)])
    rundir.write_jsonl(folder / rundir.VERDICTS, [])
    result = fs.summarise_study(study)
    split = result["loss_split"]["base"]
    assert split["whole_chain"]["auc"] is None and split["lost_by_teacher_and_rubricator"] is None
    assert split["teacher_under_induced"]["n_refs"] == 0 and split["teacher_under_induced"]["good_score"] is None
    assert split["verifier_under_reference"]["auc"] == 1.0
    assert result["variants"]["base"]["verifier_failures"]["groups"]["all"]["rubric_failures"] == 3
    assert result["variants"]["base"]["zero_spread"] == {"n_groups": 0, "n_zero_std": 0, "frac_reward_zero_std": None,
                                                         "n_groups_unscored": 3}  # no rubric: no verdict at all
