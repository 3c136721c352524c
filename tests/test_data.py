"""Task loading and validation (families, conversations, options, reference rubrics), stable ids, the shipped sets
and their generators (arithmetic, math, multiple choice, open-ended), answer extraction, the HF loader (no hub)."""

from __future__ import annotations

import calendar
import importlib.util
import json
import operator
import re
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ropd_kit.answers import extract_final_answer, is_correct, last_boxed
from ropd_kit.data import (
    LETTERS, Task, TaskError, default_family, load_tasks, normalize_prompt, render_choices, render_messages,
    task_fingerprint, write_tasks,
)
from ropd_kit.sources import load_hf_dataset, reference_answer

ROOT = Path(__file__).resolve().parents[1]


def _load_generator(name: str = "make_arith"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "data" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


make_arith = _load_generator()
make_math = _load_generator("make_math")
make_mc = _load_generator("make_mc")
make_open = _load_generator("make_open")


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


def test_fresh_test_splits_share_nothing_with_the_other_arithmetic_files(tmp_path):
    data = ROOT / "data"
    earlier = [data / f"arith_{name}.jsonl" for name in ("train", "test", "easy_train", "easy_test")]
    earlier_ids = {t.id for path in earlier for t in load_tasks(path)}
    # The GSM8K-shaped files hold make_arith stories too; a task's id there is the fingerprint of its question.
    gsm8k_like = {task_fingerprint(json.loads(line)["question"]) for s in ("train", "test")
                  for line in (data / "shapes" / f"gsm8k_like_{s}.jsonl").read_text(encoding="utf-8").splitlines()}
    excludes = [arg for path in earlier for arg in ("--exclude", str(path))]
    fresh = ["--exclude", str(data / "arith_easy_fresh_test.jsonl")]
    for name, steps, max_number, seed, extra in (("arith_easy_fresh_test", 1, 50, 11, []),
                                                 ("arith_fresh_test", 2, 99, 12, fresh),
                                                 ("arith_fresh2_test", 2, 99, 13,
                                                  [*fresh, "--exclude", str(data / "arith_fresh_test.jsonl")])):
        shipped = load_tasks(data / f"{name}.jsonl", require_answers=True)
        assert len(shipped) == 100
        assert not {t.id for t in shipped} & (earlier_ids | gsm8k_like)
        # the file is what the command in data/README.md writes, byte for byte
        out = tmp_path / f"{name}.jsonl"
        make_arith.main(["--n", "100", "--steps", str(steps), "--max-number", str(max_number), "--seed", str(seed),
                         *excludes, *extra, "--out", str(out)])
        assert out.read_bytes() == (data / f"{name}.jsonl").read_bytes()
    easy = {t.id for t in load_tasks(data / "arith_easy_fresh_test.jsonl")}
    first, second = ({t.id for t in load_tasks(data / f"{n}.jsonl")} for n in ("arith_fresh_test", "arith_fresh2_test"))
    assert not easy & first and not (easy | first) & second


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


# --- families, conversations, options, reference rubrics ---------------------------------------------------------

def test_family_defaults_keep_old_files_meaning(tmp_path):
    assert default_family(domain="arith", answer="4") == "arithmetic"
    assert default_family(domain="general", answer="\\frac{1}{2}") == "math"
    assert default_family(domain="arith", answer="A", choices=["x", "y"]) == "multiple_choice"
    assert default_family(answer="4", rubric=[{"criterion": "c", "points": 1}]) == "open_ended"
    assert default_family() == "open_ended"
    assert {t.family for t in load_tasks(ROOT / "data" / "arith_easy_test.jsonl")} == {"arithmetic"}

    # a family that differs from the default is written and read back; a default one is not written
    path = tmp_path / "t.jsonl"
    tasks = [Task(id="x", prompt="2+2?", answer="4", family="arithmetic"), Task(id="y", prompt="3+3?", answer="6")]
    write_tasks(path, tasks)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["family"] == "arithmetic" and "family" not in records[1]
    assert set(records[1]) == {"id", "prompt", "answer", "domain"}
    assert load_tasks(path) == tasks and tasks[1].family == "math"


def test_new_fields_round_trip(tmp_path):
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi, I have a cold."},
                    {"role": "assistant", "content": "Sorry to hear it."}, {"role": "user", "content": "Tea?"}]
    rows = [
        {"messages": conversation, "rubric": [{"criterion": "Says tea is fine", "points": 3, "tags": ["a"]},
                                              {"criterion": "Prescribes antibiotics", "points": -5}]},
        {"prompt": render_choices("Which is a fruit?", ["leek", "apple"]), "choices": ["leek", "apple"],
         "answer": "B", "domain": "food"},
    ]
    path = _write_lines(tmp_path / "t.jsonl", [json.dumps(r) for r in rows])
    talk, mc = load_tasks(path)
    assert talk.prompt == render_messages(conversation) and talk.id == task_fingerprint(talk.prompt)
    assert talk.prompt.startswith("System: Be brief.\n\nUser: Hi") and talk.prompt.endswith("User: Tea?")
    assert talk.family == "open_ended" and talk.rubric[1].points == -5 and talk.rubric[1].tags == ()
    assert mc.family == "multiple_choice" and mc.choices[LETTERS.index(mc.answer)] == "apple"
    write_tasks(tmp_path / "out.jsonl", [talk, mc])
    assert load_tasks(tmp_path / "out.jsonl") == [talk, mc]
    assert hash(talk) == hash(load_tasks(tmp_path / "out.jsonl")[0])  # frozen and hashable, lists become tuples


