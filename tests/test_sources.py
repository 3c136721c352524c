"""Task sources: every shape from local files the tests write (jsonl, json, csv, parquet, save_to_disk; no hub)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ropd_kit.data import LETTERS, Task, TaskError, load_tasks, render_messages, task_fingerprint
from ropd_kit.sources import (
    choice_index, detect_shape, column_names, load_task_source, multiple_choice_task, shuffle_choices,
)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _right_text(task: Task) -> str:
    """The option the recorded letter points at."""
    return task.choices[LETTERS.index(task.answer)]


GPQA = {
    "Question": "Which gas makes up most of the Earth's atmosphere?",
    "Correct Answer": "Nitrogen", "Incorrect Answer 1": "Oxygen", "Incorrect Answer 2": "Argon",
    "Incorrect Answer 3": "Carbon dioxide", "Record ID": "rec1",
}


# --- question/answer (GSM8K) and math (MATH) -----------------------------------------------------------------------

def test_gsm8k_shape_normalises_the_final_answer(tmp_path):
    rows = [{"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
            {"question": "A box holds 1,000 pens. How many in 2 boxes?", "answer": "2 * 1000 = 2000\n#### 2,000"},
            {"question": "What is 10 - 13?", "answer": "10 - 13 = -3\n#### -3"}]
    tasks = load_task_source(_jsonl(tmp_path / "gsm.jsonl", rows), split="test")
    assert [t.answer for t in tasks] == ["7", "2000", "-3"]
    assert [t.prompt for t in tasks] == [r["question"] for r in rows]
    assert {t.family for t in tasks} == {"math"} and {t.domain for t in tasks} == {"math"}
    assert tasks[0].id == task_fingerprint(rows[0]["question"])


def test_math_shape_reads_boxed_solution_or_answer_column(tmp_path):
    pd.DataFrame({
        "problem": ["Compute $\\frac{28}{6}$.", "What is $1+1$?"],
        "solution": ["It is $\\boxed{\\frac{14}{3}}$.", "So \\boxed{3} first, then \\boxed{2}."],
        "unique_id": ["test/algebra/1.json", "test/algebra/2.json"],
    }).to_parquet(tmp_path / "math.parquet")
    tasks = load_task_source(tmp_path / "math.parquet")
    assert [t.answer for t in tasks] == ["\\frac{14}{3}", "2"]  # the last \boxed{} wins
    assert [t.id for t in tasks] == ["test/algebra/1.json", "test/algebra/2.json"]
    assert {t.family for t in tasks} == {"math"}

    # MATH-500 carries both; the answer column is already final and wins over the solution
    frame = pd.DataFrame({"problem": ["p?"], "solution": ["\\boxed{wrong}"], "answer": ["0.5"]})
    frame.to_parquet(tmp_path / "m5.parquet")
    assert load_task_source(tmp_path / "m5.parquet")[0].answer == "0.5"


def test_math_solution_without_boxed_names_row_and_column(tmp_path):
    path = _jsonl(tmp_path / "m.jsonl", [{"problem": "1+1?", "solution": "\\boxed{2}"},
                                         {"problem": "2+2?", "solution": "It is four."}])
    with pytest.raises(TaskError, match=r"m\.jsonl\[train\]:row 1: field 'solution': no \\boxed"):
        load_task_source(path)


# --- multiple choice -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [1, "B", "(b)", "Jupiter", "1"])
def test_options_list_answer_as_index_letter_or_text(tmp_path, answer):
    pd.DataFrame({"question": ["Which is the largest planet?"], "choices": [["Mars", "Jupiter", "Venus", "Earth"]],
                  "answer": [answer]}).to_parquet(tmp_path / "mmlu.parquet")
    (task,) = load_task_source(tmp_path / "mmlu.parquet")
    assert task.family == "multiple_choice" and len(task.choices) == 4
    assert _right_text(task) == "Jupiter"
    assert sorted(task.choices) == sorted(["Mars", "Jupiter", "Venus", "Earth"])
    for letter, text in zip(LETTERS, task.choices):
        assert f"{letter}. {text}" in task.prompt


def test_lettered_columns_csv(tmp_path):
    pd.DataFrame({"Question": ["How many centimetres in a metre?", "Boiling point of water at sea level?"],
                  "A": ["10", "90 °C"], "B": ["100", "100 °C"], "C": ["1000", "110 °C"], "D": ["1", "212 °C"],
                  "Answer": ["b", "B"]}).to_csv(tmp_path / "mc.csv", index=False)
    tasks = load_task_source(tmp_path / "mc.csv")
    assert [_right_text(t) for t in tasks] == ["100", "100 °C"]


def test_gpqa_columns_right_answer_is_tracked_through_the_shuffle(tmp_path):
    rows = [dict(GPQA, **{"Question": f"{GPQA['Question']} (variant {i})", "Record ID": f"rec{i}"}) for i in range(40)]
    pd.DataFrame(rows).to_csv(tmp_path / "gpqa.csv", index=False)
    tasks = load_task_source(tmp_path / "gpqa.csv", seed=3)
    assert all(_right_text(t) == "Nitrogen" for t in tasks)
    assert [t.id for t in tasks] == [f"rec{i}" for i in range(40)]
    # GPQA lists the right answer first; after the shuffle it must not stay there
    assert len({t.answer for t in tasks}) == 4


def test_shuffle_is_seeded_stable_and_independent_of_source_order(tmp_path):
    pd.DataFrame([GPQA]).to_csv(tmp_path / "gpqa.csv", index=False)
    options = ["Carbon dioxide", "Argon", "Nitrogen", "Oxygen"]
    _jsonl(tmp_path / "list.jsonl", [{"question": GPQA["Question"], "options": options, "answer": "C"}])
    first = load_task_source(tmp_path / "gpqa.csv", seed=7)[0]
    assert load_task_source(tmp_path / "gpqa.csv", seed=7)[0] == first
    other_order = load_task_source(tmp_path / "list.jsonl", seed=7)[0]
    assert other_order.prompt == first.prompt and other_order.answer == first.answer

    orders = {tuple(shuffle_choices(f"q{i}", options, 2, seed=0)[0]) for i in range(30)}
    assert len(orders) > 5  # the order does depend on the task content
    unshuffled = load_task_source(tmp_path / "list.jsonl", shuffle_choices=False)[0]
    assert list(unshuffled.choices) == options and unshuffled.answer == "C"


def test_shuffle_choices_keeps_the_right_option_for_every_seed():
    options = ["red", "green", "blue", "yellow", "black"]
    for seed in range(50):
        shuffled, right = shuffle_choices("Colour of the sky?", options, 2, seed)
        assert sorted(shuffled) == sorted(options) and shuffled[right] == "blue"
    seeds = {tuple(shuffle_choices("Colour of the sky?", options, 2, s)[0]) for s in range(50)}
    assert len(seeds) > 10


def test_arc_labels_in_a_save_to_disk_folder(tmp_path):
    import datasets

    rows = [{"id": "arc1", "question": "Which melts ice fastest on a road?",
             "choices": {"text": ["sand", "salt", "sawdust", "gravel"], "label": ["1", "2", "3", "4"]},
             "answerKey": "2"},
            {"id": "arc2", "question": "Which is a mammal?",
             "choices": {"text": ["shark", "whale", "trout"], "label": ["A", "B", "C"]}, "answerKey": "B"}]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "arc"))
    tasks = load_task_source(tmp_path / "arc", split="test")
    assert [_right_text(t) for t in tasks] == ["salt", "whale"]
    assert [len(t.choices) for t in tasks] == [4, 3]
    with pytest.raises(TaskError, match=r"no split 'train' \(splits: \['test'\]\)"):
        load_task_source(tmp_path / "arc", split="train")


def test_choice_index_rules():
    options = ["Mars", "Jupiter", "2", "Earth"]
    assert choice_index(0, options) == 0 and choice_index(3.0, options) == 3
    assert choice_index("Jupiter", options) == 1 and choice_index("  Jupiter ", options) == 1
    assert choice_index("d", options) == 3 and choice_index("(C)", options) == 2 and choice_index("A.", options) == 0
    assert choice_index("2", options) == 2  # an option's text wins over digits read as an index
    assert choice_index("2", ["x", "y", "z"]) == 2
    assert choice_index("3", ["x", "y", "z"], labels=["1", "2", "3"]) == 2
    for bad in (4, -1, "E", "Pluto", "", None, True):
        with pytest.raises(ValueError):
            choice_index(bad, options)


def test_multiple_choice_task_helper():
    task = multiple_choice_task("2 + 2?", ["4", "3", "5", "22"], 0, seed=1, domain="arithmetic")
    assert _right_text(task) == "4" and task.domain == "arithmetic" and task.id == task_fingerprint(task.prompt)
    assert multiple_choice_task("2 + 2?", ["22", "5", "4", "3"], 2, seed=1) == task.model_copy(
        update={"domain": "general"})
    plain = multiple_choice_task("2 + 2?", ["4", "3"], None, shuffle=False)
    assert plain.answer is None and plain.prompt == "2 + 2?\n\nA. 4\nB. 3"


# --- prompt / conversation shape (HealthBench) --------------------------------------------------------------------

HEALTHBENCH = {
    "prompt": [{"role": "user", "content": "I have had a headache for two days."},
               {"role": "assistant", "content": "I'm sorry. Any fever or stiff neck?"},
               {"role": "user", "content": "No. What can I take?"}],
    "rubrics": [{"criterion": "Suggests an over-the-counter painkiller within label doses", "points": 5,
                 "tags": ["axis:accuracy"]},
                {"criterion": "Lists red-flag symptoms that need urgent care", "points": 4, "tags": []},
                {"criterion": "Recommends an opioid", "points": -8, "tags": ["axis:accuracy"]}],
    "prompt_id": "hb-1",
    "example_tags": ["theme:context_seeking"],
}


def test_healthbench_shape_jsonl(tmp_path):
    single = {"prompt": [{"role": "user", "content": "Is a daily walk good for me?"}],
              "rubrics": [{"criterion": "Says yes", "points": 3, "tags": []},
                          {"criterion": "Claims walking is dangerous", "points": -2, "tags": []}],
              "prompt_id": "hb-2", "example_tags": []}
    tasks = load_task_source(_jsonl(tmp_path / "hb.jsonl", [HEALTHBENCH, single]))
    task = tasks[0]
    assert task.id == "hb-1" and task.family == "open_ended" and task.answer is None
    assert [m.role for m in task.messages] == ["user", "assistant", "user"]
    assert task.prompt == render_messages(HEALTHBENCH["prompt"])
    assert "No. What can I take?" in task.prompt and "fever or stiff neck" in task.prompt
    assert [(r.criterion, r.points, list(r.tags)) for r in task.rubric] == [
        (r["criterion"], r["points"], r["tags"]) for r in HEALTHBENCH["rubrics"]]
    assert tasks[1].prompt == "Is a daily walk good for me?"  # one user turn: its text


def test_prompt_string_with_rubric_parquet_and_overrides(tmp_path):
    pd.DataFrame({"prompt": ["How do I boil an egg?", "Why is the sky blue?"],
                  "rubric": [[{"criterion": "Gives a time", "points": 5, "tags": ["t"]},
                              {"criterion": "Says raw eggs are safe for everyone", "points": -3, "tags": []}],
                             None]}).to_parquet(tmp_path / "open.parquet")
    tasks = load_task_source(tmp_path / "open.parquet", domain="how-to")
    assert tasks[0].rubric[1].points == -3 and tasks[1].rubric is None
    assert {t.family for t in tasks} == {"open_ended"} and {t.domain for t in tasks} == {"how-to"}
    forced = load_task_source(tmp_path / "open.parquet", family="math")
    assert {t.family for t in forced} == {"math"}


@pytest.mark.parametrize(("change", "field", "fragment"), [
    (lambda r: r["rubrics"][1].update(points=0), "rubrics[1].points", "nonzero integer"),
    (lambda r: r["rubrics"][0].update(points=2.5), "rubrics[0].points", "nonzero integer"),
    (lambda r: r["rubrics"][2].pop("criterion"), "rubrics[2].criterion", "missing"),
    (lambda r: r["prompt"].pop(), "prompt", "last message must be a user turn"),
    (lambda r: r["prompt"][0].update(role="doctor"), "prompt[0].role", "'system', 'user' or 'assistant'"),
    (lambda r: [item.update(points=-1) for item in r["rubrics"]], "rubrics", "positive points"),
])
def test_bad_healthbench_rows_are_named_by_row_and_column(tmp_path, change, field, fragment):
    bad = json.loads(json.dumps(HEALTHBENCH))
    bad["prompt_id"] = "hb-bad"
    change(bad)
    path = _jsonl(tmp_path / "hb.jsonl", [HEALTHBENCH, bad])
    with pytest.raises(TaskError) as info:
        load_task_source(path)
    message = str(info.value)
    assert message.startswith(f"{path}[train]:row 1: field '{field}': "), message
    assert fragment in message and "\n" not in message


# --- bad multiple-choice rows ------------------------------------------------------------------------------------

def test_bad_multiple_choice_rows_are_named_by_row_and_column(tmp_path):
    rows = [{"question": "1+1?", "options": ["2", "3"], "gold": "A"},
            {"question": "2+2?", "options": ["4", "5", "6", "7"], "gold": "E"}]
    path = _jsonl(tmp_path / "mc.jsonl", rows)
    with pytest.raises(TaskError, match=r"mc\.jsonl\[train\]:row 1: field 'gold': names none of the 4 options.*"
                                        r"got 'E'"):
        load_task_source(path, field_map={"answer": "gold"})

    same = _jsonl(tmp_path / "same.jsonl", [{"question": "Pick one", "options": ["yes", "no", "yes"], "answer": 0}])
    with pytest.raises(TaskError, match=r"row 0: field 'options': .*options [A-C] and [A-C] are the same text"):
        load_task_source(same)

    pd.DataFrame([GPQA, dict(GPQA, **{"Incorrect Answer 2": None, "Record ID": "rec2"})]).to_csv(
        tmp_path / "gpqa.csv", index=False)
    with pytest.raises(TaskError, match=r"gpqa\.csv\[train\]:row 1: field 'Incorrect Answer 2': expected a non-empty"):
        load_task_source(tmp_path / "gpqa.csv")


# --- options: field_map, limit, sample -----------------------------------------------------------------------------

def test_field_map_renames_their_columns(tmp_path):
    rows = [{"stem": "Which is a fruit?", "opts": ["carrot", "apple", "leek"], "gold": 1, "q": "ignored"}]
    path = _jsonl(tmp_path / "custom.jsonl", rows)
    with pytest.raises(TaskError) as info:
        load_task_source(path)
    message = str(info.value)
    assert "no known task shape in columns ['stem', 'opts', 'gold', 'q']" in message and "field_map=" in message
    (task,) = load_task_source(path, field_map={"question": "stem", "choices": "opts", "answer": "gold"})
    assert _right_text(task) == "apple" and task.prompt.startswith("Which is a fruit?")

    (qa,) = load_task_source(path, field_map={"prompt": "q"})
    assert qa.prompt == "ignored" and qa.family == "open_ended"
    with pytest.raises(TaskError, match=r"field 'nope': no such column \(field_map maps 'prompt' to it"):
        load_task_source(path, field_map={"prompt": "nope"})
    with pytest.raises(TaskError, match=r"field_map names \['promt'\], not fields we read"):
        load_task_source(path, field_map={"promt": "q"})


def test_detect_shape_by_columns():
    def shape(*columns, field_map=None):
        return detect_shape(column_names(columns, field_map))

    assert shape("question", "answer") == "question_answer"
    assert shape("Question", "Correct Answer", "Incorrect Answer 1") == "multiple_choice"
    assert shape("question", "A", "B", "C", "D", "answer") == "multiple_choice"
    assert shape("question", "choices", "answer") == "multiple_choice"
    assert shape("problem", "solution") == "math"
    assert shape("prompt", "rubrics", "prompt_id") == "prompt"
    assert shape("messages") == "prompt"
    assert shape("question") is None and shape("problem") is None and shape("text", "label") is None
    assert shape("text", "label", field_map={"prompt": "text"}) == "prompt"


def test_limit_and_seeded_sample(tmp_path):
    rows = [{"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"} for i in range(30)]
    path = _jsonl(tmp_path / "qa.jsonl", rows)
    everything = load_task_source(path)
    assert [t.answer for t in load_task_source(path, limit=3)] == ["1", "2", "3"]

    sample = load_task_source(path, sample=8, seed=1)
    assert load_task_source(path, sample=8, seed=1) == sample
    assert len(sample) == 8 and len({t.id for t in sample}) == 8
    positions = [everything.index(t) for t in sample]
    assert positions == sorted(positions)  # kept in file order
    assert load_task_source(path, sample=8, seed=2) != sample
    assert load_task_source(path, sample=8, seed=1, limit=2) == sample[:2]
    with pytest.raises(TaskError, match=r"sample=31 needs 1 to 30 rows"):
        load_task_source(path, sample=31)


# --- the kit's own JSONL, other files, missing sources -----------------------------------------------------------

def test_own_jsonl_goes_through_load_tasks(tmp_path):
    rows = [{"id": "a", "prompt": "What is 2 + 2?", "answer": "4", "domain": "arith"},
            {"prompt": "Name a colour."},
            {"prompt": "Pick\n\nA. x\nB. y", "choices": ["x", "y"], "answer": "B"}]
    path = _jsonl(tmp_path / "own.jsonl", rows)
    assert load_task_source(path) == load_tasks(path)
    assert [t.family for t in load_task_source(path)] == ["arithmetic", "open_ended", "multiple_choice"]
    assert load_task_source(path, sample=2, seed=0) == [load_tasks(path)[i] for i in sorted(
        __import__("random").Random(0).sample(range(3), 2))]
    _jsonl(path, rows[:1] + [{"prompt": 5}])
    with pytest.raises(TaskError, match=rf"^{path}:2: field 'prompt'"):  # file:line, as load_tasks says it
        load_task_source(path)


def test_json_array_file_and_a_folder_of_files(tmp_path):
    (tmp_path / "qa.json").write_text(json.dumps([{"question": "3*3?", "answer": "#### 9"}]), encoding="utf-8")
    assert load_task_source(tmp_path / "qa.json")[0].answer == "9"
    folder = tmp_path / "folder"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", [{"q": "Say hi.", "a": "hi"}])
    (task,) = load_task_source(folder, field_map={"prompt": "q", "answer": "a"})
    assert (task.prompt, task.answer) == ("Say hi.", "hi")


def test_missing_and_unknown_sources(tmp_path):
    with pytest.raises(TaskError, match="file not found"):
        load_task_source(tmp_path / "nope.parquet")
    with pytest.raises(TaskError, match="file not found"):
        load_task_source("./no/such/file.csv")
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(TaskError, match="unknown file type"):
        load_task_source(tmp_path / "t.txt")


# --- a run's tasks from its config (sources.tasks_from_config) ------------------------------------------------------

def test_tasks_from_config_reads_the_source_with_its_options(tmp_path):
    from ropd_kit.config import RunConfig
    from ropd_kit.sources import tasks_from_config

    rows = [{"stem": f"What is {i} + {i}?", "gold": str(2 * i)} for i in range(1, 11)]
    pd.DataFrame(rows).to_csv(tmp_path / "quiz.csv", index=False)
    config = RunConfig(tasks_path=str(tmp_path / "quiz.csv"), tasks_field_map={"question": "stem", "answer": "gold"},
                       tasks_sample=6, n_tasks=4, seed=3, eval_tasks_path=str(tmp_path / "quiz.csv"),
                       eval_tasks_field_map={"question": "stem", "answer": "gold"}, eval_tasks_limit=2)
    train = tasks_from_config(config)
    expected = load_task_source(tmp_path / "quiz.csv", field_map={"question": "stem", "answer": "gold"}, sample=6,
                                limit=4, seed=3)
    assert train == expected and len(train) == 4 and {t.family for t in train} == {"math"}
    assert [t.prompt for t in tasks_from_config(config, "eval")] == ["What is 1 + 1?", "What is 2 + 2?"]
    with pytest.raises(ValueError, match="which='test'"):
        tasks_from_config(config, "test")


def test_evaluation_tasks_need_an_answer_or_a_reference_rubric(tmp_path):
    from ropd_kit.config import RunConfig
    from ropd_kit.sources import tasks_from_config

    open_rows = [{"prompt": "How do I descale a kettle?",
                  "rubric": [{"criterion": "Suggests vinegar or citric acid.", "points": 5, "tags": []}]},
                 {"prompt": "Write a haiku about rain."}]
    path = _jsonl(tmp_path / "open.jsonl", open_rows)
    config = RunConfig(eval_tasks_path=str(path))
    with pytest.raises(TaskError, match=r"open\.jsonl: 1 evaluation task\(s\) have nothing to be evaluated against"):
        tasks_from_config(config, "eval")
    assert len(tasks_from_config(config.model_copy(update={"n_eval_tasks": 1}), "eval")) == 1  # the rubric one
    assert len(tasks_from_config(RunConfig(tasks_path=str(path)))) == 2  # training needs neither
