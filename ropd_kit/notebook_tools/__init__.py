"""The glue between the notebooks (01–07) and the stage functions: parameters, servers, tables, figures.

Notebooks stay thin: a `parameters` cell, then one call per step. What would be a loop or an `if` in a cell lives
here instead, one module per notebook section:

- `params`:   the parameters cell → one RunConfig (merged with earlier notebooks of the run directory).
- `servers`:  local endpoints started once per kernel; the endpoint table.
- `tables`:   notebooks 01–03 — references, rollouts, judging (or reading what was judged), rubrics, verdicts,
              rewards and advantages.
- `training`: notebook 04 — train summary, train log table (with dollars when priced) and curves.
- `signals`:  notebook 05 — teacher-as-judge signal, the AUC table.
- `runs`:     notebook 06 and the batch index — efficiency, samples to target, mimicry, judge cost across runs.
- `fidelity`: notebook 07 — the reward-fidelity study step by step (`ropd_kit.fidelity.study`).

    params = notebook_tools.parameters(globals())   # the parameters cell's values (and papermill's injected ones)
    config = notebook_tools.run_config(params)       # + what earlier notebooks of this run_dir were given

Relative paths in the parameters are taken from the project folder (`project_dir()`: `$ROPD_PROJECT_DIR`, else the
ropd-kit checkout), whatever folder the kernel starts in; `$ROPD_OFFLINE_MODEL` runs the offline default on another
offline model (`offline_model`).

The offline HTML export and output stripping live with the reports (`ropd_kit.batch.report`).
"""

from .fidelity import bank_table, fidelity_bank, fidelity_judge, fidelity_result, fidelity_signals, fidelity_study
from .params import (OFFLINE_MODEL_ENV, PARAMS_FILE, PROJECT_DIR_ENV, config_parameter_names, init_notebook,
                     offline_model, parameters, project_dir, project_path, run_config)
from .runs import (comparison_sections, default_target, efficiency, evaluation_table, find_runs, judge_cost, mimicry,
                   run_judge_usd, run_usage, target_table)
from .servers import ROLES, endpoint_table, resolve_endpoints, stop_servers
from .signals import judge_signal, save_table, signal_table
from .tables import (example_group, groups_table, judge_groups, records, reward_figure, rewards_table, rollouts_table,
                     rubric_sizes, rubrics_table, teacher_refs_table)
from .training import TRAIN_LOG_COLUMNS, train_log_figure, train_log_table, train_summary, usd_columns

__all__ = [
    "OFFLINE_MODEL_ENV", "PARAMS_FILE", "PROJECT_DIR_ENV", "ROLES", "TRAIN_LOG_COLUMNS", "bank_table", "comparison_sections", "config_parameter_names",
    "default_target", "efficiency", "fidelity_bank", "fidelity_judge", "fidelity_result", "fidelity_signals",
    "fidelity_study", "endpoint_table", "evaluation_table", "example_group", "find_runs", "groups_table",
    "init_notebook", "judge_cost",
    "judge_groups", "judge_signal", "mimicry", "offline_model", "parameters", "project_dir", "project_path", "records", "resolve_endpoints", "reward_figure", "rewards_table",
    "rollouts_table", "rubric_sizes", "rubrics_table", "run_config", "run_judge_usd", "run_usage", "save_table", "signal_table", "stop_servers",
    "target_table", "teacher_refs_table", "train_log_figure", "train_log_table", "train_summary", "usd_columns",
]
