"""The six notebooks: committed without outputs, thin, and executable headless end to end through the batch runner.

The integration part runs experiments/tiny.yaml (SmolLM2-135M in every role, two tasks, one training step) as one
batch with two runs — one that must pass all six notebooks and one with a task file that does not exist — against
the session's local llama-server, with a sentinel API key in the environment that must end up nowhere in the reports.
"""

from __future__ import annotations

import ast
import json
import os
import secrets
from pathlib import Path

import nbformat
import pytest

from ropd_kit import batch, notebook_tools, redaction, rundir
from ropd_kit.batch import report
from ropd_kit.batch.spec import load_spec
from ropd_kit.batch.runner import run_batch
from ropd_kit.config import FAST_MODEL, RunConfig

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ROLES = ("teacher", "rubricator", "verifier", "student")
TASKS = [
    {"prompt": "Ann has 3 apples and buys 4 more. How many apples does she have?", "answer": "7"},
    {"prompt": "A box holds 6 eggs. How many eggs are in 2 boxes?", "answer": "12"},
    {"prompt": "Tom had 10 coins and spent 3. How many coins are left?", "answer": "7"},
]


def code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


# ---------------------------------------------------------------------------------------------------------------
# The committed notebooks (no kernel needed)


def test_the_six_notebooks_are_there():
    # The demo's six run by default; 07 (the reward-fidelity study) runs in its own batch (experiments/fidelity.yaml).
    assert [p.stem for p in NOTEBOOKS] == [*batch.DEFAULT_NOTEBOOKS, "07_reward_fidelity"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    assert report.unstripped([path]) == [], f"{path.name} has outputs: run `make strip-notebooks`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_first_then_config(path):
    cells = code_cells(path)
    assert "parameters" in cells[0].metadata.get("tags", []), "the first code cell must be tagged `parameters`"
    # papermill can only override plain assignments of literals; derived values belong in the next cell
    tree = ast.parse(cells[0].source)
    names = []
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.unparse(node)
        ast.literal_eval(node.value)
        names.append(node.targets[0].id)
    assert names[0] == "run_dir"
    assert not [n for n in names if redaction.looks_like_secret_name(n)]
    assert "notebook_tools.run_config(" in cells[1].source
    assert not any("parameters" in c.metadata.get("tags", []) for c in cells[1:])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_cells_are_thin(path):
    """Loops and branches belong in ropd_kit: a cell is a few calls."""
    for cell in code_cells(path)[1:]:
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, (ast.For, ast.While, ast.If, ast.FunctionDef, ast.ClassDef, ast.Try)), (
                f"{path.name}: `{ast.unparse(node).splitlines()[0]}` — move this logic into ropd_kit"
            )
        assert len(cell.source.splitlines()) <= 8, f"{path.name}: a long cell:\n{cell.source}"


def test_run_config_merges_earlier_notebooks_parameters(tmp_path):
    run_dir = str(tmp_path / "run")
    first = notebook_tools.run_config({"run_dir": run_dir, "n_tasks": 3, "teacher_model": "m1",
                                       "student_model": FAST_MODEL})
    assert first.n_tasks == 3 and first.student.model == FAST_MODEL and first.student_model == FAST_MODEL
    later = notebook_tools.run_config({"run_dir": run_dir, "method": "lopd", "n_tasks": 5, "student_model": None})
    assert later.teacher.model == "m1" and later.method == "lopd" and later.n_tasks == 5
    assert later.student_model == FAST_MODEL  # None: as an earlier notebook set it
    fresh = notebook_tools.run_config({"run_dir": str(tmp_path / "fresh"), "student_model": None, "n_tasks": None})
    assert fresh.student_model == RunConfig().student_model and fresh.n_tasks is None
    assert json.loads((tmp_path / "run" / "config.json").read_text())["method"] == "lopd"
    with pytest.raises(redaction.SecretParameterError):
        notebook_tools.run_config({"run_dir": run_dir, "api_key": "sk-123"})


