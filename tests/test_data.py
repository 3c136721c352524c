"""Task loading and validation, stable ids, the arithmetic generator, answer extraction, the HF loader (no hub)."""

from __future__ import annotations

import importlib.util
import json
import operator
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ropd_kit.answers import extract_final_answer, last_boxed
from ropd_kit.data import Task, TaskError, load_hf_dataset, load_tasks, reference_answer, task_fingerprint, write_tasks

ROOT = Path(__file__).resolve().parents[1]


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_arith", ROOT / "data" / "make_arith.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_arith"] = module
    spec.loader.exec_module(module)
    return module


make_arith = _load_generator()


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"id": "a", "prompt": "What is 2 + 2?", "answer": "4", "domain": "arith"})


# --- load_tasks ---------------------------------------------------------------------------------------------------

def test_load_tasks_reads_contract_fields_and_ignores_extras(tmp_path):
    path = _write_lines(tmp_path / "t.jsonl", [
        GOOD,
        "",
        json.dumps({"prompt": "Name a colour.", "note": "no answer, no id, no domain"}),
        json.dumps({"id": 7, "prompt": "What is 3 * 3?", "answer": 9}),
    ])
    tasks = load_tasks(path)
    assert [t.id for t in tasks] == ["a", task_fingerprint("Name a colour."), "7"]
    assert tasks[0] == Task(id="a", prompt="What is 2 + 2?", answer="4", domain="arith")
    assert tasks[1].answer is None and tasks[1].domain == "general"
    assert tasks[2].answer == "9"
    assert load_tasks(path, limit=2) == tasks[:2]


