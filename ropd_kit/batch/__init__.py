"""Batch runs and reports: a grid of parameters × the notebooks, executed headless with papermill into `reports/`.

- `spec`:   the experiment spec (YAML or dict), the notebooks it names, the kernel.
- `runner`: `run_batch(...)` — resumable runs, one status record each, secrets refused and scrubbed.
- `status`: the per-run `status.json`.
- `report`: the index page, the offline HTML export of executed notebooks, stripping outputs for git.

CLI: `python -m ropd_kit.batch experiments/<name>.yaml [--reports reports] [--only RUN] [--force]
[--config configs/<run>.yaml] [--dry-run]` (or `ropd batch ...`).
"""

from .report import export_html, strip, write_index
from .runner import main, run_batch
from .spec import DEFAULT_NOTEBOOKS, INDEX, BatchError, BatchSpec, RunSpec, load_spec
from .status import RunStatus, read_status

__all__ = ["DEFAULT_NOTEBOOKS", "INDEX", "BatchError", "BatchSpec", "RunSpec", "RunStatus", "export_html", "load_spec",
           "main", "read_status", "run_batch", "strip", "write_index"]