def test_one_user_turn_has_the_plain_prompts_id():
    assert render_messages([{"role": "user", "content": "Why is the sky blue?"}]) == "Why is the sky blue?"
    assert render_messages([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                            {"role": "user", "content": "c"}]) != render_messages([{"role": "user", "content": "c"}])


@pytest.mark.parametrize(
    ("record", "field", "fragment"),
    [
        ({"prompt": "Pick\n\nA. x\nB. y", "choices": ["x", "y"], "answer": "C"}, "answer", "one of A, B, got 'C'"),
        ({"prompt": "Pick\n\nA. x\nB. y", "choices": ["x", "y"], "answer": "b"}, "answer", "got 'b'"),
        ({"prompt": "Pick one", "choices": ["x", "y"], "answer": "A"}, "prompt", "does not show option A"),
        ({"prompt": "Pick\n\nA. y\nB. x", "choices": ["x", "y"]}, "prompt", "does not show option A"),
        ({"prompt": "Pick\n\nA. x", "choices": ["x"]}, "choices", "expected 2 to 26 options"),
        ({"prompt": "Pick\n\nA. x\nB. x", "choices": ["x", "x"]}, "choices", "are the same text"),
        ({"prompt": "Pick\n\nA. x\nB. y", "choices": ["x", "y"], "family": "math"}, "family", "'multiple_choice'"),
        ({"prompt": "Q?", "family": "multiple_choice"}, "choices", "missing"),
        ({"prompt": "Q?", "family": "essay"}, "family", "got 'essay'"),
        ({"prompt": "Q?", "rubric": [{"criterion": "ok", "points": 0}]}, "rubric[0].points", "nonzero integer"),
        ({"prompt": "Q?", "rubric": [{"criterion": "a", "points": 2}, {"criterion": "b", "points": "5"}]},
         "rubric[1].points", "nonzero integer, got '5'"),
        ({"prompt": "Q?", "rubric": [{"criterion": "ok", "points": 3, "weight": 1}]}, "rubric[0].weight", "Extra"),
        ({"prompt": "Q?", "rubric": [{"criterion": " ", "points": 3}]}, "rubric[0].criterion", "non-empty"),
        ({"prompt": "Q?", "rubric": [{"criterion": "bad", "points": -3}]}, "rubric", "positive points"),
        ({"prompt": "Q?", "rubric": "be nice"}, "rubric", "got 'be nice'"),
        ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
         "messages", "last message must be a user turn"),
        ({"messages": [{"role": "bot", "content": "Hi"}]}, "messages[0].role", "got 'bot'"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content", "non-empty"),
        ({"messages": []}, "messages", "at least one message"),
        ({"prompt": "Something else", "messages": [{"role": "user", "content": "Hi"}]}, "prompt",
         "rendering of `messages`"),
    ],
)
def test_bad_new_fields_name_file_line_field_value(tmp_path, record, field, fragment):
    path = _write_lines(tmp_path / "bad.jsonl", [GOOD, json.dumps(record)])
    with pytest.raises(TaskError) as info:
        load_tasks(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: field '{field}': "), message
    assert fragment in message and "\n" not in message
    assert info.value.field == field


# --- the math set ------------------------------------------------------------------------------------------------

def _value_of(answer: str) -> Fraction:
    """The number an answer string of the math files denotes, read independently of the generator."""
    match = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", answer)
    if match:
        return Fraction(int(match[2]), int(match[3])) * (-1 if match[1] else 1)
    assert re.fullmatch(r"-?\d+\.\d+", answer), answer
    return Fraction(answer)


def _has_decimal(value: Fraction) -> bool:
    q = value.denominator
    for p in (2, 5):
        while q % p == 0:
            q //= p
    return q == 1


def _other_form(value: Fraction, answer: str) -> str:
    """The same value written the other way: a fraction written as a decimal (or a/b), a decimal as \\dfrac."""
    sign, p, q = ("-" if value < 0 else ""), abs(value.numerator), value.denominator
    if "frac" in answer:
        return f"Answer: {float(value)!r}" if _has_decimal(value) else f"Answer: {sign}{p}/{q}"
    return f"The result is $\\boxed{{{sign}\\dfrac{{{p}}}{{{q}}}}}$."


@pytest.mark.parametrize(("name", "n", "seed", "exclude"), [("math_train", 200, 0, None),
                                                            ("math_test", 100, 1, "math_train")])
def test_shipped_math_sets_reproduce_and_every_answer_checks_in_another_form(tmp_path, name, n, seed, exclude):
    out = tmp_path / f"{name}.jsonl"
    argv = ["--n", str(n), "--seed", str(seed), "--out", str(out)]
    if exclude:
        argv += ["--exclude", str(ROOT / "data" / f"{exclude}.jsonl")]
    make_math.main(argv)
    assert out.read_bytes() == (ROOT / "data" / f"{name}.jsonl").read_bytes()

    tasks = load_tasks(out, require_answers=True)
    excluded = {t.id for t in load_tasks(ROOT / "data" / f"{exclude}.jsonl")} if exclude else set()
    problems = make_math.generate(n, seed=seed, exclude=excluded)
    assert [p.to_task() for p in problems] == tasks
    assert {t.family for t in tasks} == {"math"} and len({p.kind for p in problems}) == len(make_math.KINDS)
    for problem in problems:
        value = _value_of(problem.answer)
        assert value == problem.value == eval(problem.expression, {"F": Fraction}), problem  # noqa: S307
        assert value.denominator != 1, problem
        assert is_correct(problem.answer, _other_form(value, problem.answer)), problem
        assert not is_correct(problem.answer, _other_form(value + Fraction(1, 3), problem.answer)), problem


def test_shipped_math_equations_hold_for_their_answers():
    tasks = load_tasks(ROOT / "data" / "math_train.jsonl") + load_tasks(ROOT / "data" / "math_test.jsonl")
    equations = [t for t in tasks if re.match(r"Solve for [a-z]:|Find [a-z] if", t.prompt)]
    assert len(equations) >= 40
    for problem in equations:
        match = re.search(r"(?:for|Find) ([a-z])(?::| if) ([^=]+) = ([^.]+)\.", problem.prompt)
        var, left, right = match.groups()
        value = _value_of(problem.answer)

        def side(text: str) -> Fraction:
            text = re.sub(rf"(\d*){var}", lambda m: f"{m[1] or 1}*F({value.numerator}, {value.denominator})", text)
            return eval(text, {"F": Fraction})  # noqa: S307

        assert side(left) == side(right), problem.prompt


def test_math_sets_are_disjoint():
    train = load_tasks(ROOT / "data" / "math_train.jsonl")
    test = load_tasks(ROOT / "data" / "math_test.jsonl")
    assert not {t.id for t in train} & {t.id for t in test}
    assert not {normalize_prompt(t.prompt) for t in train} & {normalize_prompt(t.prompt) for t in test}


# --- the multiple-choice set ---------------------------------------------------------------------------------------

CONVERSIONS = {("metres", "centimetres"): 100, ("kilometres", "metres"): 1000, ("kilograms", "grams"): 1000,
               ("litres", "millilitres"): 1000, ("hours", "minutes"): 60, ("minutes", "seconds"): 60,
               ("days", "hours"): 24, ("weeks", "days"): 7}
WEEK = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _leading_number(option: str) -> Fraction | None:
    match = re.match(r"-?\d+(\.\d+)?", option)
    return Fraction(match.group()) if match else None


def _right_options(question: str, options: tuple[str, ...]) -> list[str]:
    """The options that are right, worked out from the question alone (not from the generator)."""
    def numeric(target: Fraction) -> list[str]:
        return [o for o in options if _leading_number(o) == target]

    if m := re.fullmatch(r"What is (\d+) × (\d+)\?", question):
        return numeric(Fraction(int(m[1]) * int(m[2])))
    if m := re.fullmatch(r"What is (\d+)% of (\d+)\?", question):
        return numeric(Fraction(int(m[1]) * int(m[2]), 100))
    if m := re.fullmatch(r"How many (\w+) are in ([\d.]+) (\w+)\?", question):
        return numeric(Fraction(m[2]) * CONVERSIONS[(m[3], m[1])])
    if m := re.fullmatch(r"Convert ([\d.]+) (\w+) to (\w+)\.", question):
        return numeric(Fraction(m[1]) * CONVERSIONS[(m[2], m[3])])
    if m := re.match(r"Water is at (-?\d+) °C", question):
        return numeric(Fraction(int(m[1]) * 9, 5) + 32)
    if m := re.search(r"steady (\d+) km/h for ([\d.]+) hours", question):
        return numeric(int(m[1]) * Fraction(m[2]))
    if m := re.match(r"A ([\d.]+) V source is connected across a (\d+) Ω resistor", question):
        return numeric(Fraction(m[1]) / int(m[2]))
    if m := re.fullmatch(r"Today is (\w+)\. What day of the week will it be in (\d+) days\?", question):
        return [o for o in options if o == WEEK[(WEEK.index(m[1]) + int(m[2])) % 7]]
    if "leap year" in question:
        return [o for o in options if calendar.isleap(int(o))]
    if "prime" in question:
        return [o for o in options if int(o) > 1 and all(int(o) % d for d in range(2, int(o)))]
    if "largest" in question:
        return [o for o in options if Fraction(o) == max(Fraction(x) for x in options)]
    if m := re.search(r"(\d+) m long and (\d+) m wide", question):
        return numeric(Fraction(int(m[1]) * int(m[2])))
    raise AssertionError(f"a question kind the test does not know: {question}")


@pytest.mark.parametrize(("name", "n", "seed", "exclude"), [("mc_train", 200, 0, None),
                                                            ("mc_test", 100, 1, "mc_train")])
def test_shipped_mc_sets_reproduce_and_the_letter_points_at_the_one_right_option(tmp_path, name, n, seed, exclude):
    out = tmp_path / f"{name}.jsonl"
    argv = ["--n", str(n), "--seed", str(seed), "--out", str(out)]
    if exclude:
        argv += ["--exclude", str(ROOT / "data" / f"{exclude}.jsonl")]
    make_mc.main(argv)
    assert out.read_bytes() == (ROOT / "data" / f"{name}.jsonl").read_bytes()

    tasks = load_tasks(out, require_answers=True)
    assert len(tasks) == n and {t.family for t in tasks} == {"multiple_choice"}
    assert {t.answer for t in tasks} == set("ABCD")
    for task in tasks:
        question = task.prompt.split("\n\n")[0]
        assert len(task.choices) == 4 and task.prompt == render_choices(question, task.choices)
        assert _right_options(question, task.choices) == [task.choices[LETTERS.index(task.answer)]], task.prompt


def test_mc_sets_are_disjoint():
    train = {t.id for t in load_tasks(ROOT / "data" / "mc_train.jsonl")}
    assert not train & {t.id for t in load_tasks(ROOT / "data" / "mc_test.jsonl")}


# --- the open-ended set ----------------------------------------------------------------------------------------------

def test_open_ended_source_rubrics():
    tasks = make_open.load_source()
    assert len(tasks) >= 40
    assert {t.domain for t in tasks} == {"how-to", "explanation", "advice"}
    assert all(sum(t.domain == d for t in tasks) >= 10 for d in ("how-to", "explanation", "advice"))
    assert sum(t.messages is not None and len(t.messages) > 1 for t in tasks) >= 3
    for task in tasks:
        points = [item.points for item in task.rubric]
        assert 4 <= len(points) <= 8, task.prompt
        assert any(p < 0 for p in points) and any(p > 0 for p in points), task.prompt
        assert all(p != 0 and -10 <= p <= 10 for p in points), task.prompt
        assert task.family == "open_ended" and task.answer is None
        assert len({item.criterion for item in task.rubric}) == len(points)


def test_open_ended_files_reproduce_and_split_the_source(tmp_path):
    train_out, test_out = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    make_open.main(["--seed", "0", "--test-fraction", "0.25", "--train-out", str(train_out),
                    "--test-out", str(test_out)])
    assert train_out.read_bytes() == (ROOT / "data" / "open_train.jsonl").read_bytes()
    assert test_out.read_bytes() == (ROOT / "data" / "open_test.jsonl").read_bytes()
    train, test = load_tasks(train_out), load_tasks(test_out)
    source = make_open.load_source()
    assert not {t.id for t in train} & {t.id for t in test}
    assert sorted(t.id for t in train + test) == sorted(t.id for t in source)
    assert train + test != source and sorted(train + test, key=source.index) == source
    for domain in ("how-to", "explanation", "advice"):
        share = sum(t.domain == domain for t in test) / sum(t.domain == domain for t in source)
        assert 0.15 <= share <= 0.35


def test_open_ended_source_errors_name_file_and_line(tmp_path):
    good = ('- domain: advice\n  prompt: "Q1?"\n  rubric:\n' +
            "".join(f'    - {{points: {p}, criterion: "c{i}"}}\n' for i, p in enumerate([3, 2, 1, -2])))
    few = '- domain: advice\n  prompt: "Q2?"\n  rubric:\n    - {points: 3, criterion: "a"}\n'
    no_pitfall = ('- domain: how-to\n  prompt: "Q3?"\n  rubric:\n' +
                  "".join(f'    - {{points: {p}, criterion: "c{i}"}}\n' for i, p in enumerate([3, 2, 1, 2])))
    path = tmp_path / "src.yaml"
    path.write_text(good + few)
    with pytest.raises(TaskError, match=rf"^{path}:8: field 'rubric': expected 4 to 8 criteria, got 1"):
        make_open.load_source(path)
    path.write_text(good + no_pitfall)
    with pytest.raises(TaskError, match=rf"^{path}:8: field 'rubric': needs at least one negative"):
        make_open.load_source(path)
    path.write_text(good.replace("points: 2", "points: 0"))
    with pytest.raises(TaskError, match=rf"^{path}:1: field 'rubric\[1\].points': expected a nonzero integer"):
        make_open.load_source(path)
    assert len(make_open.load_source(_write_lines(tmp_path / "ok.yaml", [good]))) == 1


# ---------------------------------------------------------------------------------------------------------------
# Files in other data sets' shapes (data/make_shapes.py): GSM8K-like and HealthBench-like

make_shapes = _load_generator("make_shapes")


def test_the_shaped_files_are_what_their_generator_writes(tmp_path):
    make_shapes.main(["--out-dir", str(tmp_path)])
    for path in sorted((ROOT / "data" / "shapes").glob("*.jsonl")):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_the_gsm8k_shaped_file_loads_as_math_with_the_worked_solutions_answer():
    from ropd_kit.sources import load_task_source

    path = ROOT / "data" / "shapes" / "gsm8k_like_test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(set(row) == {"question", "answer"} for row in rows)  # GSM8K's columns, nothing of ours
    tasks = load_task_source(path)
    assert [t.family for t in tasks] == ["math"] * len(rows)
    for row, task in zip(rows, tasks):
        # The answer after "####" is the result of the worked line's calculator annotation.
        calc = re.search(r"<<(\d+)([-+*/])(\d+)=(\d+)>>", row["answer"])
        a, op, b, result = calc.groups()
        ops = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}
        assert ops[op](int(a), int(b)) == int(result) == int(task.answer)
    shipped = {t.id for name in make_shapes.SHIPPED_ARITH for t in load_tasks(ROOT / "data" / f"{name}.jsonl")}
    train = load_task_source(ROOT / "data" / "shapes" / "gsm8k_like_train.jsonl")
    assert not shipped & {t.id for t in tasks + train} and not {t.id for t in tasks} & {t.id for t in train}


def test_the_healthbench_shaped_file_loads_as_our_open_ended_set():
    from ropd_kit.sources import load_task_source

    for split in ("train", "test"):
        ours = load_tasks(ROOT / "data" / f"open_{split}.jsonl")
        shaped = load_task_source(ROOT / "data" / "shapes" / f"healthbench_like_{split}.jsonl")
        assert [t.id for t in shaped] == [t.id for t in ours]
        assert {t.family for t in shaped} == {"open_ended"}
        assert [t.rubric for t in shaped] == [t.rubric for t in ours]
        assert any(c.points < 0 for t in shaped for c in t.rubric)
