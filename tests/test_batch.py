"""The papermill batch runner: specs, runs, resumability, failures, secrets, offline HTML, stripped notebooks.

Runs real papermill kernels over small notebooks written here (no model, no server): what is tested is the
runner, not the ROPD notebooks (tests/test_notebooks.py executes those).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ropd_kit import batch, notebook_tools, redaction, rundir
from ropd_kit.batch import report
from ropd_kit.batch.spec import BatchError, BatchSpec, load_spec
from ropd_kit.redaction import SecretParameterError, check_secrets, secret_values
from ropd_kit.batch.runner import run_batch


def write_toy(path: Path) -> Path:
    """A notebook that records its parameters, fails when asked, and shows a plotly figure."""
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("# toy"),
        new_code_cell('run_dir = "x"\nn_tasks = 1\nfail = False', metadata={"tags": ["parameters"]}),
        new_code_cell(
            "import pathlib, plotly.graph_objects as go, plotly.io as pio\n"
            'pio.renderers.default = "plotly_mimetype"\n'
            'pathlib.Path(run_dir, "ran.txt").write_text(str(n_tasks))\n'
            'assert not fail, "asked to fail"'
        ),
        new_code_cell("go.Figure(go.Scatter(x=[1, 2], y=[2, 3]))"),
    ]
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return write_toy(tmp_path_factory.mktemp("nb") / "toy.ipynb")


def spec(toy: Path, **extra) -> dict:
    return {"name": "toy", "notebooks": [str(toy)], "base": {"n_tasks": 2}, "grid": {"fail": [False, True]}, **extra}


# ---------------------------------------------------------------------------------------------------------------
# Specs


def test_grid_expands_to_the_product_with_named_runs():
    s = BatchSpec(name="x", base={"seed": 1}, grid={"method": ["ropd", "lopd"], "n_tasks": [2, 4]})
    runs = s.expand()
    assert [r.name for r in runs] == ["method-ropd_n_tasks-2", "method-ropd_n_tasks-4", "method-lopd_n_tasks-2",
                                      "method-lopd_n_tasks-4"]
    assert runs[3].params == {"seed": 1, "method": "lopd", "n_tasks": 4}


def test_named_runs_times_grid_and_base_overridden_by_run():
    s = BatchSpec(name="x", base={"seed": 1, "n_tasks": 2},
                  runs=[{"name": "a", "params": {"n_tasks": 8}}, {"name": "b"}], grid={"seed": [0, 1]})
    runs = {r.name: r.params for r in s.expand()}
    assert runs == {"a_seed-0": {"seed": 0, "n_tasks": 8}, "a_seed-1": {"seed": 1, "n_tasks": 8},
                    "b_seed-0": {"seed": 0, "n_tasks": 2}, "b_seed-1": {"seed": 1, "n_tasks": 2}}
    assert [r.name for r in BatchSpec(name="x").expand()] == ["default"]


def test_a_named_runs_own_notebooks_go_with_each_of_its_grid_runs():
    s = BatchSpec(name="x", grid={"seed": [0, 1]},
                  runs=[{"name": "a", "notebooks": ["04_grpo_training"]}, {"name": "b"}])
    assert [(r.name, r.notebooks) for r in s.expand()] == [
        ("a_seed-0", ["04_grpo_training"]), ("a_seed-1", ["04_grpo_training"]), ("b_seed-0", None), ("b_seed-1", None)]
    with pytest.raises(BatchError, match="runs.0.notebooks: .*empty"):
        load_spec({"name": "x", "runs": [{"name": "a", "notebooks": []}]})


def test_grid_values_that_are_paths_get_names_that_tell_them_apart():
    deep = "/home/someone/projects/ropd/experiments/data/sets"
    s = BatchSpec(name="x", grid={"tasks_path": [f"{deep}/a/train.jsonl", f"{deep}/b/train.jsonl", "openai/gsm8k"]})
    assert [r.name for r in s.expand()] == ["tasks_path-a-train.jsonl", "tasks_path-b-train.jsonl",
                                            "tasks_path-openai-gsm8k"]
    # Names that were distinct before stay as they were (a finished batch keeps its folders).
    short = BatchSpec(name="x", grid={"tasks_path": ["data/arith_easy_test.jsonl", "data/arith_test.jsonl"]})
    assert [r.name for r in short.expand()] == ["tasks_path-data-arith-easy-test.jsonl",
                                                "tasks_path-data-arith-test.jsonl"]
    with pytest.raises(BatchError, match="both named"):
        BatchSpec(name="x", grid={"tasks_path": ["data/a.jsonl", "data/a.jsonl"]}).expand()


def test_spec_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: ok\ngrid: {method: []}\n")
    with pytest.raises(BatchError, match=r"bad\.yaml.*grid.*'method' has no values"):
        load_spec(bad)
    bad.write_text("name: ok\nunknown_key: 1\n")
    with pytest.raises(BatchError, match="unknown_key"):
        load_spec(bad)
    with pytest.raises(BatchError, match="folder name"):
        load_spec({"name": "../escape"})
    with pytest.raises(BatchError, match="two runs are both named"):
        BatchSpec(name="x", runs=[{"name": "a"}, {"name": "a"}]).expand()
    named = tmp_path / "from_file.yaml"
    named.write_text("base: {seed: 3}\n")
    assert load_spec(named).name == "from_file"


def test_repository_specs_load_and_use_known_parameters():
    root = Path(__file__).resolve().parent.parent
    known = set(notebook_tools.config_parameter_names())
    for path in sorted((root / "experiments").glob("*.yaml")):
        s = load_spec(path)
        notebooks = [batch.spec.notebook_path(n) for n in s.notebooks]
        known_here = known | {k for nb in notebooks for k in batch.spec.notebook_parameters(nb)}
        for run in s.expand():
            assert set(run.params) <= known_here, (path, set(run.params) - known_here)
            check_secrets(run.params, env={})


def _two_shapes(folder: Path) -> tuple[Path, Path, Path]:
    """A GSM8K-shaped csv, a HealthBench-shaped jsonl (chat prompt, rubric with a negative item) and a parquet file
    of multiple-choice questions under column names no shape knows."""
    import pandas as pd

    gsm = folder / "gsm.csv"
    pd.DataFrame([{"question": f"Ana has {n} pens and buys {n} more. How many pens?",
                   "answer": f"{n}+{n}\n#### {2 * n}"} for n in (3, 4, 5)]).to_csv(gsm, index=False)
    health = folder / "health.jsonl"
    health.write_text("".join(json.dumps({
        "prompt_id": f"h{i}", "prompt": [{"role": "user", "content": f"How do I treat a mild burn on my {part}?"}],
        "rubrics": [{"criterion": "Says to cool it under running water.", "points": 5, "tags": ["axis:accuracy"]},
                    {"criterion": "Recommends putting butter on it.", "points": -3, "tags": ["axis:safety"]}],
    }) + "\n" for i, part in enumerate(("hand", "arm", "finger"))))
    quiz = folder / "quiz.parquet"
    pd.DataFrame([{"stem": f"Which number is even? ({i})", "opts": ["3", "5", str(2 * i + 8)], "gold": 2}
                  for i in range(3)]).to_parquet(quiz)
    return gsm, health, quiz


def test_a_grid_over_data_sets_gives_each_run_its_own_tasks(tmp_path):
    from ropd_kit.sources import tasks_from_config

    gsm, health, quiz = _two_shapes(tmp_path)
    spec_path = tmp_path / "datasets.yaml"
    spec_path.write_text(
        "notebooks: [01_teacher_references, 04_grpo_training]\n"
        "base: {n_tasks: 2, eval_tasks_limit: 1, seed: 1}\n"
        f"grid: {{tasks_path: ['{gsm}', '{health}']}}\n"
        # Named runs when a data set brings its own options: a field map (a dict) and its own eval set.
        "runs:\n"
        "  - {name: shared-eval, params: {eval_tasks_path: " + f"'{gsm}'" + "}}\n"
    )
    quiz_spec = {"name": "quiz", "notebooks": ["01_teacher_references"], "runs": [{"name": "quiz", "params": {
        "tasks_path": str(quiz), "tasks_field_map": {"question": "stem", "choices": "opts", "answer": "gold"},
        "eval_tasks_path": str(health), "tasks_sample": 2}}]}
    seen = {}
    for spec in (load_spec(spec_path), load_spec(quiz_spec)):
        notebooks = [batch.spec.notebook_path(n) for n in spec.notebooks]
        known = batch.spec._known_parameters(notebooks)  # what run_batch checks before anything runs
        for run in spec.expand():
            assert set(run.params) <= known, set(run.params) - known
            check_secrets(run.params, env={})
            # What the notebooks do with the injected parameters (notebook_tools.parameters + run_config).
            namespace = {**run.params, "run_dir": str(tmp_path / "runs" / run.name)}
            config = notebook_tools.run_config(notebook_tools.parameters(namespace))
            seen[run.name] = (config, tasks_from_config(config), tasks_from_config(config, "eval"))
    # Absolute paths cut to 40 characters would name both runs alike: they are told apart by their file names.
    assert sorted(seen) == ["quiz", "shared-eval_tasks_path-gsm.csv", "shared-eval_tasks_path-health.jsonl"]
    by_source = {Path(config.tasks_path).name: (tasks, evals) for config, tasks, evals in seen.values()}
    tasks, evals = by_source["gsm.csv"]
    assert [(t.family, t.answer) for t in tasks] == [("math", "6"), ("math", "8")] and len(evals) == 1
    tasks, evals = by_source["health.jsonl"]
    assert [t.family for t in tasks] == ["open_ended"] * 2 and [t.id for t in tasks] == ["h0", "h1"]
    assert [r.points for r in tasks[0].rubric] == [5, -3] and evals[0].answer == "6"
    tasks, evals = by_source["quiz.parquet"]
    assert len(tasks) == 2 and all(t.family == "multiple_choice" and t.choices[ord(t.answer) - 65] in
                                   {"8", "10", "12"} for t in tasks)
    assert evals[0].family == "open_ended" and evals[0].rubric is not None
    saved = json.loads((tmp_path / "runs" / "quiz" / "config.json").read_text())
    assert saved["tasks_field_map"] == {"question": "stem", "choices": "opts", "answer": "gold"}


# ---------------------------------------------------------------------------------------------------------------
# Secrets


@pytest.mark.parametrize("name", ["api_key", "openai_api_key", "hf_token", "token", "client_secret", "password",
                                  "teacher_apikey", "auth"])
def test_key_holder_names_are_refused(name):
    with pytest.raises(SecretParameterError, match=name):
        check_secrets({name: "whatever"}, env={})


@pytest.mark.parametrize("name", ["teacher_api_key_env", "verifier_api_key_env", "teacher_max_tokens",
                                  "max_prompt_tokens", "n_teacher_refs", "method"])
def test_ordinary_names_pass(name):
    check_secrets({name: "OPENAI_API_KEY" if name.endswith("_env") else 3}, env={})


def test_a_value_equal_to_a_named_key_is_refused_without_echoing_it():
    key = "sk-sentinel-0123456789abcdef"
    env = {"ROPD_TEST_KEY": key}
    params = {"teacher_api_key_env": "ROPD_TEST_KEY", "teacher_model": key}
    with pytest.raises(SecretParameterError) as info:
        check_secrets(params, env=env)
    assert "teacher_model" in str(info.value) and "ROPD_TEST_KEY" in str(info.value)
    assert key not in str(info.value)
    # nested and embedded values too
    with pytest.raises(SecretParameterError, match=r"signals\[1\]"):
        check_secrets({"teacher_api_key_env": "ROPD_TEST_KEY", "signals": ["score", f"Bearer {key}"]}, env=env)
    # a variable that looks like a key holder counts even when no parameter names it
    with pytest.raises(SecretParameterError, match="OPENAI_API_KEY"):
        check_secrets({"teacher_model": key}, env={"OPENAI_API_KEY": key})
    check_secrets({"teacher_api_key_env": "ROPD_TEST_KEY", "teacher_model": "gpt"}, env=env)


@settings(max_examples=50, deadline=None)
@given(secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40),
       prefix=st.text(max_size=5), suffix=st.text(max_size=5))
def test_any_value_containing_the_key_is_refused(secret, prefix, suffix):
    env = {"MY_KEY_VAR": secret}
    with pytest.raises(SecretParameterError):
        check_secrets({"verifier_api_key_env": "MY_KEY_VAR", "tasks_path": prefix + secret + suffix}, env=env)


def test_secret_values_are_keys_not_paths():
    env = {"PWD": "/work/main", "SSH_AUTH_SOCK": "/tmp/ssh-abc/agent.1", "HF_TOKEN": "hf_0123456789",
           "MY_VAR": "value-of-my-var", "OPENAI_API_KEY": "sk-0123456789"}
    assert secret_values({"teacher_api_key_env": "MY_VAR"}, env) == {
        "MY_VAR": "value-of-my-var", "HF_TOKEN": "hf_0123456789", "OPENAI_API_KEY": "sk-0123456789"}


def test_redact_file_replaces_and_counts(tmp_path):
    f = tmp_path / "out.txt"
    f.write_text("a sk-secret-xyz b sk-secret-xyz")
    assert redaction.redact_file(f, {"K": "sk-secret-xyz"}) == 2
    assert "sk-secret" not in f.read_text() and redaction.REDACTED in f.read_text()


# ---------------------------------------------------------------------------------------------------------------
# Running


def test_kernel_runs_this_interpreter():
    from jupyter_client.kernelspec import KernelSpecManager

    name = batch.spec.kernel_name()
    argv0 = KernelSpecManager().get_kernel_spec(name).argv[0]
    assert argv0 in {"python", "python3"} or os.path.samefile(argv0, sys.executable)


@pytest.mark.slow
def test_batch_records_failure_goes_on_and_resumes(toy, tmp_path):
    reports = tmp_path / "reports"
    first = run_batch(spec(toy), reports, progress=False, serve_local=False)
    by_name = {r.run: r for r in first}
    ok, bad = by_name["fail-False"], by_name["fail-True"]
    assert ok.status == "done" and not ok.skipped
    assert (reports / "toy" / "fail-False" / "run" / "ran.txt").read_text() == "2"
    assert (reports / "toy" / "fail-False" / "toy.ipynb").exists()
    assert bad.status == "failed" and bad.failed_notebook == "toy"
    assert "AssertionError: asked to fail" in bad.error and "asked to fail" in bad.traceback
    saved = json.loads((reports / "toy" / "fail-True" / STATUS).read_text())
    assert saved["status"] == "failed" and saved["failed_notebook"] == "toy"
    # the failed notebook is still exported, so its traceback can be read in the report
    assert (reports / "toy" / "fail-True" / "toy.html").exists()

    index = (reports / "toy" / "index.html").read_text()
    assert "fail-False" in index and "fail-True" in index and "asked to fail" in index

    marker = reports / "toy" / "fail-False" / STATUS
    before = marker.stat().st_mtime_ns
    second = {r.run: r for r in run_batch(spec(toy), reports, progress=False, serve_local=False)}
    assert second["fail-False"].skipped and second["fail-False"].status == "done"
    assert marker.stat().st_mtime_ns == before
    assert not second["fail-True"].skipped and second["fail-True"].status == "failed"  # unfinished runs are redone

    # changed parameters make a finished run stale: it runs again with the new values
    third = {r.run: r for r in run_batch(spec(toy, base={"n_tasks": 5}), reports, progress=False, serve_local=False,
                                         only="fail-False")}
    assert list(third) == ["fail-False"] and not third["fail-False"].skipped
    assert (reports / "toy" / "fail-False" / "run" / "ran.txt").read_text() == "5"


STATUS = rundir.STATUS


def test_a_run_that_calls_no_endpoint_needs_no_server():
    from ropd_kit.batch.runner import needs_servers

    def nbs(*names: str) -> list[Path]:
        return [Path(f"/notebooks/{n}.ipynb") for n in names]

    assert not needs_servers(nbs("04_grpo_training"), {"method": "lopd"})
    assert not needs_servers(nbs("03_verification_and_rewards", "04_grpo_training", "06_efficiency"),
                             {"method": "rlvr"})
    assert needs_servers(nbs("04_grpo_training"), {"method": "ropd"})
    assert needs_servers(nbs("04_grpo_training"), {})  # the notebook's own default method judges
    assert needs_servers(nbs("01_teacher_references", "04_grpo_training"), {"method": "lopd"})
    assert needs_servers(nbs("my_own_notebook"), {"method": "lopd"})  # a notebook we do not know may call one
    # The signals notebook calls the judge endpoint for the teacher-as-judge signal only (its default includes it).
    assert not needs_servers(nbs("05_signal_alignment_auc"), {"signals": ["score", "logprob"]})
    assert needs_servers(nbs("05_signal_alignment_auc"), {"signals": ["score", "judge"]})
    assert needs_servers(nbs("05_signal_alignment_auc"), {})
    # Only the first notebook samples from the student's server: the judging notebooks leave it stopped.
    from ropd_kit.batch.runner import served_roles

    assert "student" in served_roles(nbs("01_teacher_references")[0], {"method": "ropd"})
    for name in ("02_rubric_induction", "04_grpo_training"):
        assert served_roles(nbs(name)[0], {"method": "ropd"}) == ("teacher", "rubricator", "verifier")


@pytest.mark.slow
def test_a_run_runs_its_own_notebooks_and_the_progress_line_follows_them(toy, tmp_path, capfd):
    from ropd_kit.batch.progress import BatchProgress, cell_progress

    other = write_toy(tmp_path / "other.ipynb")
    s = {"name": "own", "notebooks": [str(toy), str(other)], "base": {"n_tasks": 2},
         "runs": [{"name": "both"}, {"name": "trains", "params": {"fail": True}, "notebooks": [str(other)]}]}
    results = {r.run: r for r in run_batch(s, tmp_path / "reports", serve_local=False)}
    assert [nb.notebook for nb in results["both"].notebooks] == ["toy", "other"]
    assert [nb.notebook for nb in results["trains"].notebooks] == ["other"] and results["trains"].status == "failed"
    folder = tmp_path / "reports" / "own"
    assert not (folder / "trains" / "toy.ipynb").exists()

    # The line names the run and notebook as each starts, and counts notebooks over the whole batch.
    err = capfd.readouterr().err
    assert "run 1/2 both · toy" in err and "run 1/2 both · other" in err and "run 2/2 trains · other" in err
    assert "own: 3/3 notebooks" in err
    # The cell a notebook is at, from the copy papermill saves as it goes: all of them in a finished notebook, the
    # ones before the failing cell in the failed one.
    finished, failed = cell_progress(folder / "both" / "toy.ipynb"), cell_progress(folder / "trains" / "other.ipynb")
    assert finished[0] == finished[1] == 5  # the toy's four cells and the injected parameters
    assert failed[0] == 3 < failed[1]  # the title, parameters and injected cells (papermill adds its error cells)
    assert cell_progress(folder / "both" / "not-yet.ipynb") is None

    # Training steps come from the run's train log (a resumed step counts once).
    run_dir = folder / "both" / "run"
    progress = BatchProgress("own", n_runs=1, n_notebooks=1, enabled=False)
    progress.run_started("both", run_dir, max_steps=2)
    progress.notebook_started("toy", folder / "both" / "toy.ipynb")
    assert progress.line() == "run 1/1 both · toy 0:00 · cell 5/5"
    rundir.write_jsonl(run_dir / rundir.TRAIN_LOG, [{"step": 1}, {"step": 1}])
    assert progress.line().endswith("· steps 1/2")
    progress.close()

    # On a re-run the finished run is skipped and not counted: only the failed one's notebook is left to do.
    run_batch(s, tmp_path / "reports", serve_local=False)
    err = capfd.readouterr().err
    assert "own: 1/1 notebooks" in err and "run 1/1 trains · other" in err and "both" not in err


def test_bad_specs_are_refused_before_anything_runs(toy, tmp_path):
    reports = tmp_path / "reports"
    with pytest.raises(BatchError, match="unknown parameter.*n_taks"):
        run_batch({"name": "x", "notebooks": [str(toy)], "base": {"n_taks": 2}}, reports, serve_local=False)
    with pytest.raises(BatchError, match="run_dir is set by the batch"):
        run_batch({"name": "x", "notebooks": [str(toy)], "base": {"run_dir": "a"}}, reports, serve_local=False)
    with pytest.raises(BatchError, match="no run named"):
        run_batch(spec(toy), reports, only="nope", serve_local=False)
    with pytest.raises(SecretParameterError, match="api_key"):
        run_batch({"name": "x", "notebooks": [str(toy)], "base": {"api_key": "sk-1"}}, reports, serve_local=False)
    assert not reports.exists()


@pytest.fixture(scope="module")
def one_run(toy, tmp_path_factory) -> Path:
    """The reports folder of a one-run batch of the toy notebook, executed once for the tests that only read it."""
    reports = tmp_path_factory.mktemp("one-run") / "reports"
    run_batch({"name": "h", "notebooks": [str(toy)]}, reports, progress=False, serve_local=False)
    return reports


@pytest.mark.slow
def test_html_export_is_offline_and_has_the_figure(one_run):
    reports = one_run
    html = (reports / "h" / "default" / "toy.html").read_text()
    assert "plotly-graph-div" in html and "Plotly.newPlot" in html
    # plotly.js is inlined and nothing is fetched from a CDN (require.js, MathJax, widget manager)
    assert "<script src=" not in html.replace("<script src=\"data:", "")
    executed = nbformat.read(reports / "h" / "default" / "toy.ipynb", as_version=4)
    assert executed.metadata["papermill"]["parameters"]["run_dir"].endswith("h/default/run")


# ---------------------------------------------------------------------------------------------------------------
# Stripping


@pytest.mark.slow
def test_strip_clears_outputs_and_keeps_the_parameters_tag(one_run, tmp_path):
    import shutil

    executed = tmp_path / "toy.ipynb"  # a copy: stripping rewrites the file, the shared run stays as executed
    shutil.copy(one_run / "h" / "default" / "toy.ipynb", executed)
    assert report.unstripped([executed]) == [executed]
    assert report.strip([executed]) == [executed]
    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code)
    assert "papermill" not in nb.metadata
    assert report.unstripped([executed]) == [] and report.strip([executed]) == []
    assert report.main(["check", str(executed)]) == 0


# ---------------------------------------------------------------------------------------------------------------
# The index page and run discovery


def fake_run(folder: Path, method: str, accuracies: list[float]) -> Path:
    """A finished batch run folder with the logs 04 and 05 write (no model needed)."""
    from ropd_kit import rundir
    from ropd_kit.config import RunConfig

    run = folder / rundir.RUN_SUBDIR
    RunConfig(run_dir=str(run), method=method).save()
    rundir.write_jsonl(run / rundir.TRAIN_LOG, [
        {"step": s, "method": method, "samples_seen": 4 * s, "wall_s": 10.0 * s, "reward_mean": 0.1 * s,
         "reward_std": 0.05, "loss": 0.5 / s} for s in range(1, len(accuracies))
    ])
    rundir.write_jsonl(run / rundir.EVAL, [
        {"step": s, "task_id": f"t{i}", "sample_idx": 0, "correct": i < round(acc * 4)}
        for s, acc in enumerate(accuracies) for i in range(4)
    ])
    rundir.write_jsonl(run / "signal_auc.jsonl", [{"signal": "score", "auc": 0.8, "n": 8, "n_pos": 4, "n_neg": 4,
                                                   "n_missing": 0, "note": ""}])
    (folder / rundir.STATUS).write_text(batch.RunStatus(
        run=folder.name, status="done", params={"method": method}, fingerprint="x", run_dir=str(run)
    ).model_dump_json())
    return run


def test_index_compares_runs_offline(tmp_path):
    s = BatchSpec(name="cmp", grid={"method": ["ropd", "lopd"]})
    batch_dir = tmp_path / "cmp"
    fake_run(batch_dir / "method-ropd", "ropd", [0.0, 0.5, 0.75])
    fake_run(batch_dir / "method-lopd", "lopd", [0.0, 0.25, 0.5])
    page = batch.write_index(batch_dir, s).read_text()
    for text in ("method-ropd", "method-lopd", "Training", "Evaluation", "Efficiency", "Cost to reach accuracy 0.50",
                 "ROC AUC",
                 "plotly-graph-div", "samples_vs_ropd"):
        assert text in page, text
    assert "<script src=" not in page  # plotly.js is inlined: the page opens offline
    frame = notebook_tools.efficiency(sorted(batch_dir.glob("*/run")))
    assert set(frame["run"]) == {"method-ropd", "method-lopd"}  # named after the batch run, not "run"
    table = notebook_tools.target_table(frame, 0.5).set_index("method")
    # ropd reaches 0.5 at step 1 (4 samples), lopd at step 2 (8 samples): lopd needs 2x the samples
    assert table.loc["lopd", "samples_vs_ropd"] == pytest.approx(2.0)


def test_index_says_a_target_both_methods_start_at_is_not_measurable(tmp_path):
    # One step each, both already at the best accuracy they reach: the default target is where they started.
    s = BatchSpec(name="one-step", grid={"method": ["ropd", "lopd"]})
    batch_dir = tmp_path / "one-step"
    fake_run(batch_dir / "method-ropd", "ropd", [0.75, 0.75])
    fake_run(batch_dir / "method-lopd", "lopd", [0.75, 0.5])
    page = batch.write_index(batch_dir, s).read_text()
    assert "Cost to reach accuracy 0.75" in page
    table = page[page.index("Cost to reach accuracy 0.75"):]
    table = table[:table.index("</table>")]
    assert table.count("not measurable at this size") == 2 and ">reached<" not in table
    assert "cannot measure what reaching it costs" in page


def test_index_shows_each_runs_evaluation_and_mixes_no_metrics(tmp_path):
    # One run with pass@1, one with the mean reference-rubric score of an open-ended set (eval records with `score`
    # and correct=None), as experiments/shapes.yaml makes them.
    from ropd_kit import rundir

    s = BatchSpec(name="mixed", runs=[{"name": "gsm"}, {"name": "health"}])
    batch_dir = tmp_path / "mixed"
    fake_run(batch_dir / "gsm", "ropd", [0.25, 0.5, 0.75])
    health = fake_run(batch_dir / "health", "ropd", [0.0, 0.0, 0.0])
    rundir.write_jsonl(health / rundir.EVAL, [
        {"step": step, "task_id": f"t{i}", "sample_idx": 0, "correct": None, "score": score}
        for step, score in ((0, 0.3), (2, 0.4)) for i in range(4)
    ])
    table = notebook_tools.evaluation_table(notebook_tools.efficiency(sorted(batch_dir.glob("*/run"))))
    rows = table.set_index("run")
    assert rows.loc["gsm", "metric"] == "pass@1" and rows.loc["health", "metric"] == "mean score"
    assert rows.loc["gsm", ["first", "last"]].tolist() == pytest.approx([0.25, 0.75])
    assert rows.loc["health", ["first", "last", "change"]].tolist() == pytest.approx([0.3, 0.4, 0.1])
    assert rows.loc["health", "last_step"] == 2 and rows.loc["gsm", "n_tasks"] == 4
    page = batch.write_index(batch_dir, s).read_text()
    assert "<h2>Evaluation</h2>" in page and "mean score" in page
    # Averaging a pass@1 curve with a rubric-score curve would be meaningless: no cost-to-target table.
    assert "Cost to reach accuracy" not in page and "No cost-to-target table" in page


def test_index_without_logs_says_so(tmp_path):
    page = batch.write_index(tmp_path / "empty", BatchSpec(name="empty")).read_text()
    assert "pending" in page and "No comparison yet" in page and "<script" not in page


def test_find_runs_batch_layout_and_siblings(tmp_path):
    batch_dir = tmp_path / "reports" / "b"
    a = fake_run(batch_dir / "a", "ropd", [0.0, 0.5])
    b = fake_run(batch_dir / "b", "lopd", [0.0, 0.5])
    assert notebook_tools.find_runs(a) == [a, b]
    # a folder that is merely named "run" is not a batch: only its own siblings with a config.json count
    lone = tmp_path / "elsewhere" / "run"
    from ropd_kit.config import RunConfig

    RunConfig(run_dir=str(lone)).save()
    RunConfig(run_dir=str(tmp_path / "elsewhere" / "other")).save()
    assert notebook_tools.find_runs(lone) == [tmp_path / "elsewhere" / "other", lone]
    assert notebook_tools.find_runs(lone, str(batch_dir / "*" / "run")) == [a, b, lone]


# ---------------------------------------------------------------------------------------------------------------
# experiments/families.yaml: one run per task family, side by side


FAMILY_SETS = {"data/math_test.jsonl": "math", "data/mc_test.jsonl": "multiple_choice",
               "data/open_test.jsonl": "open_ended", "data/arith_easy_test.jsonl": "arithmetic"}


def test_the_families_spec_runs_each_family_through_judging_and_the_auc_notebook(tmp_path):
    from ropd_kit.sources import tasks_from_config

    root = Path(__file__).resolve().parent.parent
    spec = load_spec(root / "experiments" / "families.yaml")
    assert spec.notebooks == ["01_teacher_references", "02_rubric_induction", "03_verification_and_rewards",
                              "05_signal_alignment_auc"]
    runs = spec.expand()
    assert [r.params["tasks_path"] for r in runs] == list(FAMILY_SETS)
    assert len({r.name for r in runs}) == 4
    for run in runs:
        assert not any(k.endswith(("_model", "_base_url")) for k in run.params)  # the offline default's models
        namespace = {**run.params, "run_dir": str(tmp_path / run.name)}
        config = notebook_tools.run_config(notebook_tools.parameters(namespace))
        tasks = tasks_from_config(config)
        assert len(tasks) == run.params["n_tasks"] == 3
        assert {t.family for t in tasks} == {FAMILY_SETS[run.params["tasks_path"]]}, run.name


def test_the_index_shows_the_families_auc_side_by_side(tmp_path):
    import pandas as pd

    from ropd_kit import analysis
    from ropd_kit.config import RunConfig

    spec = load_spec(Path(__file__).resolve().parent.parent / "experiments" / "families.yaml")
    batch_dir = tmp_path / spec.name
    for run in spec.expand():
        folder = batch_dir / run.name
        path = folder / rundir.RUN_SUBDIR
        RunConfig(run_dir=str(path), tasks_path=run.params["tasks_path"]).save()
        if FAMILY_SETS[run.params["tasks_path"]] == "open_ended":
            frame = pd.DataFrame({"reference_score": [0.9, 0.7, 0.2, 0.1], "score": [0.8, 0.3, 0.4, 0.1]})
        else:
            frame = pd.DataFrame({"correct": [True, True, False, False], "score": [0.8, 0.3, 0.4, 0.1]})
        notebook_tools.save_table(path, "signal_auc", analysis.signal_auc(frame, ["score"]))
        (folder / rundir.STATUS).write_text(batch.RunStatus(
            run=run.name, status="done", params=run.params, fingerprint="x", run_dir=str(path)).model_dump_json())
    page = batch.write_index(batch_dir, spec).read_text()
    assert "4 done" in page and "ROC AUC" in page
    auc_table = page[page.index("ROC AUC"):]
    for run in spec.expand():
        assert run.name in auc_table and run.params["tasks_path"] in page
    assert auc_table.count("<td>score</td>") == 4
    assert "reference_score &gt;= 0.5" in auc_table and auc_table.count("<td>correct</td>") == 3
    assert "spearman" in auc_table


# ---------------------------------------------------------------------------------------------------------------
# experiments/shapes.yaml: files in GSM8K's and HealthBench's shapes through all six notebooks


def test_the_shapes_spec_reads_each_file_by_its_shape_through_the_notebook_parameters(tmp_path):
    from ropd_kit.sources import tasks_from_config

    root = Path(__file__).resolve().parent.parent
    spec = load_spec(root / "experiments" / "shapes.yaml")
    assert spec.notebooks == list(batch.spec.DEFAULT_NOTEBOOKS)  # training and evaluation included
    families = {}
    for run in spec.expand():
        namespace = {**run.params, "run_dir": str(tmp_path / run.name)}
        config = notebook_tools.run_config(notebook_tools.parameters(namespace))
        train = tasks_from_config(config)
        assert len(train) == run.params["n_tasks"]
        families[run.name] = {t.family for t in train}
        raw = json.loads((root / run.params["eval_tasks_path"]).read_text().splitlines()[0])
        assert "id" not in raw and "family" not in raw  # the public shape's columns, not ours
    assert families == {"gsm8k_like": {"math"}, "healthbench_like": {"open_ended"}}