@pytest.mark.parametrize(
    ("line", "field", "fragment"),
    [
        ('{"id": "b", "prompt": 42}', "prompt", "expected a non-empty string, got 42"),
        ('{"id": "b", "prompt": "   "}', "prompt", "expected a non-empty string, got '   '"),
        ('{"id": "b", "answer": "3"}', "prompt", "missing"),
        ('{"id": "b", "prompt": "ok?", "domain": ["x"]}', "domain", "got ['x']"),
        ('{"id": "b", "prompt": "ok?", "answer": true}', "answer", "got True"),
        ('{"id": ["b"], "prompt": "ok?"}', "id", "got ['b']"),
    ],
)
def test_malformed_line_names_file_line_field_value(tmp_path, line, field, fragment):
    path = _write_lines(tmp_path / "bad.jsonl", [GOOD, line])
    with pytest.raises(TaskError) as info:
        load_tasks(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: field '{field}': ")
    assert fragment in message
    assert info.value.field == field


def test_bad_json_names_the_line(tmp_path):
    path = _write_lines(tmp_path / "bad.jsonl", [GOOD, GOOD.replace('"a"', '"c"'), '{"prompt": "unterminated'])
    with pytest.raises(TaskError, match=rf"^{path}:3: not valid JSON"):
        load_tasks(path)


def test_non_object_line(tmp_path):
    path = _write_lines(tmp_path / "bad.jsonl", ['["a list"]'])
    with pytest.raises(TaskError, match=r":1: expected a JSON object, got \['a list'\]"):
        load_tasks(path)


def test_missing_answer_is_an_error_only_when_required(tmp_path):
    path = _write_lines(tmp_path / "t.jsonl", [GOOD, '{"id": "b", "prompt": "ok?"}'])
    assert load_tasks(path)[1].answer is None
    with pytest.raises(TaskError, match=rf"^{path}:2: field 'answer': missing"):
        load_tasks(path, require_answers=True)


def test_duplicate_ids_name_both_lines(tmp_path):
    path = _write_lines(tmp_path / "dup.jsonl", [GOOD, '{"id": "x", "prompt": "other"}', GOOD])
    with pytest.raises(TaskError) as info:
        load_tasks(path)
    assert str(info.value).startswith(f"{path}:3: field 'id': duplicate id (first used at {path}:1")


def test_duplicate_prompts_without_ids_collide(tmp_path):
    path = _write_lines(tmp_path / "dup.jsonl", ['{"prompt": "Same  question?"}', '{"prompt": "Same question?\\n"}'])
    with pytest.raises(TaskError, match=r":2: field 'id': duplicate id \(first used at .*:1"):
        load_tasks(path)


def test_errors_before_any_result_even_with_limit(tmp_path):
    path = _write_lines(tmp_path / "t.jsonl", [GOOD, '{"prompt": 1}'])
    with pytest.raises(TaskError):
        load_tasks(path, limit=1)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(TaskError, match="no tasks"):
        load_tasks(_write_lines(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(TaskError, match="file not found"):
        load_tasks(tmp_path / "nope.jsonl")


def test_write_then_load_round_trips(tmp_path):
    tasks = [Task(id="q1", prompt="Why?", answer=None, domain="general"), Task(id="q2", prompt="2+3?", answer="5")]
    write_tasks(tmp_path / "out.jsonl", tasks)
    assert load_tasks(tmp_path / "out.jsonl") == tasks


# --- fingerprints -------------------------------------------------------------------------------------------------

def test_fingerprint_is_stable_and_layout_insensitive():
    # A fixed value: ids written into shipped files and the reference index must never change between releases.
    assert task_fingerprint("What is 2 + 2?") == "38d46ad3618826cf"
    assert task_fingerprint("What is 2 + 2?") == task_fingerprint("  What is\n2 +  2?\t")
    assert task_fingerprint("What is 2 + 2?") != task_fingerprint("what is 2 + 2?")
    assert len(task_fingerprint("x")) == 16 and int(task_fingerprint("x"), 16) >= 0


@given(st.text(min_size=1))
def test_fingerprint_ignores_whitespace_layout(text):
    assert task_fingerprint(text) == task_fingerprint(" \n" + text.replace(" ", "  ") + "\t")


# --- the arithmetic generator -------------------------------------------------------------------------------------

OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


@pytest.mark.parametrize(("steps", "max_number"), [(1, 10), (3, 60), (5, 200)])
def test_generated_answers_recompute(steps, max_number):
    for problem in make_arith.generate(60, steps=steps, max_number=max_number, seed=steps):
        value = problem.start
        for op, n in problem.ops:
            if op == "/":
                assert value % n == 0, problem
                value //= n
            else:
                value = OPERATORS[op](value, n)
            assert 0 < value <= 10 * max_number, problem
        assert len(problem.ops) == steps
        assert all(op != "/" for op, _ in problem.ops[:-1]), "a division may only end the story"
        assert value == problem.answer == eval(problem.expression, {"__builtins__": {}})  # noqa: S307
        assert str(problem.start) in problem.prompt
        assert all(str(n) in problem.prompt for _, n in problem.ops)
        task = problem.to_task()
        assert task.answer == str(problem.answer) and task.domain == "arith"
        assert task.id == task_fingerprint(task.prompt)


def test_generator_is_deterministic_and_excludes(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    make_arith.main(["--n", "30", "--seed", "5", "--out", str(first)])
    make_arith.main(["--n", "30", "--seed", "5", "--out", str(second)])
    assert first.read_bytes() == second.read_bytes()
    records = [json.loads(line) for line in first.read_text().splitlines()]
    assert all(set(r) == {"id", "prompt", "answer", "domain"} for r in records)

    other = tmp_path / "c.jsonl"
    make_arith.main(["--n", "30", "--seed", "5", "--exclude", str(first), "--out", str(other)])
    assert not {t.id for t in load_tasks(first)} & {t.id for t in load_tasks(other)}


def test_shipped_sets_are_valid_and_disjoint():
    train = load_tasks(ROOT / "data" / "arith_train.jsonl", require_answers=True)
    test = load_tasks(ROOT / "data" / "arith_test.jsonl", require_answers=True)
    assert len(train) >= 200 and len(test) >= 100
    assert not {t.id for t in train} & {t.id for t in test}
    assert all(t.domain == "arith" and t.answer.lstrip("-").isdigit() for t in train + test)


def test_shipped_easy_sets_are_one_step_valid_and_disjoint_from_everything(tmp_path):
    easy_train = load_tasks(ROOT / "data" / "arith_easy_train.jsonl", require_answers=True)
    easy_test = load_tasks(ROOT / "data" / "arith_easy_test.jsonl", require_answers=True)
    assert len(easy_train) == 200 and len(easy_test) == 100
    ids = [{t.id for t in s} for s in (easy_train, easy_test,
                                       load_tasks(ROOT / "data" / "arith_train.jsonl"),
                                       load_tasks(ROOT / "data" / "arith_test.jsonl"))]
    assert not ids[0] & ids[1] and not (ids[0] | ids[1]) & (ids[2] | ids[3])
    # the file is what the command in data/README.md writes, byte for byte
    out = tmp_path / "easy.jsonl"
    make_arith.main(["--n", "200", "--steps", "1", "--max-number", "50", "--seed", "2",
                     "--exclude", str(ROOT / "data" / "arith_train.jsonl"), "--out", str(out)])
    assert out.read_bytes() == (ROOT / "data" / "arith_easy_train.jsonl").read_bytes()


# --- answer extraction --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Step 1: 3 + 4 = 7\nStep 2: 7 * 2 = 14\nAnswer: 14", "14"),
        ("so she has $1,234 left.\n#### 1,234", "1234"),
        ("The result is \\boxed{42}.", "42"),
        ("Therefore, the answer is 17 apples.", "17"),
        ("**Answer:** 3 × 4 = 12", "12"),
        ("The answer is 40. Wait, I made an error: 6 * 7 = 42.\nAnswer: 42", "42"),
        ("We get 5, then 8, then finally 11", "11"),
        ("Answer: -3", "-3"),
        ("Answer: 12.0", "12"),
        ("I cannot solve this.", None),
        ("", None),
        ("\\boxed{\\frac{1}{2}} is 0.5", "\\frac{1}{2}"),
        ("So each gets 3 / 4 of a pie.\nAnswer: 3/4", "3/4"),
        ("Answer: $\\sqrt{2}$", "\\sqrt{2}"),
    ],
)
def test_extract_final_answer_examples(text, expected):
    assert extract_final_answer(text) == expected


def _with_commas(n: int) -> str:
    return f"{n:,}"


noise = st.lists(st.integers(-10**6, 10**6), max_size=4).map(lambda xs: " ".join(f"then {x} items" for x in xs))


@settings(max_examples=200)
@given(
    n=st.integers(-10**9, 10**9),
    fmt=st.sampled_from(["Answer: {}", "**Answer:** {}", "#### {}", "\\boxed{{{}}}", "The answer is {}.",
                         "Final answer: ${}"]),
    commas=st.booleans(),
    before=noise,
)
def test_extract_marker_beats_noise(n, fmt, commas, before):
    shown = _with_commas(n) if commas else str(n)
    text = f"{before}\nSo we compute it step by step.\n" + fmt.format(shown)
    assert extract_final_answer(text) == str(n)


@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=6))
def test_fallback_is_last_number(numbers):
    text = " and ".join(f"{x:,} apples" for x in numbers)
    assert extract_final_answer(text) == str(numbers[-1])


