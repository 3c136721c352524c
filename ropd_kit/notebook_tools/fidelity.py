"""Notebook 07: the reward-fidelity study step by step — the study from the parameters cell, the bank (student
rollouts, or a labelled bank's answers), each reward variant's judging (and a labelled bank's judging under its
reference rubrics) and the reference signals, with local servers started once per kernel (`servers`). The work is
`ropd_kit.fidelity.study`'s; this module only resolves the endpoints each step needs and shapes tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ..config import RunConfig
from ..fidelity.study import (Bank, Judged, StudyConfig, build_bank, judge_references, judge_variants,
                              reference_signals, serving_config, summarise_study)
from .servers import resolve_endpoints

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import pandas as pd


def _served(study: StudyConfig, roles: Sequence[str]) -> RunConfig:
    # One context size for every step (the largest any variant needs), so the kernel's servers are started once.
    return resolve_endpoints(serving_config(study), roles=roles)


def fidelity_study(config: RunConfig, *, bank: str | None = None, variants: Sequence[str] = ("base",),
                   signals: Sequence[str] = ("logprob", "judge"), n_boot: int = 2000,
                   reference_only: bool = False) -> StudyConfig:
    """The study of notebook 07: its folder is `config.run_dir`, its tasks, sizes and seed the config's, every other
    parameter the notebook was given (endpoints, token budgets, levers) applies to the bank and every variant.
    `bank`: a labelled bank (`fidelity.banks`) judged instead of student rollouts of the config's tasks;
    `reference_only`: judge it under its reference rubrics alone, without inducing rubrics."""
    return StudyConfig.from_run_config(config, bank=bank, variants=list(variants), signals=list(signals),
                                       n_boot=n_boot, reference_only=reference_only)


def fidelity_bank(study: StudyConfig, *, progress: bool = True) -> Bank:
    """Tasks, teacher refs and student rollouts into <run_dir>/bank (replayed from the caches when run again); for
    a labelled bank its prompts, its answers and the teacher refs (no student is sampled)."""
    roles = ("teacher",) if study.labelled else ("teacher", "student")
    return build_bank(study, _served(study, roles), progress=progress)


def bank_table(bank: Bank) -> "pd.DataFrame":
    """One row per task: its answer, how many rollouts are right, how many teacher refs are, teacher competence."""
    import pandas as pd

    frame = bank.frame()
    tasks = pd.DataFrame(bank.tasks).rename(columns={"id": "task_id"})
    if "answer" not in tasks.columns:
        tasks["answer"] = None
    columns = {"rollouts": ("rollout_idx", "size"), "right": ("correct", lambda s: int(sum(v is True for v in s))),
               "teacher_competent": ("teacher_competent", "first")}
    if bank.labelled:  # a labelled bank: its answers' kinds, and whether the prompt has a reference rubric
        columns["kinds"] = ("kind", lambda s: ", ".join(str(k) for k in s if k))
        tasks["reference_rubric"] = tasks["rubric"].map(lambda r: isinstance(r, list) and bool(r)) \
            if "rubric" in tasks.columns else False
    per_task = frame.groupby("task_id", sort=False).agg(**columns).reset_index()
    refs = pd.DataFrame(bank.teacher_refs, columns=["task_id", "text"])
    n_refs = refs.groupby("task_id").size().rename("teacher_refs").reset_index()
    shown = ["task_id", "prompt", "answer"] + (["reference_rubric"] if bank.labelled else [])
    table = tasks[shown].merge(per_task, on="task_id", how="left")
    return table.merge(n_refs, on="task_id", how="left")


def fidelity_judge(study: StudyConfig, bank: Bank, *, progress: bool = True) -> dict[str, Judged]:
    """Every variant of the study judges the whole bank (<run_dir>/variants/<name>, each a run directory); a
    labelled bank's prompts with a reference rubric are judged under it too (<run_dir>/reference/<name>). A
    reference-only study judges under the reference rubrics alone and returns those judgings."""
    if study.reference_only:
        return judge_references(study, bank, _served(study, ("verifier",)), progress=progress)
    served = _served(study, ("rubricator", "verifier"))
    judged = judge_variants(study, bank, served, progress=progress)
    judge_references(study, bank, served, progress=progress)
    return judged


def fidelity_signals(study: StudyConfig, bank: Bank, *, progress: bool = True) -> dict[str, list[dict]]:
    """The reference signals: teacher-as-judge through the `judge_role` endpoint (the Verifier's by default),
    teacher log-prob in this kernel."""
    roles = (study.run_config().judge_role,) if "judge" in study.signals else ()
    return reference_signals(study, bank, _served(study, roles), progress=progress)


def fidelity_result(study: StudyConfig) -> dict[str, Any]:
    """fidelity.json and fidelity.html from what <run_dir> holds (no model calls); returns the summary."""
    return summarise_study(study)
