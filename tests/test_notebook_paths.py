"""Where the notebooks' relative paths point: at the project folder (the checkout, or $ROPD_PROJECT_DIR), whatever
folder the kernel starts in — JupyterLab starts it in notebooks/ — and, for a batch, at the folder the batch runs in.
Also the kernel the notebooks name, and $ROPD_OFFLINE_MODEL.

The batch case runs a real papermill kernel over a small notebook written here (no model, no server).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from ropd_kit import notebook_tools, pipeline
from ropd_kit.batch.runner import run_batch
from ropd_kit.config import DEFAULT_STUDENT, DEFAULT_TEACHER, FAST_MODEL, ConfigError, RunConfig
from ropd_kit.notebook_tools.params import OFFLINE_MODEL_ENV, PROJECT_DIR_ENV, project_dir, project_path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def parameters_cell(name: str) -> dict:
    """The values of a committed notebook's parameters cell, as a kernel holds them after running it."""
    cells = [c for c in nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells
             if c.cell_type == "code"]
    namespace: dict = {}
    exec(cells[0].source, namespace)
    return namespace


@pytest.fixture
def no_project_env(monkeypatch):
    monkeypatch.delenv(PROJECT_DIR_ENV, raising=False)
    monkeypatch.delenv(OFFLINE_MODEL_ENV, raising=False)


def test_defaults_name_the_checkout_from_the_notebooks_folder(no_project_env, monkeypatch):
    # The kernel JupyterLab starts for notebooks/01_*.ipynb runs in notebooks/.
    monkeypatch.chdir(ROOT / "notebooks")
    assert project_dir() == ROOT
    defaults = parameters_cell("01_teacher_references")
    tasks = project_path(defaults["tasks_path"], source=True)
    assert tasks == str(ROOT / "data" / "arith_train.jsonl") and Path(tasks).is_file()
    assert project_path(defaults["run_dir"]) == str(ROOT / "runs" / "notebooks")
    assert project_path(parameters_cell("04_grpo_training")["eval_tasks_path"], source=True) == str(
        ROOT / "data" / "arith_test.jsonl")
    # A hub id is not a path; an absolute path is left alone.
    assert project_path("openai/gsm8k", source=True) == "openai/gsm8k"
    assert project_path("/elsewhere/tasks.jsonl", source=True) == "/elsewhere/tasks.jsonl"
    # A local file that does not exist is still a path: its error then names where it was looked for.
    assert project_path("data/missing.jsonl", source=True) == str(ROOT / "data" / "missing.jsonl")


def test_from_the_checkout_itself_paths_stay_as_written(no_project_env, monkeypatch):
    monkeypatch.chdir(ROOT)
    for value in ("runs/notebooks", "data/arith_train.jsonl", "openai/gsm8k"):
        assert project_path(value, source=True) == value