@given(st.text())
def test_extract_never_raises(text):
    result = extract_final_answer(text)
    assert result is None or (isinstance(result, str) and result.strip() == result and result)


def test_last_boxed_handles_nested_braces():
    assert last_boxed("x \\boxed{1} then \\boxed{\\frac{a}{b^{2}}} end") == "\\frac{a}{b^{2}}"
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("none") is None


# --- Hugging Face loader on local files ---------------------------------------------------------------------------

def test_reference_answer_styles():
    assert reference_answer("She has 3 + 4 = 7.\n#### 1,234") == "1234"
    assert reference_answer("so \\boxed{\\dfrac{14}{3}} is it") == "\\dfrac{14}{3}"
    assert reference_answer(" 5 ") == "5"
    assert reference_answer(None) is None


def test_load_hf_gsm8k_style_jsonl(tmp_path):
    rows = [
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
        {"question": "A box holds 1,000 pens; 2 boxes?", "answer": "2 * 1000 = 2000\n#### 2,000"},
    ]
    path = _write_lines(tmp_path / "gsm.jsonl", [json.dumps(r) for r in rows])
    tasks = load_hf_dataset(path, "test")
    assert [t.answer for t in tasks] == ["7", "2000"]
    assert [t.prompt for t in tasks] == [r["question"] for r in rows]
    assert tasks[0].id == task_fingerprint(rows[0]["question"]) and tasks[0].domain == "math"
    assert len(load_hf_dataset(path, "test", limit=1)) == 1


def test_load_hf_math_style_parquet(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({
        "problem": ["Compute $\\frac{28}{6}$.", "What is $1+1$?"],
        "solution": ["It is $\\boxed{\\frac{14}{3}}$.", "Clearly $\\boxed{2}$."],
        "unique_id": ["test/algebra/1.json", "test/algebra/2.json"],
    })
    path = tmp_path / "math.parquet"
    frame.to_parquet(path)
    tasks = load_hf_dataset(path, "test", domain="algebra")
    assert [t.answer for t in tasks] == ["\\frac{14}{3}", "2"]
    assert [t.id for t in tasks] == ["test/algebra/1.json", "test/algebra/2.json"]
    assert all(t.domain == "algebra" for t in tasks)


def test_load_hf_local_folder_with_named_fields(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    _write_lines(folder / "train.jsonl", [json.dumps({"q": "Say hi.", "a": "hi"}),
                                          json.dumps({"q": "Say no.", "a": "no"})])
    tasks = load_hf_dataset(folder, "train", prompt_field="q", answer_field="a")
    assert [(t.prompt, t.answer) for t in tasks] == [("Say hi.", "hi"), ("Say no.", "no")]
    with pytest.raises(TaskError, match="field 'question': no such column"):
        load_hf_dataset(folder, "train", prompt_field="question")


def test_load_hf_bad_row_names_the_row(tmp_path):
    path = _write_lines(tmp_path / "bad.jsonl", [json.dumps({"question": "fine?", "answer": "1"}),
                                                json.dumps({"question": "", "answer": "2"})])
    # the error names their column (question), not ours (prompt)
    with pytest.raises(TaskError, match=r"\[train\]:row 1: field 'question': expected a non-empty string"):
        load_hf_dataset(path, "train")
