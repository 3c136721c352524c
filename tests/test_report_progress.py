"""Progress bars in executed notebooks and their HTML reports: one line per bar, with its end state.

The property tests check `terminal_text` against a line-by-line model of a terminal; the integration test runs a real
papermill batch over a notebook that loads SmolLM2 through transformers (whose "Loading weights" bar redraws itself
dozens of times) and reads the executed notebook and its HTML page.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import nbformat
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_notebook, new_output

from ropd_kit.batch import report
from ropd_kit.batch.runner import run_batch
from ropd_kit.config import FAST_MODEL

# Printable text without the two characters that move the cursor.
plain = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12)


@given(st.lists(st.lists(plain, min_size=1, max_size=6), min_size=1, max_size=5))
def test_each_line_keeps_its_last_frame(lines):
    text = "\n".join("\r".join(frames) for frames in lines)
    shown = report.terminal_text(text).split("\n")
    assert len(shown) == len(lines)
    for frames, line in zip(lines, shown):
        written = [f for f in frames if f]
        assert line == (written[-1] if written else "")


@given(st.text(st.sampled_from("ab \r\n%|")))
def test_no_carriage_return_survives_and_a_second_pass_changes_nothing(text):
    once = report.terminal_text(text)
    assert "\r" not in once and once.count("\n") == text.count("\n")
    assert report.terminal_text(once) == once


@given(st.text(st.characters(blacklist_characters="\r", blacklist_categories=("Cs",))))
def test_text_without_carriage_returns_is_left_alone(text):
    assert report.terminal_text(text) == text


def test_frames_sent_as_separate_messages_become_one_line_between_other_outputs():
    nb = new_notebook()
    frames = [new_output("stream", name="stderr", text=f"\rload: {p:3d}%") for p in (0, 50, 100)]
    nb.cells = [new_code_cell("x", outputs=[
        *frames, new_output("stream", name="stderr", text="\n"),
        new_output("stream", name="stdout", text="done\n"),
        new_output("stream", name="stderr", text="\rsave:   0%\rsave: 100%\n"),
        new_output("execute_result", data={"text/plain": "42"}, execution_count=1),
    ])]
    assert report.collapse_progress(nb) > 0
    outputs = nb.cells[0].outputs
    assert [(o.output_type, o.get("name"), o.get("text")) for o in outputs] == [
        ("stream", "stderr", "load: 100%\n"),
        ("stream", "stdout", "done\n"),
        ("stream", "stderr", "save: 100%\n"),
        ("execute_result", None, None),
    ]
    assert report.collapse_progress(nb) == 0


# ---------------------------------------------------------------------------------------------------------------
# A real executed notebook


def write_loading_notebook(path: Path) -> Path:
    nb = new_notebook()
    nb.cells = [
        new_code_cell('run_dir = "x"', metadata={"tags": ["parameters"]}),
        new_code_cell("from ropd_kit import notebook_tools\n"
                      "from ropd_kit.train import load_student\n\n"
                      "notebook_tools.init_notebook()\n"
                      f"student = load_student({FAST_MODEL!r}, for_training=False)\n"
                      "type(student.model).__name__"),
    ]
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nb, path)
    return path


@pytest.mark.integration
def test_a_model_load_leaves_one_line_per_bar_in_the_executed_notebook_and_its_page(tmp_path):
    from ropd_kit.offline import models

    models.hf_folder(FAST_MODEL, progress=False)  # the conversion is cached; the kernel loads the safetensors
    notebook = write_loading_notebook(tmp_path / "load.ipynb")
    spec = {"name": "bars", "notebooks": [str(notebook)]}
    [status] = run_batch(spec, tmp_path / "reports", progress=False, serve_local=False)
    assert status.status == "done", f"{status.error}\n{status.traceback}"
    folder = tmp_path / "reports" / "bars" / "default"
    executed = nbformat.read(folder / "load.ipynb", as_version=4)
    streams = "".join(o.get("text", "") for o in executed.cells[-1].outputs if o.output_type == "stream")
    bars = [line for line in streams.split("\n") if "Loading weights" in line]
    # transformers' bar: a first frame at 0% and many more; its end state only.
    assert len(bars) == 1 and re.search(r"100%\|.*\| (\d+)/\1 ", bars[0]), streams
    assert "\r" not in streams
    assert executed.cells[-1].outputs[-1].data["text/plain"] == "'LlamaForCausalLM'"
    page = html.unescape((folder / "load.html").read_text())
    assert page.count("Loading weights") == 1 and "0/" not in page.split("Loading weights", 1)[1][:40]
