"""The progress line of a running batch: which run and notebook it is in, how far along, refreshed while it runs.

papermill reports nothing until a notebook ends, and one notebook (training) can take many minutes, so a bar that
counts runs sits at 0 for most of a batch. This line counts notebooks over all runs, names the run and notebook now
executing with its time so far, the cell it is at (papermill saves the output notebook at every cell's start and
end, with each cell's status) and the training steps logged so far (the run's train_log.jsonl). A thread refreshes
it every few seconds; nothing here touches the kernel.

    demo: 3/5 notebooks |####      | 06:12 · run 1/2 ropd · 04_grpo_training 2:31 · cell 7/12 · steps 0/1
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import IO

from .. import rundir


def cell_progress(output: Path) -> tuple[int, int] | None:
    """(cells finished, cells) of a notebook papermill is executing, from the copy it saves; None while there is
    no readable copy (not written yet, or caught mid-write)."""
    try:
        cells = json.loads(output.read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    done = sum(1 for c in cells if (c.get("metadata", {}).get("papermill") or {}).get("status") == "completed")
    return done, len(cells)


def steps_logged(run_dir: Path) -> int | None:
    """How many training steps the run's train log holds (None before training has logged one)."""
    path = run_dir / rundir.TRAIN_LOG
    if not path.exists():
        return None
    try:
        return len({r.get("step") for r in rundir.iter_jsonl(path) if r.get("step") is not None})
    except (OSError, ValueError):
        return None  # a line being written: the next refresh reads it whole


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class BatchProgress:
    """`run_started`, then `notebook_started` / `notebook_done` per notebook, then `close`. `line()` is the text after
    the bar. Disabled, it keeps count and prints nothing."""

    def __init__(self, name: str, *, n_runs: int, n_notebooks: int, enabled: bool = True, every_s: float = 5.0,
                 file: IO[str] | None = None) -> None:
        from tqdm.auto import tqdm

        self.n_runs, self.run_index = n_runs, 0
        self.run: str | None = None
        self.run_dir: Path | None = None
        self.max_steps: int | None = None
        self.notebook: str | None = None
        self.output: Path | None = None
        self.notebook_t0 = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.bar = tqdm(total=n_notebooks, desc=name, unit="notebook", disable=not enabled, file=file or sys.stderr,
                        bar_format="{desc}: {n_fmt}/{total_fmt} notebooks |{bar:10}| {elapsed} · {postfix}")
        self._thread = None
        if enabled and n_notebooks:
            self._thread = threading.Thread(target=self._tick, args=(every_s,), name="batch-progress", daemon=True)
            self._thread.start()

    def run_started(self, run: str, run_dir: Path, max_steps: int | None = None) -> None:
        with self._lock:
            self.run_index += 1
            self.run, self.run_dir, self.max_steps = run, Path(run_dir), max_steps
        self.refresh()

    def notebook_started(self, notebook: str, output: Path) -> None:
        with self._lock:
            self.notebook, self.output, self.notebook_t0 = notebook, Path(output), time.perf_counter()
        self.refresh()

    def notebook_done(self) -> None:
        with self._lock:
            self.bar.update(1)
            self.notebook = self.output = None
        self.refresh()

    def line(self) -> str:
        parts = [f"run {self.run_index}/{self.n_runs} {self.run}" if self.run else "starting"]
        if self.notebook:
            parts.append(f"{self.notebook} {_clock(time.perf_counter() - self.notebook_t0)}")
            cells = cell_progress(self.output) if self.output else None
            if cells:
                parts.append(f"cell {min(cells[0] + 1, cells[1])}/{cells[1]}")
        steps = steps_logged(self.run_dir) if self.run_dir else None
        if steps is not None:
            parts.append(f"steps {steps}/{self.max_steps}" if self.max_steps else f"{steps} steps")
        return " · ".join(parts)

    def refresh(self) -> None:
        if self.bar.disable:
            return
        with self._lock:
            self.bar.set_postfix_str(self.line(), refresh=True)

    def _tick(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.refresh()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.bar.close()
