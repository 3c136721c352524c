"""Labelled banks (ropd_kit.fidelity.banks) and the within-prompt order they are measured by (fidelity.stats).

In-memory and on small files written here: each shape a bank comes in, graded labels, the bad rows named by file,
line, field and value; the within-prompt AUC with graded labels against the binary one, ties counted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ropd_kit.fidelity.banks import BankError, bank_answer_records, describe, load_bank
from ropd_kit.fidelity.stats import signal_summary, within_group_auc

NOSEBLEED = {"criterion": "Advises leaning forward and pinching the soft part of the nose", "points": 5,
             "tags": ["axis:accuracy"]}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def ours_row(**extra) -> dict:
    return {"id": "nose", "prompt": "How do I stop a nosebleed?", "domain": "health", "rubric": [NOSEBLEED],
            "answers": [{"text": "Lean forward and pinch the soft part of your nose for ten minutes.", "label": 1,
                         "kind": "good"},
                        {"text": "Tilt your head back so the blood runs down your throat.", "label": 0,
                         "kind": "harmful"},
                        {"text": "Lean back and pinch the soft part of your nose for ten minutes.", "label": 0,
                         "kind": "flipped"}], **extra}


# ---------------------------------------------------------------------------------------------------------------
# The three shapes


def test_our_shape_keeps_the_task_fields_labels_and_kinds(tmp_path):
    path = write_jsonl(tmp_path / "bank.jsonl", [
        ours_row(),
        {"prompt": "Is it safe to mix bleach and ammonia?", "answers": [
            {"text": "No: together they release toxic chloramine gas.", "label": True, "kind": "good"},
            {"text": "Yes: together they make a stronger cleaner.", "label": False, "kind": "flipped"}]},
        {"prompt": "What is 6 x 7?", "answer": "42", "domain": "arith",
         "answers": [{"text": "6 x 7 = 42", "label": 1}, {"text": "6 x 7 = 36", "label": 0}]},
    ])
    bank = load_bank(path)
    nose, bleach, arith = bank.tasks
    assert nose.id == "nose" and nose.family == "open_ended" and nose.rubric[0].points == 5
    assert bleach.id != "nose" and len(bleach.id) == 16  # no id: the prompt's fingerprint, as for task files
    assert arith.answer == "42" and arith.family == "arithmetic"
    assert [(a["answer_idx"], a["label"], a["kind"]) for a in bank.answers_of("nose")] == [
        (0, 1.0, "good"), (1, 0.0, "harmful"), (2, 0.0, "flipped")]
    assert bank.answers_of(arith.id)[1]["kind"] is None
    assert bank.answers_of("nose")[1]["origin"] == f"{path}:1"
    facts = describe(bank)
    assert facts["labels"] == "binary" and facts["shapes"] == {"ours": 3}
    assert facts["kinds"] == {"good": 2, "harmful": 1, "flipped": 2}
    assert (facts["n_prompts"], facts["n_answers"], facts["n_prompts_with_reference_rubric"]) == (3, 7, 1)
    records = bank_answer_records(bank)
    assert records[0] == {"task_id": "nose", "step": 0, "rollout_idx": 0, "text": bank.answers[0]["text"],
                          "n_tokens": None, "truncated": False, "label": 1.0, "kind": "good"}
    assert [t.id for t in load_bank(path, limit=2).tasks] == ["nose", bleach.id]


def test_pairs_with_string_and_chat_prompts_merge_by_prompt(tmp_path):
    chat = [{"role": "user", "content": "Say hello politely."}]
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "Say hello politely.", "chosen": "Hello, nice to meet you.", "rejected": "What do you want?"},
        # The same prompt as a one-turn chat: the same group; the rejected answer repeats with the same label.
        {"prompt": chat, "chosen": [{"role": "assistant", "content": "Good morning!"}],
         "rejected": "What do you want?"},
        # Conversational preference rows: no prompt, the turns before the last are the prompt.
        {"chosen": [*chat[:0], {"role": "user", "content": "Name a primary colour."},
                    {"role": "assistant", "content": "Red."}],
         "rejected": [{"role": "user", "content": "Name a primary colour."},
                      {"role": "assistant", "content": "Green."}]},
    ])
    bank = load_bank(path)
    assert len(bank.tasks) == 2 and bank.shapes == {"pairs": 3}
    hello = bank.answers_of(bank.tasks[0].id)
    assert [(a["text"], a["label"]) for a in hello] == [
        ("Hello, nice to meet you.", 1.0), ("What do you want?", 0.0), ("Good morning!", 1.0)]
    colour = bank.tasks[1]
    assert colour.prompt == "Name a primary colour."
    assert [(a["text"], a["label"]) for a in bank.answers_of(colour.id)] == [("Red.", 1.0), ("Green.", 0.0)]


def test_sets_with_scores_a_preference_or_a_ranking_and_graded_labels(tmp_path):
    path = write_jsonl(tmp_path / "sets.jsonl", [
        {"prompt": "Name a colour.", "responses": ["Red.", "Blue.", "Banana."], "ratings": [4.5, 4, 1],
         "kinds": ["good", "good", "off_topic"]},
        {"prompt": "Name a fruit.", "completions": ["Apple.", "Car."], "preference": 0},
        {"prompt": "Name a city.", "responses": ["Paris.", "Dog.", "Lyon."], "ranking": [0, 2, 1]},
    ])
    bank = load_bank(path)
    assert bank.graded and describe(bank)["labels"] == "graded"
    labels = {a["text"]: a["label"] for a in bank.answers}
    assert (labels["Red."], labels["Blue."], labels["Banana."]) == (4.5, 4.0, 1.0)
    assert (labels["Apple."], labels["Car."]) == (1.0, 0.0)
    assert (labels["Paris."], labels["Lyon."], labels["Dog."]) == (2.0, 1.0, 0.0)
    assert bank.kinds() == {"good": 2, "off_topic": 1}


def test_csv_and_parquet_banks_read_lists_and_chats(tmp_path):
    rows = [{"prompt": "Name a colour.", "responses": json.dumps(["Red.", "Banana."]), "scores": "[1, 0]"},
            {"prompt": "Say hi.", "responses": json.dumps(["Hi!", "No."]), "scores": "[1, 0]"}]
    pd.DataFrame(rows).to_csv(tmp_path / "bank.csv", index=False)
    bank = load_bank(tmp_path / "bank.csv")
    assert [(a["text"], a["label"]) for a in bank.answers[:2]] == [("Red.", 1.0), ("Banana.", 0.0)]
    pd.DataFrame([{"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}]).to_parquet(tmp_path / "p.parquet")
    bank = load_bank(tmp_path / "p.parquet")
    assert [(a["text"], a["label"]) for a in bank.answers] == [("Hi!", 1.0), ("No.", 0.0)]
    pd.DataFrame([{"prompt": "Say hi.", "responses": ["Hi!", "No."], "scores": [2.0, 1.0]}]).to_parquet(
        tmp_path / "s.parquet")
    assert [a["label"] for a in load_bank(tmp_path / "s.parquet").answers] == [2.0, 1.0]
    bad = pd.DataFrame([{"prompt": "Say hi.", "responses": "[\"Hi!\", \"No.\"]", "scores": "[1, \"high\"]"}])
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(BankError, match=r"bad\.csv\[train\]:row 0: field 'scores\[1\]': expected a number.*'high'"):
        load_bank(tmp_path / "bad.csv")


# ---------------------------------------------------------------------------------------------------------------
# Bad rows are named


@pytest.mark.parametrize("row, match", [
    ({"prompt": "Q?", "answers": [{"text": "A", "label": "yes"}]},
     r":2: field 'answers\[0\]\.label': expected a number \(1/0, or a graded score\), got 'yes'"),
    ({"prompt": "Q?", "answers": [{"text": "A", "label": float("inf")}]},
     r":2: field 'answers\[0\]\.label': expected a finite number"),
    ({"prompt": "Q?", "answers": [{"text": "A"}]}, r":2: field 'answers\[0\]\.label': missing"),
    ({"prompt": "Q?", "answers": [{"text": "  ", "label": 1}]},
     r":2: field 'answers\[0\]\.text': expected a non-empty answer text, got '  '"),
    ({"prompt": "Q?", "answers": ["just a string"]}, r":2: field 'answers\[0\]': expected an object"),
    ({"prompt": "Q?", "answers": [{"text": "A", "label": 1, "score": 3}]},
     r":2: field 'answers\[0\]\.score': unknown field"),
    ({"prompt": "Q?", "answers": []}, r":2: field 'answers': expected a non-empty list, got \[\]"),
    ({"prompt": "", "answers": [{"text": "A", "label": 1}]}, r":2: field 'prompt': expected a non-empty string"),
    ({"prompt": "Q?", "rubric": [{"criterion": "x", "points": -1}], "answers": [{"text": "A", "label": 1}]},
     r":2: field 'rubric': a reference rubric needs at least one criterion with positive points"),
    ({"prompt": "Q?", "chosen": "A", "rejected": 7}, r":2: field 'rejected': expected a non-empty answer text, got 7"),
    ({"chosen": "A", "rejected": "B"}, r":2: field 'prompt': missing"),
    ({"prompt": "Q?", "responses": ["A", "B"], "scores": [1]}, r":2: field 'scores': expected one per answer"),
    ({"prompt": "Q?", "responses": ["A", "B"], "preference": 2}, r":2: field 'preference': expected the preferred"),
    ({"prompt": "Q?", "responses": ["A", "B"], "ranking": [0, 0]}, r":2: field 'ranking': expected each answer's"),
    ({"prompt": "Q?", "responses": ["A", "B"]}, r":2: no labels for 'responses'"),
    ({"prompt": "Q?", "response": "A"}, r":2: no known bank shape in fields \['prompt', 'response'\]"),
    ("[1, 2]", r":2: expected a JSON object"),
    ("{not json", r":2: not valid JSON"),
])
def test_a_bad_row_is_named_by_file_line_field_and_value(tmp_path, row, match):
    path = write_jsonl(tmp_path / "bank.jsonl", [ours_row(), row])
    with pytest.raises(BankError, match=match) as caught:
        load_bank(path)
    assert str(caught.value).startswith(str(path))


def test_conflicting_labels_and_duplicate_prompts_name_both_places(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "Q?", "chosen": "A", "rejected": "B"},
        {"prompt": "Q?", "chosen": "B", "rejected": "C"},
    ])
    with pytest.raises(BankError, match=r"pairs\.jsonl:2: field 'label': this answer text is labelled 0 at "
                                        r".*pairs\.jsonl:1 and 1 here"):
        load_bank(path)
    path = write_jsonl(tmp_path / "ours.jsonl", [ours_row(), ours_row()])
    with pytest.raises(BankError, match=r"ours\.jsonl:2: field 'id': duplicate prompt \(first at .*ours\.jsonl:1"):
        load_bank(path)
    with pytest.raises(BankError, match="file not found"):
        load_bank(tmp_path / "missing.jsonl")
    with pytest.raises(BankError, match="no rows"):
        load_bank(write_jsonl(tmp_path / "empty.jsonl", []))


# ---------------------------------------------------------------------------------------------------------------
# The within-prompt order with graded labels


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(0, 4)), min_size=2, max_size=30))
def test_graded_within_prompt_auc_equals_the_binary_one_on_binary_labels(rows):
    frame = pd.DataFrame(rows, columns=["task_id", "correct", "score"]).assign(step=0)
    binary = within_group_auc(frame, "score", n_boot=50)
    frame["label"] = frame["correct"].astype(float) * 3.0  # any increasing map of the labels: the same pairs
    graded = within_group_auc(frame, "score", label="label", n_boot=50, graded=True)
    for key in ("auc", "low", "high", "n_pairs", "n_ties", "n_groups_mixed", "note"):
        assert graded[key] == binary[key], key


def test_graded_within_prompt_auc_counts_ordered_pairs_and_ties():
    frame = pd.DataFrame({"task_id": ["a"] * 3 + ["b"] * 3, "step": 0,
                          "label": [3.0, 2.0, 1.0, 5.0, 5.0, 0.0],
                          "score": [0.9, 0.9, 0.1, 0.2, 0.8, 0.5]})
    result = within_group_auc(frame, "score", label="label", n_boot=0, graded=True)
    # a: (3>2) tie, (3>1) win, (2>1) win; b: (5>0) loss, (5>0) win; the two 5s are not a pair.
    assert (result["n_pairs"], result["n_ties"]) == (5, 1)
    assert result["auc"] == pytest.approx(3.5 / 5) and result["tie_rate"] == pytest.approx(0.2)
    assert result["n_pos"] is None and result["n_groups_mixed"] == 2
    summary = signal_summary(frame, ["score"], by=None, label="label", n_boot=0, graded=True)
    assert summary["score"]["auc"]["all"]["auc"] is None and "graded" in summary["score"]["auc"]["all"]["note"]
    assert summary["score"]["within_group_auc"]["all"]["auc"] == pytest.approx(0.7)
    flat = frame.assign(label=1.0)
    assert within_group_auc(flat, "score", label="label", n_boot=0, graded=True)["note"] == "undefined (one class)"


def test_binary_within_prompt_auc_reports_tied_pairs():
    frame = pd.DataFrame({"task_id": ["a"] * 4, "step": 0, "correct": [True, True, False, False],
                          "score": np.array([0.5, 0.9, 0.5, 0.1])})
    result = within_group_auc(frame, "score", n_boot=0)
    assert (result["n_pairs"], result["n_ties"], result["auc"]) == (4, 1, pytest.approx(3.5 / 4))