def _run_parameter_cells(path: Path, parameters: dict) -> dict:
    """What a kernel holds after the parameters cell and papermill's injected cell (papermill's own injection, the
    cells executed here: nothing else of the notebook runs)."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(str(path)), parameters, kernel_name="python3", language="python")
    namespace: dict = {}
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            exec(cell.source, namespace)
    return namespace


def test_task_options_survive_papermill_and_carry_to_later_notebooks(tmp_path):
    run_dir = str(tmp_path / "run")
    field_map = {"question": "stem", "choices": "opts", "answer": "gold"}
    first = _run_parameter_cells(ROOT / "notebooks" / "01_teacher_references.ipynb", {
        "run_dir": run_dir, "tasks_path": "my/quiz.parquet", "tasks_field_map": field_map, "tasks_split": "dev",
        "tasks_sample": 20, "tasks_limit": 5})
    config = notebook_tools.run_config(notebook_tools.parameters(first))
    assert config.tasks_field_map == field_map and config.tasks_split == "dev" and config.tasks_sample == 20
    assert config.n_tasks == 5  # the injected tasks_limit wins over the cell's n_tasks = 4
    later = _run_parameter_cells(ROOT / "notebooks" / "04_grpo_training.ipynb", {
        "run_dir": run_dir, "eval_tasks_field_map": {"prompt": "question"}})
    again = notebook_tools.run_config(notebook_tools.parameters(later))
    assert again.tasks_field_map == field_map and again.n_tasks == 5  # as notebook 01 set them
    assert again.eval_tasks_field_map == {"prompt": "question"}


# ---------------------------------------------------------------------------------------------------------------
# Headless execution of all six


@pytest.fixture(scope="module")
def server(request):
    """The shared session server when tests/conftest.py provides one, else a SmolLM2 server of our own."""
    try:
        yield request.getfixturevalue("local_server")
        return
    except pytest.FixtureLookupError:
        pass
    from ropd_kit.offline.serve import LocalServer

    with LocalServer(FAST_MODEL, parallel=2, ctx_size=8192) as own:
        yield own


SENTINEL_VAR = "ROPD_TEST_KEY"


@pytest.fixture(scope="module")
def tiny_batch(server, tmp_path_factory):
    """experiments/tiny.yaml with the endpoints on the test server, run once; returns (spec, reports, results)."""
    tmp = tmp_path_factory.mktemp("tiny")
    tasks = tmp / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    spec = load_spec(ROOT / "experiments" / "tiny.yaml").model_copy(deep=True)
    model = getattr(server, "model_id", None) or FAST_MODEL
    spec.base.update({"tasks_path": str(tasks), "eval_tasks_path": str(tasks), "cache_dir": str(tmp / "llm"),
                      "ref_index_dir": str(tmp / "refs")})
    for role in ROLES:
        spec.base.update({f"{role}_base_url": server.base_url, f"{role}_model": model,
                          f"{role}_api_key_env": SENTINEL_VAR})
    spec.runs = [batch.RunSpec(name="ok"), batch.RunSpec(name="bad-tasks", params={"tasks_path": str(tmp / "nope.jsonl")})]
    sentinel = f"sk-sentinel-{secrets.token_hex(12)}"
    old = os.environ.get(SENTINEL_VAR)
    os.environ[SENTINEL_VAR] = sentinel  # llama-server ignores keys; the clients still send it
    try:
        reports = tmp / "reports"
        results = {r.run: r for r in run_batch(spec, reports, progress=False, serve_local=False)}
        yield spec, reports, results, sentinel
    finally:
        if old is None:
            os.environ.pop(SENTINEL_VAR, None)
        else:
            os.environ[SENTINEL_VAR] = old


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(3600)  # the module's batch runs inside the first test that uses it (minutes on an idle CPU)
def test_all_six_notebooks_execute_headless(tiny_batch):
    spec, reports, results, _ = tiny_batch
    ok = results["ok"]
    assert ok.status == "done", f"{ok.failed_notebook}: {ok.error}\n{ok.traceback}"
    assert [n.notebook for n in ok.notebooks] == list(batch.DEFAULT_NOTEBOOKS)
    folder = reports / spec.name / "ok"
    for n in ok.notebooks:
        assert (folder / n.output).exists() and (folder / n.html).exists()
    run = folder / "run"
    for name in ("tasks", "teacher_refs", "rollouts", "rubrics", "verdicts", "train_log", "eval", "signal_auc",
                 "mimicry"):
        assert (run / f"{name}.jsonl").exists(), name
    auc = [json.loads(line) for line in (run / "signal_auc.jsonl").read_text().splitlines()]
    assert [r["signal"] for r in auc] == ["score", "logprob", "judge"]
    executed = nbformat.read(folder / "05_signal_alignment_auc.ipynb", as_version=4)
    assert not [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    for n in ok.notebooks:  # a progress bar is one line with its end state, not every frame it drew
        streams = [o for c in nbformat.read(folder / n.output, as_version=4).cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream"]
        assert not [o for o in streams if "\r" in o["text"]], n.output
    # After training: the run's LoRA merged onto SmolLM2 answered the question of notebook 04's last cell.
    trained = nbformat.read(folder / "04_grpo_training.ipynb", as_version=4).cells[-1]
    assert "after.load_trained(config.run_dir)" in trained.source
    assert "checkpoints/checkpoint-1 into its base" in "".join(o.get("text", "") for o in trained.outputs)
    reply = [o for o in trained.outputs if o.get("output_type") == "execute_result"]
    assert reply and ast.literal_eval(reply[0]["data"]["text/plain"]).strip()


@pytest.mark.integration
@pytest.mark.slow
def test_a_failed_run_is_recorded_and_the_other_goes_on(tiny_batch):
    spec, reports, results, _ = tiny_batch
    bad = results["bad-tasks"]
    assert bad.status == "failed" and bad.failed_notebook == "01_teacher_references"
    assert "nope.jsonl" in bad.error and "file not found" in bad.error
    assert results["ok"].status == "done"
    index = (reports / spec.name / "index.html").read_text()
    assert "bad-tasks" in index and "failed" in index and "Training" in index and "ROC AUC" in index


@pytest.mark.integration
@pytest.mark.slow
def test_the_api_key_is_nowhere_under_reports(tiny_batch):
    _, reports, results, sentinel = tiny_batch
    assert results["ok"].status == "done"
    leaks = [p for p in reports.rglob("*") if p.is_file() and sentinel.encode() in p.read_bytes()]
    assert leaks == []
    # and nothing had to be scrubbed: the key never reached a notebook output in the first place
    assert all(n.redacted == 0 for r in results.values() for n in r.notebooks)
    executed = nbformat.read(reports / "tiny" / "ok" / "01_teacher_references.ipynb", as_version=4)
    assert executed.metadata["papermill"]["parameters"]["teacher_api_key_env"] == SENTINEL_VAR


@pytest.mark.integration
@pytest.mark.slow
def test_a_second_batch_skips_finished_runs(tiny_batch):
    spec, reports, results, _ = tiny_batch
    marker = reports / spec.name / "ok" / rundir.STATUS
    before = marker.stat().st_mtime_ns
    again = {r.run: r for r in run_batch(spec, reports, progress=False, serve_local=False)}
    assert again["ok"].skipped and again["ok"].status == "done"
    assert marker.stat().st_mtime_ns == before
    assert again["bad-tasks"].status == "failed" and not again["bad-tasks"].skipped


def _chromium() -> str:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("no chromium on PATH: `make test` installs it (scripts/install_chromium.sh)")


def rendered_dom(page: Path) -> str:
    """The DOM of a local HTML file after headless Chromium has run its scripts (no network)."""
    import subprocess

    out = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=15000", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_the_report_renders_its_plots_in_headless_chromium(tiny_batch):
    spec, reports, results, _ = tiny_batch
    assert results["ok"].status == "done"
    index = reports / spec.name / "index.html"
    dom = rendered_dom(index)
    # plotly.js draws each figure as an SVG inside its div; before the scripts run the divs are empty
    figures = dom.count('class="plotly-graph-div')
    drawn = dom.count('class="main-svg"')
    assert figures >= 2 and drawn >= figures, (figures, drawn)
    assert "bad-tasks" in dom
    exported = rendered_dom(reports / spec.name / "ok" / "05_signal_alignment_auc.html")
    assert 'class="main-svg"' in exported  # the ROC figure of the exported notebook draws offline too


def test_training_figure_gives_each_run_one_colour_in_both_panels(tmp_path):
    from ropd_kit import rundir
    from ropd_kit.notebook_tools.training import train_log_figure

    runs = []
    for name, method in (("a", "ropd"), ("b", "lopd")):
        run = tmp_path / name
        rundir.append_jsonl(run / rundir.TRAIN_LOG, [
            {"step": s, "method": method, "reward_mean": 0.1 * s, "reward_std": 0.01, "loss": 1.0 / s}
            for s in (1, 2)])
        runs.append(run)
    fig = train_log_figure(runs)
    colours = {}
    for trace in fig.data:
        colours.setdefault(trace.legendgroup, set()).add(trace.line.color)
    assert len(colours) == 2 and all(len(c) == 1 for c in colours.values())
    assert len({next(iter(c)) for c in colours.values()}) == 2