def test_notebook_01_defaults_load_their_tasks_from_the_notebooks_folder(tmp_path, monkeypatch):
    """The whole parameters -> RunConfig -> tasks path, in a project folder of our own so that nothing is written
    into the checkout: the kernel in <project>/notebooks, the defaults untouched."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "arith_train.jsonl", project / "data")
    (project / "notebooks").mkdir()
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project))
    monkeypatch.delenv(OFFLINE_MODEL_ENV, raising=False)
    monkeypatch.chdir(project / "notebooks")
    config = notebook_tools.run_config(notebook_tools.parameters(parameters_cell("01_teacher_references")))
    assert Path(config.run_dir) == project / "runs" / "notebooks"
    assert Path(config.tasks_path) == project / "data" / "arith_train.jsonl"
    tasks = pipeline.stage_tasks(config)
    assert len(tasks) == 4  # the parameters cell's n_tasks
    assert (project / "runs" / "notebooks" / "tasks.jsonl").is_file()
    assert not (project / "notebooks" / "runs").exists()
    # Notebook 04 of the same run, from the same folder: run_dir names the same run, its eval tasks the project's.
    later = notebook_tools.run_config(notebook_tools.parameters(parameters_cell("04_grpo_training")))
    assert Path(later.run_dir) == project / "runs" / "notebooks"
    assert Path(later.eval_tasks_path) == project / "data" / "arith_test.jsonl"
    assert later.n_tasks == 4 and Path(later.tasks_path) == Path(config.tasks_path)  # as 01 set them


def test_a_project_folder_that_does_not_exist_is_named(monkeypatch):
    monkeypatch.setenv(PROJECT_DIR_ENV, "/no/such/folder")
    with pytest.raises(ConfigError, match=r"ROPD_PROJECT_DIR='/no/such/folder': no such folder"):
        project_dir()


def test_compare_runs_globs_are_taken_from_the_project_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    for name in ("a", "b"):
        RunConfig(run_dir=str(project / "runs" / name)).save()
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project))
    monkeypatch.chdir(tmp_path)
    found = notebook_tools.find_runs(project / "runs" / "a", "runs/*")
    assert found == [project / "runs" / "a", project / "runs" / "b"]


# ---------------------------------------------------------------------------------------------------------------
# The kernel the notebooks name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_name_the_kernel_make_venv_registers(path):
    registered = re.search(r'ipykernel install --user --name (\S+) --display-name "([^"]+)"',
                           (ROOT / "Makefile").read_text())
    assert registered, "the Makefile no longer registers a kernel"
    spec = nbformat.read(path, as_version=4).metadata["kernelspec"]
    assert (spec["name"], spec["display_name"]) == registered.groups() == ("ropd-kit", "ropd-kit (.venv)")


# ---------------------------------------------------------------------------------------------------------------
# $ROPD_OFFLINE_MODEL


def test_offline_model_replaces_the_default_models_only(tmp_path, monkeypatch):
    monkeypatch.setenv(OFFLINE_MODEL_ENV, "smollm2")  # an alias is fine
    params = {**parameters_cell("01_teacher_references"), "run_dir": str(tmp_path / "run"),
              "tasks_path": str(ROOT / "data" / "arith_train.jsonl"),
              "rubricator_base_url": "http://127.0.0.1:9/v1", "verifier_model": "my-own-model"}
    config = notebook_tools.run_config(notebook_tools.parameters(params))
    assert config.teacher.model == config.student.model == config.student_model == FAST_MODEL
    assert config.lopd_teacher_model == FAST_MODEL
    # A served endpoint keeps its model, and so does a model the parameters name themselves.
    assert config.rubricator.model == DEFAULT_TEACHER and config.verifier.model == "my-own-model"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["teacher"]["model"] == FAST_MODEL
    # What the notebook was given stays as given: without the variable the next notebook is back on the defaults.
    monkeypatch.delenv(OFFLINE_MODEL_ENV)
    again = notebook_tools.run_config({"run_dir": str(tmp_path / "run")})
    assert again.teacher.model == DEFAULT_TEACHER and again.student_model == DEFAULT_STUDENT


def test_offline_model_must_be_an_offline_model(tmp_path, monkeypatch):
    monkeypatch.setenv(OFFLINE_MODEL_ENV, "gpt-4o")
    with pytest.raises(ConfigError, match=r"ROPD_OFFLINE_MODEL='gpt-4o' is not an offline model .*smollm2-135m"):
        notebook_tools.run_config({"run_dir": str(tmp_path / "run")})


# ---------------------------------------------------------------------------------------------------------------
# A batch: relative paths mean what they meant where the batch runs


def write_where_notebook(path: Path) -> Path:
    """A notebook that builds its RunConfig as the kit's notebooks do and stages the tasks."""
    nb = new_notebook()
    nb.cells = [
        new_code_cell('run_dir = "x"\ntasks_path = "data/arith_train.jsonl"\nn_tasks = 1',
                      metadata={"tags": ["parameters"]}),
        new_code_cell("from ropd_kit import notebook_tools, pipeline\n"
                      "config = notebook_tools.run_config(notebook_tools.parameters(globals()))\n"
                      "tasks = pipeline.stage_tasks(config)"),
    ]
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nb, path)
    return path


def test_a_batch_keeps_relative_paths_relative_to_where_it_runs(tmp_path, monkeypatch):
    monkeypatch.delenv(PROJECT_DIR_ENV, raising=False)
    monkeypatch.delenv(OFFLINE_MODEL_ENV, raising=False)
    work = tmp_path / "work"
    (work / "mine").mkdir(parents=True)
    (work / "mine" / "tasks.jsonl").write_text(json.dumps({"prompt": "What is 2 + 2?", "answer": "4"}) + "\n")
    notebook = write_where_notebook(tmp_path / "where.ipynb")
    monkeypatch.chdir(work)
    spec = {"name": "where", "notebooks": [str(notebook)], "base": {"tasks_path": "mine/tasks.jsonl"}}
    [status] = run_batch(spec, "reports", progress=False, serve_local=False)
    assert status.status == "done", f"{status.error}\n{status.traceback}"
    run = work / "reports" / "where" / "default" / "run"
    assert json.loads((run / "tasks.jsonl").read_text())["prompt"] == "What is 2 + 2?"
    assert json.loads((run / "config.json").read_text())["tasks_path"] == "mine/tasks.jsonl"  # as the spec wrote it


# ---------------------------------------------------------------------------------------------------------------
# A notebook step serves only the roles it calls


def test_clients_of_a_config_with_unserved_roles(tmp_path):
    """Notebook 01 starts servers for the teacher and the student only; the stage's clients must still be made, and
    a role left on "local" must fail when, and only when, it is called."""
    from ropd_kit.llm import UnservedClient, make_clients, run_sync

    served = {"base_url": "http://127.0.0.1:9/v1", "model": FAST_MODEL}
    config = RunConfig(run_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "llm"),
                       teacher=served, student=served)
    clients = make_clients(config)
    try:
        assert isinstance(clients.rubricator, UnservedClient) and isinstance(clients.verifier, UnservedClient)
        assert clients.teacher.endpoint.base_url == "http://127.0.0.1:9/v1"
        assert clients.rubricator.endpoint.model == DEFAULT_TEACHER  # what a record names stays readable
        with pytest.raises(ConfigError, match="rubricator endpoint base_url is 'local': start the server first"):
            run_sync(clients.rubricator.chat([{"role": "user", "content": "hi"}]))
    finally:
        clients.close()
