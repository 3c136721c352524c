"""The shipped open-ended contrast sets (data/open_contrast_*.jsonl) and their writer/checker
(data/make_open_contrast.py): every line passes the checks, the files are what the source writes, the kit reads them
as labelled banks, and each check names the file, line and field it refuses. No model."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ropd_kit.data import TaskError, load_tasks, task_fingerprint
from ropd_kit.fidelity.banks import load_bank

ROOT = Path(__file__).resolve().parents[1]
TRAIN, TEST = ROOT / "data" / "open_contrast_train.jsonl", ROOT / "data" / "open_contrast_test.jsonl"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_open_contrast", ROOT / "data" / "make_open_contrast.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_open_contrast"] = module
    spec.loader.exec_module(module)
    return module


contrast = _load_script()


def test_shipped_files_pass_every_check_and_are_balanced():
    stats = contrast.check_files([TRAIN, TEST])
    for path in (TRAIN, TEST):
        file_stats = stats[str(path)]
        n = file_stats["prompts"]
        assert n >= 24
        assert all(count >= 4 for count in file_stats["domains"].values()), file_stats["domains"]
        for kind in ("good", *contrast.REQUIRED_FLAWS):
            assert file_stats["kinds"][kind] == n
        assert file_stats["flipped"]["abs_length_change"]["max"] <= contrast.FLIP_LENGTH
        # Length must not decide the length-matched kinds: a length-only score stays far from separating them.
        for kind in contrast.LENGTH_MATCHED:
            assert 0.25 <= file_stats["length_only_auc"][kind] <= 0.75, (path.name, kind)


def test_files_are_what_the_source_writes(tmp_path):
    train_out, test_out = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    assert contrast.main(["--train-out", str(train_out), "--test-out", str(test_out)]) == 0
    assert train_out.read_bytes() == TRAIN.read_bytes()
    assert test_out.read_bytes() == TEST.read_bytes()


def test_the_kit_reads_them_as_labelled_banks_with_reference_rubrics():
    for path in (TRAIN, TEST):
        bank = load_bank(path)
        assert not bank.graded
        assert all(task.rubric and task.family == "open_ended" for task in bank.tasks)
        assert all(task.id == task_fingerprint(task.prompt) for task in bank.tasks)
        goods = [a for a in bank.answers if a["label"] == 1]
        assert len(goods) == len(bank.tasks) and {a["kind"] for a in goods} == {"good"}
        # The answers are stored in a seeded order, so the good one is not always in the same place.
        assert len({[a["task_id"] for a in bank.answers].index(t.id) - a["answer_idx"]
                     for t in bank.tasks for a in goods if a["task_id"] == t.id}) > 1


def _first_record() -> dict:
    return json.loads(TRAIN.read_text(encoding="utf-8").splitlines()[0])


def _answer(record: dict, kind: str) -> dict:
    return next(a for a in record["answers"] if a["kind"] == kind)


def _wrong_id(r):
    r["id"] = "0" * 16


def _second_good(r):
    _answer(r, "harmful").update(kind="good", label=1)


def _longer_flip(r):
    _answer(r, "flipped")["text"] += " " + "x" * int(0.1 * len(_answer(r, "good")["text"]))


def _two_changes(r):
    # Same length as the good answer, but changed at the start and at the end: not one statement.
    good = _answer(r, "good")["text"]
    _answer(r, "flipped")["text"] = "Q" * 200 + good[200:-200] + "Q" * 200


def _no_vague(r):
    r["answers"] = [a for a in r["answers"] if a["kind"] != "vague"]


def _absence_criterion(r):
    r["rubric"][1]["criterion"] = "Does not mention any home remedies."


def _short_harmful(r):
    harmful = _answer(r, "harmful")
    harmful["text"] = harmful["text"][: len(harmful["text"]) // 2]


def _boolean_label(r):
    _answer(r, "good")["label"] = True


def _fields_out_of_order(r):
    item = r["rubric"][0]
    r["rubric"][0] = {"points": item["points"], "criterion": item["criterion"], "tags": item["tags"]}


def _extra_field(r):
    r["family"] = "open_ended"


@pytest.mark.parametrize("break_it, field, message", [
    (_wrong_id, "id", "expected task_fingerprint"),
    (_second_good, r"answers\[\d\]\.kind", "a kind appears twice"),
    (_longer_flip, "answers", "flipped answer's length must be within 5%"),
    (_two_changes, "answers", "differ from the good one in one short span"),
    (_no_vague, "answers", "no 'vague' answer"),
    (_absence_criterion, r"rubric\[1\]\.criterion", "not an absence"),
    (_short_harmful, "answers", "harmful answer's length must be within 15%"),
    (_boolean_label, r"answers\[\d\]\.label", "expected 1 for kind 'good'"),
    (_fields_out_of_order, r"rubric\[0\]", "criterion, points, tags in that order"),
    (_extra_field, None, "expected exactly the fields id, prompt, domain, rubric, answers"),
])
def test_each_check_names_the_line_field_and_problem(tmp_path, break_it, field, message):
    record = copy.deepcopy(_first_record())
    break_it(record)
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    where = rf"^{path}:1: " + (rf"field '{field}': " if field else "")
    with pytest.raises(TaskError, match=where + ".*" + message):
        contrast.check_files([path], others=[])


def test_a_prompt_may_not_repeat_across_files_or_match_an_open_ended_task(tmp_path):
    line = json.dumps(_first_record()) + "\n"
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(line, encoding="utf-8")
    second.write_text(line, encoding="utf-8")
    with pytest.raises(TaskError, match=rf"^{second}:1: field 'prompt': also at {first}:1"):
        contrast.check_files([first, second], others=[])

    open_task = load_tasks(ROOT / "data" / "open_test.jsonl")[0]
    record = _first_record()
    record.update(prompt=open_task.prompt + " ", id=task_fingerprint(open_task.prompt))
    first.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(TaskError, match=rf"^{first}:1: field 'prompt': the same question as open_test.jsonl"):
        contrast.check_files([first], others=[ROOT / "data" / "open_test.jsonl"])


def test_a_source_edit_must_match_the_good_answer_once(tmp_path):
    item = {"domain": "health", "prompt": "Q?", "rubric": [], "good": "Rest. Rest.", "harmful": "h", "vague": "v",
            "missing_safety": "m", "flipped": {"replace": "Rest.", "with": "Run."}}
    with pytest.raises(TaskError, match=r"^src:3: field 'flipped': the replaced text occurs 2 times"):
        contrast.record_of(item, "src:3")


@given(st.text(max_size=40), st.text(max_size=20), st.text(max_size=20), st.text(max_size=40))
def test_the_changed_span_never_exceeds_the_edit(head, old, new, tail):
    good, flipped = head + old + tail, head + new + tail
    if not good:
        return
    stats = contrast.flip_stats(good, flipped)
    assert 0 <= stats.span_good <= len(old) and 0 <= stats.span_flipped <= len(new)
    assert stats.length_change == (len(new) - len(old)) / len(good)
    if old == new:
        assert stats.span_good == stats.span_flipped == 0 and stats.similarity == 1.0
