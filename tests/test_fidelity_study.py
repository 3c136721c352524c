"""The reward-fidelity study (ropd_kit.fidelity.study, variants, the CLI, notebook 07).

Unit part, in-memory and on a hand-made study folder (no model, no network): tasks, teacher refs, rollouts, two
variants' rubrics and verdicts and the reference signals written as JSONL by hand, with known answers — one
variant ranks every right rollout first (AUC 1), the other every wrong one (AUC 0, one group unjudged).
The integration test runs the CLI end to end at tiny size with SmolLM2-135M in every role on local servers.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ropd_kit import rundir
from ropd_kit.batch.spec import _known_parameters, load_spec, notebook_path
from ropd_kit.config import FAST_MODEL, RunConfig
from ropd_kit.fidelity import study as fs
from ropd_kit.fidelity.__main__ import main
from ropd_kit.fidelity.variants import (VARIANTS, VariantError, apply_variant, parse_variant, parse_variants,
                                        shares_rubrics)

ROOT = Path(__file__).resolve().parent.parent
N_TASKS = 6
COMPETENT = {0, 1, 2, 3}  # tasks whose teacher refs are right 3 times in 4; tasks 4, 5: once in 4
FAILED_ROLLOUT = ("t1", 1)  # sampling failed: no text, not judged, not in the bank frame
REF_USAGE = {"prompt_tokens": 10, "completion_tokens": 5}
# Two variant folders written by hand: GOOD ranks every right rollout first, BAD every wrong one (names are labels).
GOOD, BAD = "base", "sc3"


def answer(i: int) -> str:
    return str(10 + i)


def is_right(i: int, r: int) -> bool:
    return i < 5 and r < 2  # tasks 0-4: rollouts 0, 1 right, 2, 3 wrong; task 5: all wrong


def make_study(tmp_path: Path, variants=(GOOD, BAD)) -> fs.StudyConfig:
    """A study folder written by hand; returns its StudyConfig (saved as study.json)."""
    # The hand-written verdicts are the Verifier's alone: the study's config has the levers after it off.
    study = fs.StudyConfig(tasks="unused.jsonl", out=str(tmp_path / "study"), n_tasks=N_TASKS, n_rollouts=4,
                           variants=["base"], n_boot=300,
                           params={"consensus_check": False, "result_weight_share": 0.0})
    bank = study.bank_path
    tasks = [{"id": f"t{i}", "prompt": f"Question {i}: what is {i} + 10?", "answer": answer(i), "domain": "arith"}
             for i in range(N_TASKS)]
    refs, rollouts = [], []
    for i in range(N_TASKS):
        for k in range(4):
            right = k < 3 if i in COMPETENT else k < 1
            refs.append({"task_id": f"t{i}", "ref_idx": k, "model": "m", "usage": REF_USAGE,
                         "text": f"So the answer is {answer(i) if right else '99'}."})
        for r in range(4):
            said = answer(i) if is_right(i, r) else "98"
            text = None if (f"t{i}", r) == FAILED_ROLLOUT else f"Adding gives {said}. The answer is {said}."
            rollouts.append({"task_id": f"t{i}", "step": 0, "rollout_idx": r, "text": text, "n_tokens": 9,
                             "truncated": False})
    rundir.write_jsonl(bank / rundir.TASKS, tasks)
    rundir.write_jsonl(bank / rundir.TEACHER_REFS, refs)
    rundir.write_jsonl(bank / rundir.ROLLOUTS, rollouts)

    for name in variants:
        rubrics, verdicts = [], []
        for i in range(N_TASKS):
            named = "99" if i == 3 else answer(i)  # task 3's rubric names a wrong result
            rubrics.append({"task_id": f"t{i}", "step": 0, "model": "m", "n_teacher": 4, "n_student": 4, "criteria": [
                {"id": "c1", "text": f"States the final answer {named}", "points": 3, "category": "final_answer"},
                {"id": "c2", "text": "Shows the working", "points": 1, "category": "reasoning"}]})
            judged = [r for r in range(4) if (f"t{i}", r) != FAILED_ROLLOUT]
            for a, r in enumerate(judged):  # no rollout_idx: answer_idx is the place among the judged answers
                right = is_right(i, r)
                if name == BAD and i == 5:
                    judgement, score = None, None  # the Verifier failed on this group
                elif name == GOOD:
                    judgement = [right, True]
                    score = 1.0 if right else 0.25
                else:
                    judgement = [not right, not right]
                    score = 0.0 if right else 1.0
                verdicts.append({"task_id": f"t{i}", "step": 0, "answer_key": f"student-{a}", "source": "student",
                                 "answer_idx": a, "judgements": judgement, "score": score})
            verdicts.append({"task_id": f"t{i}", "step": 0, "answer_key": "teacher-0", "source": "teacher",
                             "answer_idx": 0, "judgements": [True, True], "score": 1.0})
        target = study.variant_path(name)
        rundir.write_jsonl(target / rundir.RUBRICS, rubrics)
        rundir.write_jsonl(target / rundir.VERDICTS, verdicts)
        if name == GOOD:
            usage = {"rubricator": {"prompt_tokens": 100, "completion_tokens": 50},
                     "verifier": {"prompt_tokens": 200, "completion_tokens": 100, "cached_prompt_tokens": 110},
                     "teacher": {"prompt_tokens": 10_000}}  # not a judge role: not counted
            (target / fs.USAGE_FILE).write_text(json.dumps({"variant": name, "usage": usage, "wall_s": 1.5}))

    frame = fs.Bank.read(bank).frame()
    right = frame["correct"].map(bool)
    rundir.write_jsonl(bank / fs.LOGPROB_FILE, [  # the teacher prefers the wrong rollouts: AUC 0
        {"task_id": t, "step": 0, "rollout_idx": int(r), "logprob": -2.0 if c else -1.0}
        for t, r, c in zip(frame["task_id"], frame["rollout_idx"], right)])
    rundir.write_jsonl(bank / fs.JUDGE_SIGNAL_FILE, [  # one grade for all: AUC 0.5 (ties)
        {"task_id": t, "step": 0, "rollout_idx": int(r), "judge": 0.5}
        for t, r in zip(frame["task_id"], frame["rollout_idx"])])
    fs.record_timing(study.path, "rollouts_s", 12.0)
    study = study.model_copy(update={"variants": list(variants)})
    study.save()
    return study


# ---------------------------------------------------------------------------------------------------------------
# The summary of a hand-made bank


@pytest.fixture
def summarised(tmp_path):
    study = make_study(tmp_path)
    return study, fs.summarise_study(study)


def test_bank_counts_and_labels(summarised):
    _, result = summarised
    bank = result["bank"]
    assert bank["n_rollouts_sampled"] == 24 and bank["n_rollouts_failed"] == 1
    assert (bank["n_tasks_teacher_competent"], bank["n_tasks_teacher_not_competent"]) == (4, 2)
    assert bank["teacher_accuracy"] == pytest.approx((4 * 3 + 2 * 1) / 24)
    everything = bank["by_stratum"]["all"]
    assert (everything["n"], everything["n_pos"], everything["n_neg"]) == (23, 9, 14)
    assert (everything["n_groups"], everything["n_groups_mixed"], everything["n_tasks"]) == (6, 5, 6)
    assert bank["by_stratum"]["teacher_competent=True"]["n"] == 15
    assert bank["by_stratum"]["teacher_competent=False"]["n_pos"] == 2


def test_each_signal_has_pooled_and_within_group_auc_per_stratum(summarised):
    _, result = summarised
    signals = result["signals"]
    assert list(signals) == ["rubric:base", "rubric:sc3", "logprob", "judge"]
    for numbers in signals.values():
        for measure in ("auc", "within_group_auc"):
            assert set(numbers[measure]) == {"all", "teacher_competent=False", "teacher_competent=True"}
    good = signals["rubric:base"]["auc"]["all"]
    assert (good["auc"], good["low"], good["high"]) == (1.0, 1.0, 1.0)
    assert (good["n"], good["n_pos"], good["n_neg"], good["n_clusters"]) == (23, 9, 14, 6)
    assert good["resampled"] == "clusters (task_id)" and good["n_boot"] == 300
    competent = signals["rubric:base"]["auc"]["teacher_competent=True"]
    assert (competent["n"], competent["n_pos"], competent["n_neg"], competent["n_clusters"]) == (15, 7, 8, 4)
    within = signals["rubric:base"]["within_group_auc"]["all"]
    assert within["auc"] == 1.0 and within["n_groups_mixed"] == 5 and within["n_pairs"] == 4 * 4 + 1 * 2
    bad = signals["rubric:sc3"]
    assert bad["auc"]["all"]["auc"] == 0.0 and bad["within_group_auc"]["all"]["auc"] == 0.0
    assert bad["auc"]["all"]["n_missing"] == 4 and bad["auc"]["all"]["n"] == 19  # the unjudged group: missing, not 0
    assert signals["logprob"]["auc"]["all"]["auc"] == 0.0
    assert signals["judge"]["auc"]["all"]["auc"] == 0.5
    # an interval that is a real interval: the AUC of the not-competent stratum of the bad variant has one task
    assert bad["auc"]["teacher_competent=False"]["n_clusters"] == 1


def test_criteria_result_value_failures_and_tokens(summarised):
    _, result = summarised
    good = result["variants"][GOOD]
    by_category = {r["category"]: r for r in good["criteria_by_category"]["all"]}
    assert by_category["final_answer"]["agreement"] == 1.0 and by_category["final_answer"]["discrimination"] == 1.0
    assert by_category["reasoning"]["agreement"] == pytest.approx(9 / 23)
    assert by_category["reasoning"]["discrimination"] == 0.0
    assert set(good["criteria_by_category"]) == {"all", "teacher_competent=False", "teacher_competent=True"}
    assert {r["is_result"] for r in good["criteria_result_vs_rest"]["all"]} == {True, False}
    assert good["result_value"]["all"]["share_right"] == pytest.approx(5 / 6)
    assert good["result_value"]["teacher_competent=True"]["n_right"] == 3
    tokens = good["judge_tokens"]
    assert tokens["n_scored"] == 23 and tokens["tokens"] == 100 + 50 + 200 + 100 + 110
    assert tokens["per_scored_rollout"] == pytest.approx(560 / 23)
    assert tokens["teacher_side_per_scored_rollout"] == pytest.approx((560 + 24 * 15) / 23)
    assert good["verifier_failures"]["groups"]["all"]["groups_failed"] == 0

    bad = result["variants"][BAD]
    assert bad["verifier_failures"]["groups"]["all"]["verifier_failures"] == 1
    assert bad["verifier_failures"]["groups"]["teacher_competent=False"]["groups_failed"] == 1
    assert bad["verifier_failures"]["answers"]["all"][0]["n_failed"] == 4
    assert bad["judge_tokens"]["per_scored_rollout"] is None and bad["judge_tokens"]["note"] == "no usage.json"


def test_fidelity_json_and_figure_are_written(summarised):
    study, result = summarised
    written = json.loads((study.path / fs.FIDELITY_JSON).read_text())
    assert set(written) >= {"study", "config", "machine", "timings", "bank", "signals", "variants"}
    assert written["signals"]["rubric:base"]["auc"]["all"]["auc"] == 1.0
    assert written["timings"]["rollouts_s"] == 12.0 and "summarise_s" in written["timings"]
    assert written["machine"]["cores"] >= 1 and "capability" in written["machine"]["cpu"]
    assert written["config"]["run_dir"] == str(study.bank_path)
    html = (study.path / fs.FIDELITY_HTML).read_text()
    assert "plotly" in html and "<script src=\"http" not in html  # plotly.js inlined: opens offline
    fig = fs.fidelity_figure(result)
    assert {t.name for t in fig.data} == {"all tasks", "teacher competent", "teacher not competent"}
    assert len(fig.data) == 6  # 3 strata x (pooled, within-group)
    table = fs.summary_table(result)
    assert list(table["signal"]) == ["rubric reward (base)", "rubric reward (sc3)", "teacher log-prob",
                                     "teacher-as-judge"]
    assert table.loc[0, "pooled AUC"] == "1.00 [1.00, 1.00]" and table.loc[0, "n_pos"] == 9
    assert list(fs.variant_table(result)["variant"]) == [GOOD, BAD]


def test_a_hand_written_verdict_finds_its_rollout_past_a_failed_one(tmp_path):
    study = make_study(tmp_path, variants=(GOOD,))
    bank = fs.Bank.read(study.bank_path)
    scores = fs.student_scores(bank, fs.Judged.read(study.variant_path(GOOD)))
    t1 = scores[scores["task_id"] == "t1"].set_index("rollout_idx")["score"].to_dict()
    assert t1 == {0: 1.0, 2: 0.25, 3: 0.25}  # answer_idx 1 is rollout 2: rollout 1 has no text


def test_a_post_verification_lever_is_derived_from_the_judged_replies_without_a_call(tmp_path, monkeypatch):
    study = make_study(tmp_path)
    off = study.run_config()  # the check off, the Verifier's reading "auto"
    assert fs.derivable_from("sc3+consensus", [GOOD, BAD], off) == BAD  # sampled replies: read batched either way
    # Under "auto" the check also picks the reading (soft where it will not decide): nothing derives across it.
    assert fs.derivable_from("consensus", [BAD, GOOD], off) is None
    batched = off.model_copy(update={"verifier_mode": "batched"})
    assert fs.derivable_from("consensus", [BAD, GOOD], batched) == GOOD
    assert fs.derivable_from("read_first+consensus", [GOOD, BAD], batched) is None  # another prompt: judge again
    assert fs.derivable_from(BAD, [GOOD], batched) is None  # no post-verification lever in it
    # With the check on (RunConfig's default) and one reading, "base" has the lever and derives from the variant
    # that turns it off; under the default "auto" reading it is judged on its own.
    on = RunConfig(verifier_mode="batched")
    assert fs.derivable_from("base", ["sc3", "no_consensus"], on) == "no_consensus"
    assert fs.derivable_from("base", ["sc3", "no_consensus"]) is None
    assert fs.derivable_from("no_consensus", ["base"], on) is None and fs.derivable_from("consensus", ["base"], on) is None
    # The result share acts on scores only: derived too, from the variant with every such lever off.
    assert fs.derivable_from("no_result_share", ["base", "no_consensus"], on) == "no_consensus"
    assert fs.derivable_from("result_share", ["no_consensus"], batched) is None  # a share without the check: nothing on
    assert fs.derivable_from("consensus+result_share", ["consensus_check=false"], batched) == "consensus_check=false"

    judged = []

    def replay(study, bank, name, config=None, *, progress=True):  # the hand-written folders stand for judging
        judged.append(name)
        return fs.Judged.read(study.variant_path(name), name)

    monkeypatch.setattr(fs, "judge_variant", replay)
    # The parent's levers left notes on each answer (here: self-consistency votes); the derived variant keeps them.
    parent = study.variant_path(BAD) / rundir.VERDICTS
    rundir.write_jsonl(parent, [{**v, "votes": [3, 0]} for v in rundir.read_jsonl(parent)])
    # Listed after the variant derived from it, the parent is still judged first; the result keeps the listed order.
    study = study.model_copy(update={"variants": ["sc3+consensus", BAD]})
    out = fs.judge_variants(study, fs.Bank.read(study.bank_path))
    assert judged == [BAD] and list(out) == ["sc3+consensus", BAD]
    usage = json.loads((study.variant_path("sc3+consensus") / fs.USAGE_FILE).read_text())
    assert usage["derived_from"] == BAD and usage["verifier_calls"] == 0

    by_key = {(v["task_id"], v["rollout_idx"]): v for v in out["sc3+consensus"].verdicts if v["source"] == "student"}
    for (task, r), v in by_key.items():
        i = int(task[1:])
        right = is_right(i, r)
        if task == "t5":  # the parent's Verifier failed on this group: still no verdict, still counted as failed
            assert v["judgements"] is None and v["score"] is None
            continue
        # The teacher's majority is the answer on tasks 0-3 and '99' on task 4: the result criterion follows it.
        agrees = right if i in COMPETENT else False
        assert v["judgements"] == [agrees, not right] and v["checked_by_code"] == ["c1"] and v["votes"] == [3, 0]
        assert v.get("flipped_by_code", []) == (["c1"] if agrees != (not right) else [])
        assert v["score"] == pytest.approx((3 * agrees + (not right)) / 4, abs=1e-5)
    assert ("t1", 1) not in by_key  # the failed rollout is not judged in the derived variant either

    result = fs.summarise_study(study)
    # The BAD Verifier ranks every wrong rollout first; with the result decided by code it ranks them last where the
    # teacher is competent (task 4's consensus is wrong, and task 5 has no verdicts).
    assert result["signals"]["rubric:sc3"]["within_group_auc"]["all"]["auc"] == 0.0
    competent = result["signals"]["rubric:sc3+consensus"]["within_group_auc"]["teacher_competent=True"]
    assert competent["auc"] == 1.0


def test_soft_verdicts_flow_through_derivation_and_the_decided_parts(tmp_path, monkeypatch):
    """A soft parent's probabilities score the derived consensus variant, the code-decided result counting 0 or 1;
    the report splits that reward into the Verifier's part and the check's."""
    study = make_study(tmp_path, variants=(GOOD,))
    soft = study.variant_path("soft")
    soft.mkdir(parents=True)
    for name in (rundir.RUBRICS, fs.USAGE_FILE):
        (soft / name).write_bytes((study.variant_path(GOOD) / name).read_bytes())
    records = []
    for v in rundir.read_jsonl(study.variant_path(GOOD) / rundir.VERDICTS):
        if v["judgements"] is not None:  # p(true): 0.7 for a true verdict, 0.4 for a false one
            probabilities = [0.7 if j else 0.4 for j in v["judgements"]]
            v = {**v, "verdict_kind": "soft", "probabilities": probabilities,
                 "score": (3 * probabilities[0] + probabilities[1]) / 4}
        records.append(v)
    rundir.write_jsonl(soft / rundir.VERDICTS, records)
    monkeypatch.setattr(fs, "judge_variant", lambda study, bank, name, config=None, *, progress=True:
                        fs.Judged.read(study.variant_path(name), name))
    study = study.model_copy(update={"variants": ["soft", "soft+consensus"]})
    out = fs.judge_variants(study, fs.Bank.read(study.bank_path))
    derived = [v for v in out["soft+consensus"].verdicts if v["source"] == "student" and v["task_id"] == "t0"]
    for v in derived:
        right = is_right(0, v["rollout_idx"])  # task 0: the teacher's majority is the answer
        assert v["checked_by_code"] == ["c1"] and v["verdict_kind"] == "soft"
        assert v["probabilities"] == [float(right), 0.7]  # the result decided by code; c2 stays the Verifier's p
        assert v["score"] == pytest.approx((3 * right + 0.7) / 4, abs=1e-5)

    result = fs.summarise_study(study)
    assert result["variants"]["soft"]["levers"]["verdict_kinds"] == {"soft": 23}
    assert "verifier_part:soft" not in result["signals"]  # nothing decided by code in the parent
    decided = result["variants"]["soft+consensus"]["decided"]
    assert decided["answers"] == decided["answers_checked"] == 23  # every teacher has a strict majority here
    parts = ["rubric:soft+consensus", "verifier_part:soft+consensus", "check:soft+consensus"]
    assert all(p in result["signals"] for p in parts)
    # c2 (the Verifier's part) is 0.7 for every answer: no order at all; the check alone orders as the reward does
    verifier = result["signals"]["verifier_part:soft+consensus"]["within_group_auc"]["all"]
    assert verifier["auc"] == 0.5 and verifier["n_ties"] == verifier["n_pairs"]
    check = result["signals"]["check:soft+consensus"]["within_group_auc"]["all"]
    reward = result["signals"]["rubric:soft+consensus"]["within_group_auc"]["all"]
    assert check["auc"] == reward["auc"] and check["n_pairs"] == reward["n_pairs"]
    assert result["signal_names"]["check:soft+consensus"] == "consensus check alone (soft+consensus)"
    # Task 5's rollouts are all wrong, so all its verdicts (and rewards) are the same: 1 of 6 groups teaches nothing.
    assert result["variants"]["soft"]["zero_spread"]["frac_reward_zero_std"] == pytest.approx(1 / 6)


def test_notebook_tables_of_a_bank(tmp_path):
    from ropd_kit import notebook_tools

    study = make_study(tmp_path)
    table = notebook_tools.bank_table(fs.Bank.read(study.bank_path)).set_index("task_id")
    assert table.loc["t1", "rollouts"] == 3 and table.loc["t1", "right"] == 1 and table.loc["t5", "right"] == 0
    assert bool(table.loc["t0", "teacher_competent"]) and not bool(table.loc["t4", "teacher_competent"])
    assert table.loc["t4", "teacher_refs"] == 4 and table.loc["t4", "answer"] == "14"
    criteria = fs.criteria_table(notebook_tools.fidelity_result(study), GOOD).set_index("category")
    assert criteria.loc["final_answer", "discrimination"] == 1.0


def test_summarise_only_from_the_command_line(tmp_path, capsys):
    study = make_study(tmp_path)
    (study.path / fs.FIDELITY_JSON).unlink(missing_ok=True)
    assert main(["--out", str(study.path), "--summarise-only", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "23 labelled rollouts on 6 tasks: 9 right, 14 wrong" in printed
    assert "rubric reward (base)" in printed and "1.00 [1.00, 1.00]" in printed
    assert (study.path / fs.FIDELITY_JSON).exists()


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "ropd_kit.fidelity", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in ("--tasks", "--out", "--n-tasks", "--n-rollouts", "--variants", "--seed", "--signals", "--set"):
        assert flag in out.stdout
    assert "consensus" in out.stdout


def test_cli_refuses_an_unknown_variant(tmp_path, capsys):
    assert main(["--tasks", "data/arith_easy_test.jsonl", "--out", str(tmp_path), "--variants", "base,nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown variant 'nope'" in err and "per_answer" in err


# ---------------------------------------------------------------------------------------------------------------
# Variants and the study's config


def test_variants_parse():
    assert parse_variant("base") == {}
    assert parse_variant("per_answer") == {"max_answers_per_call": 1}
    assert parse_variant("consensus+sc3") == {"consensus_check": True, "verifier_samples": 3}
    assert parse_variant("read_first+evidence") == {"verifier_read_first": True, "verifier_evidence": True}
    assert parse_variant("max_answer_chars=800+consensus") == {"max_answer_chars": 800, "consensus_check": True}
    assert list(parse_variants("base, sc3,base")) == ["base", "sc3"]
    with pytest.raises(VariantError, match="known variants: base, per_answer"):
        parse_variant("sc7")
    with pytest.raises(VariantError, match="set to both 3 and 5"):
        parse_variant("sc3+sc5")
    with pytest.raises(VariantError, match="not a RunConfig field"):
        parse_variant("verifier_sample=3")
    with pytest.raises(VariantError, match="verifier_samples"):
        apply_variant(RunConfig(), "verifier_samples=99")
    config = apply_variant(RunConfig(), "per_answer+read_first+evidence+sc3+consensus")
    assert (config.max_answers_per_call, config.verifier_read_first, config.verifier_evidence,
            config.verifier_samples, config.consensus_check) == (1, True, True, 3, True)
    for name, overrides in VARIANTS.items():  # every named lever is a valid RunConfig
        assert all(getattr(apply_variant(RunConfig(), name), k) == v for k, v in overrides.items()), name
    assert shares_rubrics(parse_variant("base"), parse_variant("consensus+sc3"))
    assert not shares_rubrics(parse_variant("base"), parse_variant("few_criteria"))


def test_study_config_builds_the_bank_and_variant_configs(tmp_path):
    study = fs.StudyConfig(tasks="data/arith_test.jsonl", out=str(tmp_path / "s"), n_tasks=5, n_rollouts=4,
                           variants=["base", "consensus+sc3"], params={"verifier_model": FAST_MODEL,
                                                                       "verifier_max_tokens": 300})
    bank = study.run_config()
    assert (bank.run_dir, bank.tasks_path, bank.n_tasks, bank.n_rollouts) == (
        str(tmp_path / "s" / "bank"), "data/arith_test.jsonl", 5, 4)
    assert bank.verifier.model == FAST_MODEL and bank.verifier_max_tokens == 300
    v = study.variant_config(bank, "consensus+sc3")
    assert v.run_dir == str(tmp_path / "s" / "variants" / "consensus+sc3")
    assert (v.consensus_check, v.verifier_samples, v.verifier_max_tokens, v.verifier.model) == (
        True, 3, 300, FAST_MODEL)
    with pytest.raises(ValueError, match="known variants"):
        fs.StudyConfig(tasks="x", out="y", variants=["nope"])
    with pytest.raises(ValueError, match="study's own settings"):
        fs.StudyConfig(tasks="x", out="y", params={"n_rollouts": 3})
    with pytest.raises(ValueError, match="unknown RunConfig parameter"):
        fs.StudyConfig(tasks="x", out="y", params={"verifier_modle": "m"})
    with pytest.raises(ValueError, match="unknown signal"):
        fs.StudyConfig(tasks="x", out="y", signals=["logits"])
    assert fs.StudyConfig(tasks="x", out="y", signals=["none"]).signals == []
    from ropd_kit.fidelity.__main__ import build_parser, study_from_args

    args = build_parser().parse_args(["--tasks", "openai/gsm8k", "--out", str(tmp_path / "g"), "--subset", "main",
                                      "--split", "test", "--set", "tasks_sample=50", "--model", FAST_MODEL])
    config = study_from_args(args).run_config()
    assert (config.tasks_path, config.tasks_subset, config.tasks_split, config.tasks_sample) == (
        "openai/gsm8k", "main", "test", 50)
    assert config.teacher.model == config.student.model == config.lopd_teacher_model == FAST_MODEL


# ---------------------------------------------------------------------------------------------------------------
# Notebook 07 and its batch spec


def _cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_notebook_parameters_flow_into_the_study(tmp_path, monkeypatch):
    """The parameters cell, then what papermill injects, then the setup cell: the study gets them all."""
    monkeypatch.chdir(ROOT)
    cells = _cells(ROOT / "notebooks" / "07_reward_fidelity.ipynb")
    names = [node.targets[0].id for node in ast.parse(cells[0].source).body]
    assert names[:2] == ["run_dir", "tasks_path"]
    assert {"n_tasks", "n_rollouts", "seed", "variants", "signals"} <= set(names)
    namespace: dict = {}
    exec(cells[0].source, namespace)
    injected = {"run_dir": str(tmp_path / "study"), "tasks_path": "data/arith_test.jsonl", "n_tasks": 3,
                "n_rollouts": 5, "seed": 7, "variants": ["base", "consensus+sc3"], "signals": ["judge"],
                "n_boot": 100, "verifier_max_tokens": 300}
    namespace.update(injected)
    exec(cells[1].source, namespace)
    study = namespace["study"]
    assert (study.out, study.tasks, study.n_tasks, study.n_rollouts, study.seed) == (
        str(tmp_path / "study"), "data/arith_test.jsonl", 3, 5, 7)
    assert (study.variants, study.signals, study.n_boot) == (["base", "consensus+sc3"], ["judge"], 100)
    assert study.params == {"verifier_max_tokens": 300}
    variant = study.variant_config(study.run_config(), "consensus+sc3")
    assert (variant.consensus_check, variant.verifier_samples, variant.verifier_max_tokens, variant.seed) == (
        True, 3, 300, 7)


def test_fidelity_batch_spec_is_a_grid_over_the_two_arithmetic_test_sets():
    spec = load_spec(ROOT / "experiments" / "fidelity.yaml")
    assert spec.notebooks == ["07_reward_fidelity"]
    runs = spec.expand()
    assert sorted(r.params["tasks_path"] for r in runs) == ["data/arith_easy_test.jsonl", "data/arith_test.jsonl"]
    known = _known_parameters([notebook_path(n) for n in spec.notebooks])
    assert all(set(r.params) <= known for r in runs)
    assert all(r.params["n_tasks"] * r.params["n_rollouts"] >= 300 for r in runs)


# ---------------------------------------------------------------------------------------------------------------
# End to end on SmolLM2


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_cli_end_to_end_on_smollm2(tmp_path, server_threads):
    out = tmp_path / "study"
    sets = {"n_teacher_refs": 2, "teacher_max_tokens": 48, "rollout_max_tokens": 32, "min_criteria": 2,
            "max_criteria": 3, "rubric_student_samples": 2, "rubricator_max_tokens": 300, "verifier_max_tokens": 200,
            "rubric_attempts": 1, "verify_attempts": 1, "server_parallel": 2,
            # The study's own server gets the cores the test servers get (see conftest: run the suite alone).
            "server_threads": server_threads, "cache_dir": str(tmp_path / "llm"),
            "ref_index_dir": str(tmp_path / "refs"), "max_judge_failure_rate": 1.0,
            **{f"{role}_timeout_s": 600 for role in ("teacher", "rubricator", "verifier", "student")},
            **{f"{role}_max_retries": 1 for role in ("rubricator", "verifier")}}

    def cli(*extra: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "ropd_kit.fidelity", "--tasks", "data/arith_easy_test.jsonl", "--out", str(out),
                "--n-tasks", "2", "--n-rollouts", "4", "--model", FAST_MODEL, "--n-boot", "200", "--quiet",
                *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")], *extra]
        done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=1700)
        assert done.returncode == 0, done.stderr[-4000:]
        return done

    first = cli("--variants", "base", "--signals", "logprob,judge")
    result = json.loads((out / fs.FIDELITY_JSON).read_text())
    assert set(result) >= {"study", "config", "machine", "timings", "bank", "signals", "variants"}
    assert list(result["signals"]) == ["rubric:base", "logprob", "judge"]
    bank = result["bank"]
    assert bank["n_rollouts_sampled"] == 8 and bank["by_stratum"]["all"]["n"] == 8 - bank["n_rollouts_failed"]
    for numbers in result["signals"].values():
        assert {"auc", "within_group_auc"} == set(numbers) and "all" in numbers["auc"]
        assert numbers["auc"]["all"]["n_pos"] + numbers["auc"]["all"]["n_neg"] == numbers["auc"]["all"]["n"]
    assert result["config"]["verifier"]["model"] == FAST_MODEL and result["config"]["n_rollouts"] == 4
    assert {"tasks_s", "teacher_refs_s", "rollouts_s", "judge:base_s", "judge_signal_s", "logprob_s", "total_s"} <= set(
        result["timings"])
    tokens = result["variants"]["base"]["judge_tokens"]
    assert tokens["calls"] >= 1 and tokens["tokens"] > 0
    assert (out / fs.FIDELITY_HTML).exists() and (out / "variants" / "base" / rundir.VERDICTS).exists()
    assert "pooled AUC" in first.stdout
    rollouts = rundir.read_jsonl(out / "bank" / rundir.ROLLOUTS)

    # Other variants re-judge the same bank: teacher refs and rollouts come back from the caches unchanged. With one
    # reading (batched), "no_consensus+batched" is judged and "batched", which adds the default consensus check to
    # it, is derived from it without a call (under "auto" the check also picks the reading, so nothing derives).
    cli("--variants", "batched,no_consensus+batched", "--signals", "none")
    assert rundir.read_jsonl(out / "bank" / rundir.ROLLOUTS) == rollouts
    again = json.loads((out / fs.FIDELITY_JSON).read_text())
    assert list(again["signals"]) == ["rubric:batched", "rubric:no_consensus+batched"]
    assert again["variants"]["no_consensus+batched"]["overrides"] == {
        "consensus_check": False, "result_weight_share": 0.0, "verifier_mode": "batched"}
    assert "logprob_s" not in again["timings"] and "judge:no_consensus+batched_s" in again["timings"]
    usage = json.loads((out / "variants" / "batched" / fs.USAGE_FILE).read_text())
    assert usage["derived_from"] == "no_consensus+batched"
