"""The reward-fidelity study: does the rubric reward rank right student rollouts above wrong ones, per reward variant?

The bank is either student rollouts of tasks with ground truth (`tasks`), or a labelled bank (`bank`: prompts with
answers whose labels someone gave, `fidelity.banks`), whose answers take the rollouts' place: each prompt's answers
are judged as one group, blind, beside the configured teacher's references, exactly as training judges rollouts.

A study folder `DIR` holds:

    DIR/bank/                 a run directory: tasks, teacher refs and student rollouts (stages 0-2 of pipeline.py),
                              plus the reference signals logprob.jsonl and judge_signal.jsonl; for a labelled bank
                              the answers are the rollouts (with their label and kind) and labelled_bank.json
                              describes the bank
    DIR/variants/<name>/      one run directory per reward variant: the bank's files copied, and the variant's own
                              config.json, rubrics.jsonl, verdicts.jsonl, judge_raw.jsonl, usage.json
                              (`RubricInspector("DIR/variants/base")` opens it)
    DIR/reference/<name>/     labelled banks whose prompts carry a reference rubric: the same answers and teacher
                              refs judged by the variant's Verifier under the reference rubric (the Verifier alone)
    DIR/study.json            the StudyConfig;  DIR/timings.json  wall seconds per stage
    DIR/fidelity.json         the numbers;      DIR/fidelity.html  the figure (self-contained)

Steps, each a function with records in and records out, so the summary can be computed (and tested) from records
alone:

1. `build_bank`: tasks (any source `sources.load_task_source` reads) -> K teacher refs per task -> a group of
   student rollouts per task, through the kit's own stages. The LLM disk cache and the teacher reference index make
   a second build free.
2. `judge_variant`: for one variant (`variants.py`: RunConfig overrides), every group is judged as training would
   judge it (`pipeline.judge_group_async`: rubric, blind verification, s_i). Variants with the same rubric settings
   replay the same rubrics from the cache and differ only in verification. A variant that only adds a lever acting
   after the Verifier's replies (the consensus check) to one judged before it is derived from that one's records
   (`derive_variant`), with no call.
   `judge_references`: a labelled bank's prompts with a reference rubric judged under it (`judge_reference`).
3. `reference_signals`: the teacher's mean token log-prob of each rollout (white-box, transformers) and the
   teacher-as-judge grade (`reward.JudgeReward`, no rubric).
4. `summarise` (pure): labels (ground truth or the bank's, teacher competence, a second independent label), then
   per signal pooled and within-group AUC with task-cluster bootstrap intervals and tied pairs — the reward, and
   beside it its Verifier-decided part and the consensus check alone (`decided`) —, per flaw kind, the share of
   groups with zero reward spread, per criterion category agreement and discrimination, the result-criterion value
   check, verifier failures, judge time and tokens per scored answer, every number also per teacher-competence
   stratum; for reference rubrics, the loss split between teacher, Rubricator and Verifier (`links`).

`run_study` chains them with local servers started for the roles whose base_url is "local"; the CLI is
`python -m ropd_kit.fidelity` and notebook 07 runs the same steps cell by cell (`notebook_tools.fidelity`).
Ground truth is used to measure the reward, never to compute it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import rundir
from ..config import RunConfig
from .criteria import agreement_table, criterion_verdicts, result_value_check, result_value_summary, verdict_coverage
from .decided import advantage_use, decided_summary, reward_parts, zero_spread
from .labels import label_agreement, label_correct, teacher_competence
from .links import kind_auc, loss_split
from .stats import json_records, signal_summary, split_by
from .variants import apply_variant, parse_variant, parse_variants

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import plotly.graph_objects as go

BANK = "bank"
VARIANTS_DIR = "variants"
REFERENCE_DIR = "reference"
LABELLED_BANK_FILE = "labelled_bank.json"
STUDY_FILE = "study.json"
TIMINGS_FILE = "timings.json"
FIDELITY_JSON = "fidelity.json"
FIDELITY_HTML = "fidelity.html"
USAGE_FILE = "usage.json"
LOGPROB_FILE = "logprob.jsonl"
JUDGE_SIGNAL_FILE = "judge_signal.jsonl"

SIGNALS = ("logprob", "judge")
JUDGE_ROLES = ("rubricator", "verifier")
STRATUM = "teacher_competent"
# The RunConfig fields the study sets itself (from its own options), not through `params`.
STUDY_FIELDS = ("run_dir", "tasks_path", "n_tasks", "tasks_limit", "n_rollouts", "seed")
KEYS = ["task_id", "step", "rollout_idx"]
SIGNAL_LABELS = {"logprob": "teacher log-prob", "judge": "teacher-as-judge"}
# Signals of one variant: the reward, its Verifier-decided part and the consensus check alone, and the Verifier's
# score under the reference rubric.
SIGNAL_KINDS = {"rubric": "rubric reward ({})", "verifier_part": "Verifier-decided part ({})",
                "check": "consensus check alone ({})", "reference": "Verifier, reference rubric ({})"}
STRATUM_LABELS = {"all": "all tasks", f"{STRATUM}=True": "teacher competent",
                  f"{STRATUM}=False": "teacher not competent",
                  f"{STRATUM}=missing": "no ground truth"}


def rubric_signal(variant: str) -> str:
    """The column (and fidelity.json key) of a variant's rubric score: "rubric:base"."""
    return f"rubric:{variant}"


def signal_label(signal: str) -> str:
    kind, _, variant = signal.partition(":")
    if variant and kind in SIGNAL_KINDS:
        return SIGNAL_KINDS[kind].format(variant)
    return SIGNAL_LABELS.get(signal, signal)


# ---------------------------------------------------------------------------------------------------------------
# The study's settings


class StudyConfig(BaseModel):
    """What a study measures and where it writes. `params` are any other RunConfig parameters (flat, as a notebook
    gives them, e.g. `teacher_model`, `verifier_max_tokens`), applied to the bank and to every variant."""

    model_config = ConfigDict(extra="forbid")

    tasks: str | None = Field(default=None, description="A task file or data set: what data.load_tasks / "
                              "sources.load_task_source read (its split, subset, field_map, sample: params "
                              "tasks_split, tasks_subset, ...). Student rollouts of them are the bank.")
    bank: str | None = Field(default=None, description="A labelled bank instead of tasks (fidelity.banks: ours, "
                             "pairs or sets; params tasks_split/tasks_subset for a data set): its answers, with "
                             "their labels, are judged in place of student rollouts.")
    out: str = Field(description="The study folder (bank/, variants/, fidelity.json, fidelity.html).")
    n_tasks: int | None = Field(default=40, ge=1, description="The first n tasks (None: all).")
    n_rollouts: int = Field(default=8, ge=2, le=256, description="Student rollouts per task (one group).")
    variants: list[str] = Field(default_factory=lambda: ["base"])
    signals: list[str] = Field(default_factory=lambda: list(SIGNALS), description="Reference signals: logprob, judge.")
    seed: int = 0
    n_boot: int = Field(default=2000, ge=0, description="Bootstrap draws (tasks resampled) per interval.")
    level: float = Field(default=0.95, gt=0, lt=1)
    params: dict[str, Any] = Field(default_factory=dict)
    reference_only: bool = Field(default=False, description="A labelled bank whose prompts carry reference "
                                 "rubrics: judge its answers under those only (the Verifier alone, blind, beside the "
                                 "teacher's references), without inducing rubrics. Several times quicker on a CPU; "
                                 "the whole chain and the loss split are left out.")

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, v: list[str]) -> list[str]:
        return list(parse_variants(v))  # raises VariantError naming the known variants

    @field_validator("signals")
    @classmethod
    def _known_signals(cls, v: list[str]) -> list[str]:
        v = [s.strip() for s in v if s and s.strip() and s.strip() != "none"]
        unknown = sorted(set(v) - set(SIGNALS))
        if unknown:
            raise ValueError(f"unknown signal(s) {unknown}; choose from {', '.join(SIGNALS)} (or none)")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _params(self) -> "StudyConfig":
        from ..redaction import check_secrets

        if (self.tasks is None) == (self.bank is None):
            raise ValueError("give either tasks (student rollouts are judged) or bank (a labelled bank's answers "
                             f"are), not {'both' if self.tasks else 'neither'}")
        if self.reference_only and self.bank is None:
            raise ValueError("reference_only judges a labelled bank under its reference rubrics: give bank=..., not "
                             "tasks (student rollouts of tasks carry no reference rubric)")

        check_secrets(self.params)
        own = sorted(set(self.params) & set(STUDY_FIELDS))
        if own:
            raise ValueError(f"params {own} are the study's own settings: use tasks/out/n_tasks/n_rollouts/seed")
        self.run_config()  # an unknown or invalid parameter fails now, not after the bank is built
        return self

    @property
    def path(self) -> Path:
        return Path(self.out)

    @property
    def bank_path(self) -> Path:
        return self.path / BANK

    @property
    def labelled(self) -> bool:
        """Whether the bank is a labelled bank's answers (not student rollouts)."""
        return self.bank is not None

    def reference_path(self, name: str) -> Path:
        return self.path / REFERENCE_DIR / name

    def variant_path(self, name: str) -> Path:
        return self.path / VARIANTS_DIR / name

    def judged_path(self, name: str) -> Path:
        """Where a variant's judging is: its folder under variants/, or under reference/ in a reference-only study
        (the rubric inspector opens either)."""
        return self.reference_path(name) if self.reference_only else self.variant_path(name)

    def run_config(self) -> RunConfig:
        """The bank's RunConfig: the study's sizes and seed on top of `params`, run_dir DIR/bank."""
        return RunConfig.from_params(**self.params, run_dir=str(self.bank_path), tasks_path=self.tasks or self.bank,
                                     n_tasks=self.n_tasks, n_rollouts=self.n_rollouts, seed=self.seed)

    def variant_config(self, config: RunConfig, name: str) -> RunConfig:
        """`config` (the bank's, endpoints resolved or not) with a variant's overrides and its own run_dir."""
        return apply_variant(config, name).model_copy(update={"run_dir": str(self.variant_path(name))})

    def save(self) -> Path:
        target = self.path / STUDY_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.model_dump(), indent=2) + "\n")
        return target

    @classmethod
    def load(cls, out: str | Path) -> "StudyConfig":
        path = Path(out) / STUDY_FILE
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no study here (run `python -m ropd_kit.fidelity --tasks ... --out {out}`, or --bank ...)")
        return cls(**json.loads(path.read_text()))

    @classmethod
    def from_run_config(cls, config: RunConfig, *, bank: str | None = None, **options: Any) -> "StudyConfig":
        """A study whose folder is `config.run_dir` and whose tasks, sizes and seed are the config's (notebook 07);
        the config's other non-default fields become `params`. `bank`: a labelled bank judged instead of rollouts
        of the config's tasks. `options`: variants, signals, n_boot, ..."""
        default = RunConfig().model_dump()
        params = {k: v for k, v in config.model_dump().items() if k not in STUDY_FIELDS and v != default.get(k)}
        return cls(tasks=None if bank else config.tasks_path, bank=bank, out=config.run_dir, n_tasks=config.n_tasks,
                   n_rollouts=config.n_rollouts, seed=config.seed, params=params, **options)


def record_timing(out: str | Path, stage: str, seconds: float) -> None:
    """Add a stage's wall seconds to DIR/timings.json (the latest run of each stage wins)."""
    path = Path(out) / TIMINGS_FILE
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[stage] = round(float(seconds), 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(TIMINGS_FILE + ".tmp")
    tmp.write_text(json.dumps(timings, indent=2) + "\n")
    os.replace(tmp, path)


def read_timings(out: str | Path) -> dict[str, float]:
    path = Path(out) / TIMINGS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


# ---------------------------------------------------------------------------------------------------------------
# 1. The bank


@dataclass
class Bank:
    """The records of a bank run directory: tasks, teacher refs, student rollouts."""

    path: Path
    tasks: list[dict]
    teacher_refs: list[dict]
    rollouts: list[dict]

    @classmethod
    def read(cls, path: str | Path) -> "Bank":
        path = Path(path)
        tasks = rundir.read_jsonl(path / rundir.TASKS)
        rollouts = rundir.read_jsonl(path / rundir.ROLLOUTS)
        if not tasks or not rollouts:
            raise FileNotFoundError(f"{path}: no bank here (tasks.jsonl and rollouts.jsonl are needed)")
        return cls(path, tasks, rundir.read_jsonl(path / rundir.TEACHER_REFS), rollouts)

    @property
    def labelled(self) -> bool:
        """Whether the rollouts are a labelled bank's answers (they carry a `label`)."""
        return any(r.get("label") is not None for r in self.rollouts)

    @property
    def graded(self) -> bool:
        """Whether a labelled bank's labels are graded (any label other than 0 and 1)."""
        return any(r.get("label") not in (None, 0, 1) for r in self.rollouts)

    def description(self) -> dict[str, Any] | None:
        """What `banks.describe` said of a labelled bank when it was read (labelled_bank.json), else None."""
        path = self.path / LABELLED_BANK_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def frame(self) -> pd.DataFrame:
        """One row per student rollout with a text: task_id, step, rollout_idx, prompt, text, truncated, correct
        (ground truth; None without one), label (correct as 1/0, or a labelled bank's label), kind (a labelled
        bank's flaw kind, else None) and teacher_competent (a strict majority of the task's refs right).

        A labelled bank's label decides `correct`: 1/0 labels as they are; graded labels mark the answers with
        their prompt's highest label right and the others wrong (None where a prompt's answers share one label)."""
        return rollout_frame(self.tasks, self.teacher_refs, self.rollouts)

    def groups(self) -> dict[tuple[str, int], list[dict]]:
        """(task_id, step) -> the group's rollouts that have a text, in rollout_idx order: the answers judged."""
        out: dict[tuple[str, int], list[dict]] = {}
        for r in self.rollouts:
            if r.get("text") is not None:
                out.setdefault((r["task_id"], int(r.get("step", 0))), []).append(r)
        return {k: sorted(v, key=lambda r: r["rollout_idx"]) for k, v in out.items()}


def _tasks_frame(tasks: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(tasks))
    if "answer" not in frame.columns:
        frame["answer"] = None
    return frame


def rollout_frame(
    tasks: Sequence[Mapping], teacher_refs: Sequence[Mapping], rollouts: Sequence[Mapping]
) -> pd.DataFrame:
    """The labelled bank (see `Bank.frame`). Rollouts without a text (sampling failed) are left out."""
    task_frame = _tasks_frame(tasks)
    rows = [r for r in rollouts if r.get("text") is not None]
    frame = pd.DataFrame(rows, columns=sorted({k for r in rows for k in r} | set(KEYS) | {"text"}))
    frame["step"] = frame["step"].fillna(0).astype(int) if len(frame) else frame["step"]
    frame = frame.drop_duplicates(subset=KEYS, keep="last")
    frame = frame.merge(task_frame[["id", "prompt"]].rename(columns={"id": "task_id"}), on="task_id", how="left")
    if "truncated" not in frame.columns:
        frame["truncated"] = False
    frame = label_correct(frame, task_frame)
    frame = _bank_labels(frame)
    refs = pd.DataFrame(list(teacher_refs), columns=["task_id", "ref_idx", "text"]) if teacher_refs else None
    if refs is not None and len(refs):
        competence = teacher_competence(refs, task_frame)[["task_id", STRATUM]]
        frame = frame.merge(competence, on="task_id", how="left")
        frame[STRATUM] = pd.Series([None if pd.isna(v) else bool(v) for v in frame[STRATUM]], index=frame.index,
                                   dtype=object)
    else:
        frame[STRATUM] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    columns = KEYS + ["prompt", "text", "truncated", "correct", "label", "kind", STRATUM]
    return frame[columns].sort_values(KEYS, kind="stable").reset_index(drop=True)


def _bank_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """`label` and `kind` columns; where rollouts carry a labelled bank's label, `correct` follows it."""
    if "kind" not in frame.columns:
        frame["kind"] = None
    frame["kind"] = pd.Series([k if isinstance(k, str) and k else None for k in frame["kind"]], index=frame.index,
                              dtype=object)
    given = pd.to_numeric(frame["label"], errors="coerce") if "label" in frame.columns else None
    if given is None or not given.notna().any():
        frame["label"] = pd.Series([None if c is None else float(bool(c)) for c in frame["correct"]],
                                   index=frame.index, dtype=object)
        return frame
    frame["label"] = given.astype(float)
    if set(given.dropna().unique()) <= {0.0, 1.0}:
        correct = [None if pd.isna(v) else bool(v) for v in given]
    else:
        top = given.groupby([frame["task_id"], frame["step"]]).transform("max")
        levels = given.groupby([frame["task_id"], frame["step"]]).transform("nunique")
        correct = [None if pd.isna(v) or n < 2 else bool(v == t) for v, t, n in zip(given, top, levels)]
    frame["correct"] = pd.Series(correct, index=frame.index, dtype=object)
    return frame


def read_labelled_bank(study: StudyConfig, config: RunConfig | None = None) -> Any:
    """The study's labelled bank, read and validated whole (`banks.load_bank`: the first n_tasks prompts; a data
    set's split and subset from tasks_split / tasks_subset). A bad row raises a BankError naming it."""
    from .banks import load_bank

    config = config or study.run_config()
    return load_bank(study.bank, limit=study.n_tasks, split=config.tasks_split or "train",
                     subset=config.tasks_subset)


def build_labelled_bank(study: StudyConfig, config: RunConfig | None = None) -> Bank:
    """A labelled bank into DIR/bank: its prompts as tasks, its answers (label and kind kept) in the rollouts' place,
    and K teacher refs per prompt from the configured teacher (replayed from the reference index when run again)."""
    from ..data import write_tasks
    from ..pipeline import teacher_refs_stage
    from .banks import bank_answer_records, describe

    config = (config or study.run_config()).model_copy(update={"run_dir": str(study.bank_path)})
    study.save()
    started = time.perf_counter()
    labelled = read_labelled_bank(study, config)
    write_tasks(study.bank_path / rundir.TASKS, labelled.tasks)
    rundir.write_jsonl(study.bank_path / rundir.ROLLOUTS, bank_answer_records(labelled))
    (study.bank_path / LABELLED_BANK_FILE).write_text(json.dumps(describe(labelled), indent=2) + "\n")
    config.save()
    record_timing(study.path, "tasks_s", time.perf_counter() - started)
    started = time.perf_counter()
    teacher_refs_stage(config)
    record_timing(study.path, "teacher_refs_s", time.perf_counter() - started)
    return Bank.read(study.bank_path)


def build_bank(study: StudyConfig, config: RunConfig | None = None, *, progress: bool = True) -> Bank:
    """Stages 0-2 into DIR/bank: the tasks, K teacher refs per task, one group of student rollouts per task (for a
    labelled bank: its answers in the rollouts' place, `build_labelled_bank`).

    `config`: the bank's RunConfig with endpoints resolved (default `study.run_config()`, whose "local" endpoints
    must then already point at servers). Replayed from the reference index and the LLM cache when run again.
    """
    from ..pipeline import rollouts_stage, stage_tasks, teacher_refs_stage

    if study.labelled:
        return build_labelled_bank(study, config)
    config = config or study.run_config()
    config = config.model_copy(update={"run_dir": str(study.bank_path)})
    study.save()
    started = time.perf_counter()
    stage_tasks(config)  # sources.tasks_from_config: any source, its split/subset/field_map/sample, the first n
    record_timing(study.path, "tasks_s", time.perf_counter() - started)
    started = time.perf_counter()
    teacher_refs_stage(config)
    record_timing(study.path, "teacher_refs_s", time.perf_counter() - started)
    started = time.perf_counter()
    rollouts_stage(config)
    record_timing(study.path, "rollouts_s", time.perf_counter() - started)
    return Bank.read(study.bank_path)


# ---------------------------------------------------------------------------------------------------------------
# 2. Judging the bank under one reward variant


@dataclass
class Judged:
    """One variant's judging of the bank: rubrics.jsonl and verdicts.jsonl records, and what it cost."""

    variant: str
    rubrics: list[dict]
    verdicts: list[dict]
    usage: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path, variant: str | None = None) -> "Judged":
        path = Path(path)
        rubrics = rundir.read_jsonl(path / rundir.RUBRICS)
        if not rubrics:
            raise FileNotFoundError(f"{path}: no rubrics.jsonl (this variant was not judged)")
        usage_path = path / USAGE_FILE
        usage = json.loads(usage_path.read_text()) if usage_path.exists() else {}
        return cls(variant or path.name, rubrics, rundir.read_jsonl(path / rundir.VERDICTS), usage)


def _copy_bank(bank: Bank, target: Path) -> None:
    # Each variant folder is a whole run directory, so the inspector and notebooks 02/03 open it as it is.
    rundir.write_jsonl(target / rundir.TASKS, bank.tasks)
    rundir.write_jsonl(target / rundir.TEACHER_REFS, bank.teacher_refs)
    rundir.write_jsonl(target / rundir.ROLLOUTS, bank.rollouts)


def _refs_by_task(bank: Bank) -> dict[str, list[dict]]:
    """task_id -> the teacher refs that have a text, in ref_idx order: the references the judges see."""
    refs: dict[str, list[dict]] = {}
    for r in bank.teacher_refs:
        if r.get("text"):
            refs.setdefault(r["task_id"], []).append(r)
    return {k: sorted(v, key=lambda r: r["ref_idx"]) for k, v in refs.items()}


def _add_bank_keys(verdict_records: list[dict], task_refs: Sequence[Mapping], group: Sequence[Mapping]) -> None:
    """Give each verdict record its bank key (`rollout_idx` / `ref_idx`): answers without a text are not judged,
    so a verdict's answer_idx is its place among the judged ones."""
    for record in verdict_records:
        idx = record.get("answer_idx")
        if record["source"] == "student" and idx is not None and idx < len(group):
            record["rollout_idx"] = group[idx]["rollout_idx"]
        elif record["source"] == "teacher" and idx is not None and idx < len(task_refs):
            record["ref_idx"] = task_refs[idx]["ref_idx"]


def _write_usage(target: Path, name: str, results: Sequence[Any], wall: float, usage: Mapping, **extra: Any) -> None:
    """usage.json of a variant folder: what was judged, what failed, and the judges' calls and tokens."""
    summary = {
        "variant": name,
        "overrides": parse_variant(name),
        **extra,
        "wall_s": round(wall, 3),
        "groups": len(results),
        "groups_failed": sum(1 for r in results if r.failed),
        "verifier_calls": sum(r.verifier_calls for r in results),
        "errors": {f"{r.task_id}@{r.step}": r.error for r in results if r.failed},
        "usage": dict(usage),
    }
    (target / USAGE_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")


async def judge_bank_async(bank: Bank, config: RunConfig, clients: Any, *, progress: bool = True) -> list[Any]:
    """Every group of the bank judged under `config` (`pipeline.judge_group_async`), concurrently; returns the
    GroupJudgements with `rollout_idx` / `ref_idx` added to each verdict record (answers without a text are not
    judged, so a verdict's answer_idx is its place among the judged ones)."""
    from tqdm.auto import tqdm

    from ..data import task_from_record
    from ..pipeline import judge_group_async

    tasks = {t["id"]: task_from_record(t, f"{bank.path / rundir.TASKS}:{t['id']}") for t in bank.tasks}
    refs = _refs_by_task(bank)
    groups = {k: v for k, v in bank.groups().items() if k[0] in tasks}
    bar = tqdm(total=len(groups), desc=f"judge groups ({Path(config.run_dir).name})", disable=not progress)

    async def one(task_id: str, step: int, group: list[dict]):
        task_refs = refs.get(task_id, [])
        result = await judge_group_async(
            tasks[task_id], [r["text"] for r in task_refs], [r["text"] for r in group], clients, config, step=step,
            truncated=[bool(r.get("truncated")) for r in group],
        )
        _add_bank_keys(result.verdict_records, task_refs, group)
        bar.update(1)
        return result

    try:
        return list(await asyncio.gather(*(one(t, s, g) for (t, s), g in groups.items())))
    finally:
        bar.close()


def judge_variant(
    study: StudyConfig, bank: Bank, name: str, config: RunConfig | None = None, *, progress: bool = True
) -> Judged:
    """Judge the whole bank under variant `name`, into DIR/variants/<name>/ (a run directory).

    `config`: the bank's RunConfig with endpoints resolved (default `study.run_config()`). usage.json records the
    Rubricator's and Verifier's calls and tokens for this variant — tokens of replies replayed from the cache
    included (`cached_*`), so a replayed variant still says what its judging costs.
    """
    from ..llm import make_clients, run_sync
    from ..pipeline import write_judgements

    vconfig = study.variant_config(config or study.run_config(), name)
    target = study.variant_path(name)
    _copy_bank(bank, target)
    vconfig.save()

    async def go():
        async with make_clients(vconfig) as clients:
            before = clients.stats.snapshot()
            results = await judge_bank_async(bank, vconfig, clients, progress=progress)
            return results, clients.stats.since(before)

    started = time.perf_counter()
    results, usage = run_sync(go())
    wall = time.perf_counter() - started
    write_judgements(target, results, replace=True)
    _write_usage(target, name, results, wall, {role: usage[role] for role in usage})
    record_timing(study.path, f"judge:{name}_s", wall)
    return Judged.read(target, name)


# Levers that act after the Verifier has replied. A variant that differs from one already judged only by turning
# these on is derived from that variant's own replies (`derive_variant`) rather than judged again: it costs no call,
# and the two variants then differ by the lever alone. Judging it again would re-ask every reply the first pass
# rejected (rejected replies are not cached), and those come back different.
POST_VERIFY_LEVERS = ("consensus_check", "result_weight_share")


def derivable_from(name: str, judged: Iterable[str], config: RunConfig | None = None) -> str | None:
    """The first of `judged` that variant `name` can be derived from: the same overrides except post-verification
    levers, which are on in `name` and off in the other. A lever's state is the variant's override or, without
    one, `config`'s value (the study's config; RunConfig's defaults when None). Under `verifier_mode="auto"` the
    check also chooses how the Verifier reads a group (soft where it will not decide the result,
    `verify.verifier_mode_for`), so there it is not a post-verification lever and nothing derives across it. None
    when there is none.

    >>> off = RunConfig(consensus_check=False, verifier_mode="batched")
    >>> derivable_from("consensus", ["base"], off), derivable_from("sc3+consensus", ["base", "sc3"], off)
    ('base', 'sc3')
    >>> derivable_from("base", ["no_consensus"], RunConfig(verifier_mode="batched"))
    'no_consensus'
    >>> derivable_from("base", ["no_consensus"]) is None, derivable_from("consensus+read_first", ["base"], off) is None
    (True, True)
    """
    from ..verify import needs_written_replies

    config = config or RunConfig()

    def split(variant: str) -> tuple[bool, dict[str, Any]]:
        overrides = parse_variant(variant)
        # The result share acts only on what the consensus check decided: without the check nothing is on.
        on = bool(overrides.get("consensus_check", config.consensus_check))
        rest = {k: v for k, v in overrides.items() if k not in POST_VERIFY_LEVERS}
        resolved = config.model_copy(update=overrides)
        if resolved.verifier_mode == "auto" and not needs_written_replies(resolved):
            rest["consensus_check"] = on  # the check picks the Verifier's reading too: a lever like any other
        return on, rest

    wanted_on, rest = split(name)
    if not wanted_on:
        return None
    for other in judged:
        if other == name:
            continue
        other_on, other_rest = split(other)
        if not other_on and other_rest == rest:
            return other
    return None


# The fields every verdicts.jsonl record has; any other field is a lever's note on that answer (pipeline._lever_fields).
_VERDICT_FIELDS = frozenset({"task_id", "step", "answer_key", "source", "answer_idx", "position", "judgements", "score",
                             "rollout_idx", "ref_idx"})


def _lever_notes(record: Mapping, ids: Sequence[str]) -> dict[str, Any]:
    """A verdict record's lever notes as `verify` made them (criterion ids back to indices)."""
    from ..pipeline import CRITERION_NOTES

    index = {cid: k for k, cid in enumerate(ids)}
    notes: dict[str, Any] = {}
    for key, value in record.items():
        if key in _VERDICT_FIELDS:
            continue
        if key in CRITERION_NOTES:
            value = [index[c] for c in value if c in index]
        notes[key] = value
    return notes


def _group_verdicts(records: Sequence[Mapping], n_refs: int, n_rollouts: int, texts: Mapping[tuple[str, int], str],
                    config: RunConfig, truncated: Sequence[bool], error: str | None = None,
                    ids: Sequence[str] = ()) -> Any:
    """A group's GroupVerdicts rebuilt from its verdicts.jsonl records (what `verify_group_async` returned), the
    levers' notes on each answer (self-consistency votes, evidence quotes) included."""
    from ..judge_text import clean_answer
    from ..verify import GroupVerdicts

    found = {(r["source"], int(r["answer_idx"])): r for r in records if r.get("answer_idx") is not None}
    order = sorted((k for k, r in found.items() if r.get("position")), key=lambda k: found[k]["position"])
    skipped = []
    for key, text in texts.items():
        if key[0] == "student" and config.truncated_rollouts == "zero" and truncated[key[1]]:
            skipped.append((*key, "truncated"))
        elif not clean_answer(text or "", max_chars=config.max_answer_chars, strip_think=config.strip_thinking):
            skipped.append((*key, "empty"))

    def judgements(source: str, n: int) -> list:
        return [found.get((source, i), {}).get("judgements") for i in range(n)]

    def notes(source: str, n: int) -> list[dict[str, Any]]:
        found_notes = [_lever_notes(found.get((source, i), {}), ids) for i in range(n)]
        return found_notes if any(found_notes) else []  # [] when the levers were off, as verify leaves it

    student = judgements("student", n_rollouts)
    failed = any(j is None for j in student)
    return GroupVerdicts(teacher=judgements("teacher", n_refs), student=student, order=order, skipped=skipped,
                         failed=failed, error=(error or "no verdict for some answers") if failed else None,
                         teacher_notes=notes("teacher", n_refs), student_notes=notes("student", n_rollouts))


def derive_variant(study: StudyConfig, bank: Bank, name: str, parent: str, config: RunConfig | None = None) -> Judged:
    """Variant `name` from variant `parent`'s rubrics and verdicts with its post-verification levers applied
    (`pipeline.score_group`), into DIR/variants/<name>/; no model call. usage.json keeps the parent's judge usage
    (the same calls pay for both) and says where it came from."""
    from ..data import task_from_record
    from ..pipeline import score_group, write_judgements
    from ..rubrics import Rubric

    vconfig = study.variant_config(config or study.run_config(), name)
    source = study.variant_path(parent)
    target = study.variant_path(name)
    started = time.perf_counter()
    _copy_bank(bank, target)
    vconfig.save()
    def by_group(name: str) -> dict[tuple[str, int], list[dict]]:
        out: dict[tuple[str, int], list[dict]] = {}
        for r in rundir.read_jsonl(source / name):
            out.setdefault((r["task_id"], int(r.get("step", 0))), []).append(r)
        return out

    rubrics = {key: records[-1] for key, records in by_group(rundir.RUBRICS).items()}
    verdicts, raw = by_group(rundir.VERDICTS), by_group(rundir.JUDGE_RAW)
    parent_usage = json.loads((source / USAGE_FILE).read_text()) if (source / USAGE_FILE).exists() else {}
    errors = parent_usage.get("errors") or {}
    tasks = {t["id"]: task_from_record(t, f"{bank.path / rundir.TASKS}:{t['id']}") for t in bank.tasks}
    refs = _refs_by_task(bank)

    results = []
    for key, group in bank.groups().items():
        if key not in rubrics or key[0] not in tasks:
            continue
        record = dict(rubrics[key])
        task_refs = [r["text"] for r in refs.get(key[0], [])]
        rollouts = [r["text"] for r in group]
        truncated = [bool(r.get("truncated")) for r in group]
        if not record["criteria"]:  # the parent's rubric failed: so does this variant's, for the same reason
            results.append(_rubric_failure(key, record, task_refs, raw.get(key, [])))
            continue
        texts = {**{("teacher", i): t for i, t in enumerate(task_refs)},
                 **{("student", j): t for j, t in enumerate(rollouts)}}
        error = errors.get(f"{key[0]}@{key[1]}")
        rubric = Rubric.from_record(record)
        group_verdicts = _group_verdicts(verdicts.get(key, []), len(task_refs), len(rollouts), texts, vconfig,
                                         truncated, error.removeprefix("verify: ") if error else None, rubric.ids)
        result = score_group(tasks[key[0]], key[1], record, rubric, group_verdicts, task_refs, rollouts, vconfig,
                             truncated=truncated, raw_records=raw.get(key, []))
        _add_bank_keys(result.verdict_records, refs.get(key[0], []), group)
        results.append(result)
    write_judgements(target, results, replace=True)
    wall = time.perf_counter() - started
    _write_usage(target, name, results, wall, parent_usage.get("usage", {}), derived_from=parent)
    record_timing(study.path, f"judge:{name}_s", wall)
    return Judged.read(target, name)


def _rubric_failure(key: tuple[str, int], rubric_record: dict, teacher_refs: Sequence[str], raw: list[dict]) -> Any:
    """The GroupJudgement of a group whose rubric failed (as `pipeline.judge_group_async` returns it)."""
    from ..pipeline import GroupJudgement

    return GroupJudgement(key[0], key[1], rubric_record, [], None, [None] * len(teacher_refs), True,
                          error=f"rubric: {rubric_record.get('error')}", raw_records=raw)


def judge_variants(
    study: StudyConfig, bank: Bank, config: RunConfig | None = None, *, progress: bool = True
) -> dict[str, Judged]:
    """`judge_variant` for each of the study's variants; a variant that only adds post-verification levers to
    another one of the list is derived from it instead (`derive_variant`), that one judged first."""
    base = config or study.run_config()
    done: dict[str, Judged] = {}
    # Those a listed variant can be derived from are judged first, whatever the order given ("base,no_consensus").
    parents = {p for n in study.variants if (p := derivable_from(n, study.variants, base)) is not None}
    for name in sorted(study.variants, key=lambda n: n not in parents):
        parent = derivable_from(name, list(done), base)
        done[name] = (derive_variant(study, bank, name, parent, config) if parent is not None
                      else judge_variant(study, bank, name, config, progress=progress))
    return {name: done[name] for name in study.variants}


def read_judged(study: StudyConfig | str | Path, variants: Iterable[str] | None = None) -> dict[str, Judged]:
    """The variants already judged under DIR/variants (all of them, or those named), without any model."""
    out = Path(study.out if isinstance(study, StudyConfig) else study)
    names = list(variants) if variants is not None else sorted(
        p.name for p in (out / VARIANTS_DIR).glob("*") if (p / rundir.RUBRICS).exists()
    )
    return {name: Judged.read(out / VARIANTS_DIR / name, name) for name in names}


# ---------------------------------------------------------------------------------------------------------------
# 2b. A labelled bank under its reference rubrics: the Verifier alone

# What a variant sets that only the Rubricator or the steps after the Verifier read: variants that differ only there
# judge alike under a reference rubric, so the second is a copy of the first.
_NOT_REFERENCE = frozenset(POST_VERIFY_LEVERS) | {
    "rubricator", "min_criteria", "max_criteria", "rubricator_temperature", "rubricator_max_tokens",
    "rubric_attempts", "rubric_student_samples", "pitfalls", "rubric_source", "absence_criteria",
    "criterion_weighting"}  # a reference rubric is scored with its own points, whatever the variant weights


def reference_overrides(name: str) -> dict[str, Any]:
    """The part of a variant's overrides that judging under a reference rubric reads (the Verifier's settings)."""
    return {k: v for k, v in parse_variant(name).items() if k not in _NOT_REFERENCE}


def _reference_tasks(bank: Bank) -> dict[str, Any]:
    from ..data import task_from_record

    tasks = {t["id"]: task_from_record(t, f"{bank.path / rundir.TASKS}:{t['id']}") for t in bank.tasks}
    return {task_id: task for task_id, task in tasks.items() if task.rubric}


async def judge_reference_async(bank: Bank, config: RunConfig, clients: Any, *, progress: bool = True) -> list[Any]:
    """Every group of the bank whose task carries a reference rubric, judged by the Verifier under that rubric:
    blind, the teacher refs beside the answers in the order training shows them, no consensus check. Scores use the
    reference points (HealthBench's score: met points over positive points, a met pitfall subtracting;
    probabilities of soft verdicts in place of booleans). Returns GroupJudgements as `judge_bank_async` does."""
    from tqdm.auto import tqdm

    from ..pipeline import _group_seed, score_group
    from ..scoring import weighted_score
    from ..train.evaluate import reference_rubric
    from ..verify import verify_group_async
    from .decided import verdict_values

    tasks = _reference_tasks(bank)
    refs = _refs_by_task(bank)
    groups = {k: v for k, v in bank.groups().items() if k[0] in tasks}
    # The reference rubric is the whole rubric: nothing is decided by code, and its pitfalls count.
    plain = config.model_copy(update={"consensus_check": False, "result_weight_share": 0.0, "pitfalls": True})
    bar = tqdm(total=len(groups), desc=f"reference rubric ({Path(config.run_dir).name})", disable=not progress)

    async def one(task_id: str, step: int, group: list[dict]):
        task, task_refs = tasks[task_id], refs.get(task_id, [])
        rubric, points = reference_rubric(task)
        ref_texts, texts = [r["text"] for r in task_refs], [r["text"] for r in group]
        truncated = [bool(r.get("truncated")) for r in group]
        record = {"task_id": task_id, "step": step, "criteria": [c.model_dump() for c in rubric.criteria],
                  "reference_points": points, "model": clients.verifier.endpoint.model, "n_teacher": len(ref_texts),
                  "n_student": len(texts), "source": "reference"}
        started = time.perf_counter()
        verdicts = await verify_group_async(task, rubric, ref_texts, texts, clients.verifier, plain,
                                            seed=_group_seed(plain, task_id, step), truncated=truncated)
        result = score_group(task, step, record, rubric, verdicts, ref_texts, texts, plain, truncated=truncated,
                             verify_s=time.perf_counter() - started)
        for v in result.verdict_records:
            values = verdict_values(v)
            v["score"] = None if values is None else weighted_score(points, [values], eps=0.0, pitfalls=True)[0]
        result.teacher_scores = [v["score"] for v in result.verdict_records if v["source"] == "teacher"]
        student = [v["score"] for v in result.verdict_records if v["source"] == "student"]
        result.scores = None if result.failed else student
        _add_bank_keys(result.verdict_records, task_refs, group)
        bar.update(1)
        return result

    try:
        return list(await asyncio.gather(*(one(t, s, g) for (t, s), g in groups.items())))
    finally:
        bar.close()


def judge_reference(study: StudyConfig, bank: Bank, name: str, config: RunConfig | None = None, *,
                    progress: bool = True) -> Judged | None:
    """Variant `name`'s Verifier settings under the reference rubrics, into DIR/reference/<name>/ (a run directory
    whose rubrics.jsonl holds the reference rubrics, `reference_points` beside the criteria). None when no task of
    the bank carries a reference rubric."""
    from ..llm import make_clients, run_sync
    from ..pipeline import write_judgements

    if not _reference_tasks(bank):
        return None
    vconfig = study.variant_config(config or study.run_config(), name)
    target = study.reference_path(name)
    vconfig = vconfig.model_copy(update={"run_dir": str(target)})
    _copy_bank(bank, target)
    vconfig.save()

    async def go():
        async with make_clients(vconfig) as clients:
            before = clients.stats.snapshot()
            results = await judge_reference_async(bank, vconfig, clients, progress=progress)
            return results, clients.stats.since(before)

    started = time.perf_counter()
    results, usage = run_sync(go())
    wall = time.perf_counter() - started
    write_judgements(target, results, replace=True)
    _write_usage(target, name, results, wall, dict(usage), rubric="reference")
    record_timing(study.path, f"reference:{name}_s", wall)
    return Judged.read(target, name)


def judge_references(study: StudyConfig, bank: Bank, config: RunConfig | None = None, *,
                     progress: bool = True) -> dict[str, Judged]:
    """`judge_reference` for each variant of a labelled bank's study (none for a rollout bank, whose open-ended
    tasks have no labels to measure against). A variant whose Verifier settings were already judged under the
    reference rubrics (`reference_overrides`) gets a copy of that judging, usage.json naming it (`same_as`). A
    reference-only study of a bank without any reference rubric is refused here, for the command line and notebook
    07 alike."""
    import shutil

    if study.reference_only and not _reference_tasks(bank):
        raise ValueError(f"{study.bank}: no prompt of the bank carries a reference rubric, so a reference-only "
                         "study has nothing to judge")
    if not study.labelled or not _reference_tasks(bank):
        return {}
    done: dict[str, str] = {}
    out: dict[str, Judged] = {}
    for name in study.variants:
        key = json.dumps(reference_overrides(name), sort_keys=True, default=str)
        if key in done:
            source, target = study.reference_path(done[key]), study.reference_path(name)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target)
            usage = json.loads((target / USAGE_FILE).read_text())
            (target / USAGE_FILE).write_text(json.dumps({**usage, "variant": name, "same_as": done[key]}, indent=2,
                                                        default=str) + "\n")
            out[name] = Judged.read(target, name)
            continue
        judged = judge_reference(study, bank, name, config, progress=progress)
        if judged is not None:
            out[name], done[key] = judged, name
    return out


def read_references(study: StudyConfig | str | Path, variants: Iterable[str] | None = None) -> dict[str, Judged]:
    """The judgings under the reference rubrics already in DIR/reference (those of `variants`, when given)."""
    out = Path(study.out if isinstance(study, StudyConfig) else study) / REFERENCE_DIR
    names = sorted(p.name for p in out.glob("*") if (p / rundir.RUBRICS).exists())
    wanted = names if variants is None else [n for n in variants if n in names]
    return {name: Judged.read(out / name, name) for name in wanted}


# ---------------------------------------------------------------------------------------------------------------
# 3. Reference signals


def _text_key(model: str, prompt: Any, text: str) -> str:
    return hashlib.sha256(json.dumps([model, prompt, text], ensure_ascii=False).encode()).hexdigest()[:24]


def logprob_signal(study: StudyConfig, bank: Bank, config: RunConfig | None = None, *,
                   batch_size: int = 4) -> list[dict]:
    """Mean token log-prob of each rollout under the white-box teacher (`config.lopd_teacher_model`), in
    transformers. Kept in DIR/bank/logprob.jsonl keyed by model and text, so only new rollouts are scored again."""
    from ..analysis import add_teacher_logprob, load_teacher

    config = config or study.run_config()
    model_name = config.lopd_teacher_model
    frame = bank.frame()
    path = study.bank_path / LOGPROB_FILE
    known = {r["key"]: r["logprob"] for r in rundir.read_jsonl(path) if r.get("model") == model_name}
    keys = [_text_key(model_name, p, t) for p, t in zip(frame["prompt"], frame["text"])]
    todo = frame[[k not in known for k in keys]]
    started = time.perf_counter()
    if len(todo):
        model, tokenizer = load_teacher(model_name, dtype=config.student_dtype)
        scored = add_teacher_logprob(todo, model, tokenizer, batch_size=batch_size)
        for (_, row), key in zip(scored.iterrows(), [k for k in keys if k not in known]):
            known[key] = None if pd.isna(row["logprob"]) else float(row["logprob"])
        del model
    records = [{**{k: row[k] for k in KEYS}, "model": model_name, "key": key, "logprob": known.get(key)}
               for (_, row), key in zip(frame.iterrows(), keys)]
    rundir.write_jsonl(path, [{k: (int(v) if k in ("step", "rollout_idx") else v) for k, v in r.items()}
                              for r in records])
    record_timing(study.path, "logprob_s", time.perf_counter() - started)
    return records


def judge_signal(study: StudyConfig, bank: Bank, config: RunConfig | None = None, *,
                 progress: bool = True) -> list[dict]:
    """The teacher-as-judge grade (0-1) of each rollout, no rubric (`reward.JudgeReward`: the `judge_role`
    endpoint, the Verifier's by default), into DIR/bank/judge_signal.jsonl; usage (tokens included) in
    DIR/bank/judge_signal_usage.json."""
    from tqdm.auto import tqdm

    from ..data import task_from_record
    from ..llm import make_clients, run_sync
    from ..reward import JudgeReward

    config = (config or study.run_config()).model_copy(update={"run_dir": str(study.bank_path)})
    frame = bank.frame()
    tasks = {t["id"]: task_from_record(t, f"{bank.path / rundir.TASKS}:{t['id']}") for t in bank.tasks}

    async def go():
        async with make_clients(config) as clients:
            before = clients.stats.snapshot()
            judge = JudgeReward(config, clients, None, num_generations=max(2, config.n_rollouts))
            bar = tqdm(total=len(frame), desc="teacher-as-judge", disable=not progress)

            async def one(task_id: str, text: str):
                score, _, error = await judge.score(tasks[task_id], text)  # the task: its family's judge prompt
                bar.update(1)
                return score, error

            try:
                out = await asyncio.gather(*(one(i, t) for i, t in zip(frame["task_id"], frame["text"])))
            finally:
                bar.close()
            return out, clients.stats.since(before)

    started = time.perf_counter()
    graded, usage = run_sync(go())
    records = [{**{k: (int(row[k]) if k != "task_id" else row[k]) for k in KEYS}, "judge": score, "error": error}
               for (_, row), (score, error) in zip(frame.iterrows(), graded)]
    rundir.write_jsonl(study.bank_path / JUDGE_SIGNAL_FILE, records)
    (study.bank_path / "judge_signal_usage.json").write_text(json.dumps(usage, indent=2) + "\n")
    record_timing(study.path, "judge_signal_s", time.perf_counter() - started)
    return records


def reference_signals(study: StudyConfig, bank: Bank, config: RunConfig | None = None, *,
                      progress: bool = True) -> dict[str, list[dict]]:
    """The study's reference signals ({"logprob": records, "judge": records}), each computed as above."""
    out: dict[str, list[dict]] = {}
    if "judge" in study.signals:
        out["judge"] = judge_signal(study, bank, config, progress=progress)
    if "logprob" in study.signals:
        out["logprob"] = logprob_signal(study, bank, config)
    return out


def read_signals(study: StudyConfig | str | Path) -> dict[str, list[dict]]:
    """The reference signals already computed under DIR/bank (those present)."""
    bank = Path(study.out if isinstance(study, StudyConfig) else study) / BANK
    out = {}
    for name, file in (("judge", JUDGE_SIGNAL_FILE), ("logprob", LOGPROB_FILE)):
        if (bank / file).exists():
            out[name] = rundir.read_jsonl(bank / file)
    return out


# ---------------------------------------------------------------------------------------------------------------
# 4. The summary (pure: records in, a JSON-ready dict out)


def _placed(bank: Bank, records: Iterable[Mapping], fields: Sequence[str]) -> pd.DataFrame:
    """KEYS and `fields` of each student record, placed on its rollout. A record without rollout_idx (a
    hand-written one) is placed by answer_idx among the group's rollouts that have a text."""
    groups = bank.groups()
    rows = []
    for v in records:
        if v.get("source", "student") != "student":
            continue
        step = int(v.get("step", 0))
        idx = v.get("rollout_idx")
        if idx is None or (isinstance(idx, float) and pd.isna(idx)):
            group = groups.get((v["task_id"], step), [])
            a = v.get("answer_idx")
            if a is None or pd.isna(a) or int(a) >= len(group):
                continue
            idx = group[int(a)]["rollout_idx"]
        rows.append({"task_id": v["task_id"], "step": step, "rollout_idx": int(idx), **{f: v.get(f) for f in fields}})
    frame = pd.DataFrame(rows, columns=KEYS + list(fields)).drop_duplicates(subset=KEYS, keep="last")
    for f in fields:
        frame[f] = pd.to_numeric(frame[f], errors="coerce").astype(float)
    return frame


def student_scores(bank: Bank, judged: Judged) -> pd.DataFrame:
    """(task_id, step, rollout_idx, score) of each judged student rollout. A verdict record without rollout_idx
    (a hand-written one) is placed by answer_idx among the group's rollouts that have a text."""
    return _placed(bank, judged.verdicts, ["score"])


def judged_parts(judged: Judged) -> pd.DataFrame:
    """`decided.reward_parts` of a variant's student answers: reward, Verifier-decided part, consensus check."""
    return reward_parts(judged.rubrics, judged.verdicts)


def _checked_anything(parts: pd.DataFrame) -> bool:
    return bool(len(parts)) and bool(parts["checked"].any())


def signal_frame(bank: Bank, judged: Mapping[str, Judged], signals: Mapping[str, Sequence[Mapping]],
                 references: Mapping[str, Judged] | None = None) -> pd.DataFrame:
    """The labelled bank with one column per signal: for each variant `rubric:<variant>` (the reward) and, where
    the consensus check decided some answer, `verifier_part:<variant>` and `check:<variant>`; then
    `reference:<variant>` for each judging under the reference rubrics; then logprob / judge.
    A rollout a variant could not score keeps NaN there (counted as missing, never as 0)."""
    frame = bank.frame()
    for name, result in judged.items():
        scores = student_scores(bank, result).rename(columns={"score": rubric_signal(name)})
        frame = frame.merge(scores, on=KEYS, how="left")
        parts = judged_parts(result)
        if _checked_anything(parts):
            placed = _placed(bank, parts.to_dict("records"), ["verifier_part", "check"])
            frame = frame.merge(placed.rename(columns={"verifier_part": f"verifier_part:{name}",
                                                       "check": f"check:{name}"}), on=KEYS, how="left")
    for name, result in (references or {}).items():
        scores = student_scores(bank, result).rename(columns={"score": f"reference:{name}"})
        frame = frame.merge(scores, on=KEYS, how="left")
    for name, records in signals.items():
        extra = pd.DataFrame(list(records), columns=KEYS + [name])
        extra["step"] = extra["step"].fillna(0).astype(int) if len(extra) else extra["step"]
        extra = extra.drop_duplicates(subset=KEYS, keep="last")
        frame = frame.merge(extra, on=KEYS, how="left")
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame


def _by_stratum(frame: pd.DataFrame, fn, *args, **kwargs) -> dict:
    return split_by(frame, STRATUM if STRATUM in frame.columns else None, fn, *args, **kwargs)


def _bank_counts(frame: pd.DataFrame) -> dict[str, Any]:
    labelled = frame[frame["correct"].map(lambda v: v is True or v is False)]
    y = labelled["correct"].astype(bool)
    mixed = labelled.assign(_y=y).groupby(["task_id", "step"])["_y"].agg(lambda s: 0 < s.sum() < len(s))
    return {
        "n_tasks": int(frame["task_id"].nunique()),
        "n": int(len(labelled)),
        "n_pos": int(y.sum()),
        "n_neg": int((~y).sum()),
        "n_unlabelled": int(len(frame) - len(labelled)),
        "student_accuracy": float(y.mean()) if len(y) else None,
        "n_groups": int(frame.groupby(["task_id", "step"]).ngroups) if len(frame) else 0,
        "n_groups_mixed": int(mixed.sum()) if len(mixed) else 0,
    }


def bank_summary(bank: Bank, frame: pd.DataFrame | None = None) -> dict[str, Any]:
    """Sizes and labels of the bank: rollouts right/wrong, groups with both, teacher competence per task."""
    frame = bank.frame() if frame is None else frame
    task_frame = _tasks_frame(bank.tasks)
    refs = pd.DataFrame(list(bank.teacher_refs), columns=["task_id", "ref_idx", "text"])
    competence = teacher_competence(refs, task_frame) if len(refs) else pd.DataFrame(
        columns=["task_id", "n_refs", "n_right", STRATUM])
    ref_right = competence["n_right"].map(lambda v: 0 if v is None else v)
    return {
        "n_rollouts_sampled": len(bank.rollouts),
        "n_rollouts_failed": sum(1 for r in bank.rollouts if r.get("text") is None),
        "n_rollouts_truncated": int(frame["truncated"].fillna(False).astype(bool).sum()),
        "n_teacher_refs": len(bank.teacher_refs),
        "teacher_accuracy": float(ref_right.sum() / competence["n_refs"].sum()) if len(competence) else None,
        "n_tasks_teacher_competent": int(competence[STRATUM].map(lambda v: v is True).sum()),
        "n_tasks_teacher_not_competent": int(competence[STRATUM].map(lambda v: v is False).sum()),
        "by_stratum": _by_stratum(frame, _bank_counts),
        "labelled": bank.description(),
        **_second_labels(bank, frame),
    }


def _task_objects(bank: Bank) -> dict[str, Any]:
    from ..data import task_from_record

    return {t["id"]: task_from_record(t, f"{bank.path / rundir.TASKS}:{t['id']}") for t in bank.tasks}


def _second_labels(bank: Bank, frame: pd.DataFrame) -> dict[str, Any]:
    """A second label for each checkable answer beside its primary one: the kit's independent answer check
    (`labels.independent_check`); for a labelled bank also the kit's own answer check against the bank's labels."""
    from ..answers import correctness

    if bank.graded:
        note = {"note": "graded labels: no right/wrong to compare a second check with"}
        return {"independent_label": note, "answer_check_vs_labels": note}
    tasks = _task_objects(bank)
    out = {"independent_label": label_agreement(frame, tasks)}
    if bank.labelled:
        out["answer_check_vs_labels"] = label_agreement(frame, tasks, correctness)
    return out


def _labelled_verdicts(judged: Judged, frame: pd.DataFrame) -> list[dict]:
    """The variant's student verdicts with `correct` and `teacher_competent` of their rollout joined on."""
    labels = {(r.task_id, int(r.step), int(r.rollout_idx)): (r.correct, getattr(r, STRATUM))
              for r in frame[KEYS + ["correct", STRATUM]].itertuples(index=False)}
    out = []
    groups: dict[tuple[str, int], list[int]] = {}
    for key in labels:
        groups.setdefault(key[:2], []).append(key[2])
    for v in judged.verdicts:
        if v.get("source", "student") != "student":
            continue
        step = int(v.get("step", 0))
        idx = v.get("rollout_idx")
        if idx is None:
            ordered = sorted(groups.get((v["task_id"], step), []))
            a = v.get("answer_idx")
            idx = ordered[a] if a is not None and a < len(ordered) else None
        correct, competent = labels.get((v["task_id"], step, idx), (None, None))
        out.append({**v, "step": step, "correct": correct, STRATUM: competent})
    return out


def _group_failures(judged: Judged, frame: pd.DataFrame) -> dict[str, Any]:
    """Per stratum: groups, groups whose rubric failed, groups with a student answer left without verdicts."""
    competent = dict(zip(frame["task_id"], frame[STRATUM]))
    rows = []
    verdicts: dict[tuple[str, int], list[dict]] = {}
    for v in judged.verdicts:
        if v.get("source", "student") == "student":
            verdicts.setdefault((v["task_id"], int(v.get("step", 0))), []).append(v)
    for r in judged.rubrics:
        key = (r["task_id"], int(r.get("step", 0)))
        rubric_failed = not r.get("criteria")
        answers = verdicts.get(key, [])
        verify_failed = not rubric_failed and (not answers or any(a.get("judgements") is None for a in answers))
        rows.append({"task_id": key[0], STRATUM: competent.get(key[0]), "rubric_failed": rubric_failed,
                     "verify_failed": verify_failed})
    table = pd.DataFrame(rows, columns=["task_id", STRATUM, "rubric_failed", "verify_failed"])

    def counts(part: pd.DataFrame) -> dict[str, Any]:
        n = len(part)
        failed = int((part["rubric_failed"] | part["verify_failed"]).sum())
        return {"groups": n, "groups_failed": failed, "rubric_failures": int(part["rubric_failed"].sum()),
                "verifier_failures": int(part["verify_failed"].sum()), "failure_rate": failed / n if n else None}

    return split_by(table, STRATUM, counts)


def _lever_counts(verdicts: Sequence[Mapping]) -> dict[str, Any]:
    """What the levers did to student answers: verdicts turned false for want of a quote, criteria decided by code,
    and with soft verdicts how many answers were scored from probabilities (`verdict_kinds`: soft, boolean where
    the endpoint gave none, mixed)."""
    out: dict[str, Any] = {"answers": 0, "evidence_flipped": 0, "checked_by_code": 0, "flipped_by_code": 0,
                           "verdict_kinds": {}}
    for v in verdicts:
        if v.get("source", "student") != "student":
            continue
        out["answers"] += 1
        for key in ("evidence_flipped", "checked_by_code", "flipped_by_code"):
            out[key] += len(v.get(key) or [])
        if v.get("verdict_kind"):
            out["verdict_kinds"][v["verdict_kind"]] = out["verdict_kinds"].get(v["verdict_kind"], 0) + 1
    return out


def judge_tokens(judged: Judged, n_scored: int, teacher_refs: Sequence[Mapping] = ()) -> dict[str, Any]:
    """Rubricator + Verifier tokens of a variant (replayed ones included) per scored student rollout; and with the
    teacher refs' tokens added (teacher-side tokens, what `make bench`'s cost_per_reward counts)."""
    usage = (judged.usage or {}).get("usage") or {}
    if not usage:
        return {"n_scored": n_scored, "tokens": None, "per_scored_rollout": None, "note": "no usage.json"}
    parts = {k: sum(int(usage.get(role, {}).get(k, 0)) for role in JUDGE_ROLES)
             for k in ("prompt_tokens", "completion_tokens", "cached_prompt_tokens", "cached_completion_tokens",
                       "calls", "cache_hits", "http_requests")}
    tokens = parts["prompt_tokens"] + parts["completion_tokens"] + parts["cached_prompt_tokens"] + \
        parts["cached_completion_tokens"]
    ref_tokens = sum(int((r.get("usage") or {}).get("prompt_tokens") or 0)
                     + int((r.get("usage") or {}).get("completion_tokens") or 0) for r in teacher_refs)
    return {
        "n_scored": n_scored,
        "tokens": tokens,
        **parts,
        "per_scored_rollout": tokens / n_scored if n_scored else None,
        "teacher_ref_tokens": ref_tokens,
        "teacher_side_per_scored_rollout": (tokens + ref_tokens) / n_scored if n_scored else None,
        "by_role": {role: usage[role] for role in JUDGE_ROLES if role in usage},
    }


def _records_by_stratum(split: Mapping[str, pd.DataFrame]) -> dict[str, list[dict]]:
    return {stratum: json_records(table) for stratum, table in split.items()}


def _labelled_parts(parts: pd.DataFrame, frame: pd.DataFrame, graded: bool) -> pd.DataFrame:
    """`parts` with each answer's label joined on (graded labels as they are, else `correct` as 1/0)."""
    label = frame["label"] if graded else frame["correct"].map(lambda v: float(v) if isinstance(v, bool) else None)
    labels = frame[KEYS].assign(label=pd.to_numeric(label, errors="coerce"))
    labels["step"] = labels["step"].astype(int)
    keyed = parts.assign(step=parts["step"].astype(int))
    keyed["rollout_idx"] = pd.to_numeric(keyed["rollout_idx"], errors="coerce")
    labels["rollout_idx"] = pd.to_numeric(labels["rollout_idx"], errors="coerce")
    return keyed.merge(labels, on=KEYS, how="left")


def variant_summary(bank: Bank, judged: Judged, frame: pd.DataFrame,
                    judge_wall_s: float | None = None, *, prompts_per_step: int = 2) -> dict[str, Any]:
    """Everything fidelity.json says about one variant besides its AUCs. `judge_wall_s`: the seconds its judging
    took (default its usage.json's; a derived variant's judging is its parent's). `prompts_per_step`: the groups
    of one training batch, for where the advantages' push goes under each `scale_rewards` (`advantage_use`)."""
    verdicts = _labelled_verdicts(judged, frame)
    parts = judged_parts(judged)
    long = criterion_verdicts(judged.rubrics, verdicts)
    # Only rubrics of tasks with a ground-truth answer can name the right result (open-ended ones have none).
    answered = {t["id"] for t in bank.tasks if t.get("answer") is not None}
    results = result_value_check([r for r in judged.rubrics if r["task_id"] in answered], _tasks_frame(bank.tasks))
    results[STRATUM] = results["task_id"].map(dict(zip(frame["task_id"], frame[STRATUM])))
    n_scored = sum(1 for v in verdicts if v.get("score") is not None)
    coverage = pd.DataFrame([{"source": "student", "judgements": v.get("judgements"), STRATUM: v.get(STRATUM)}
                             for v in verdicts])
    return {
        "overrides": judged.usage.get("overrides", _safe_overrides(judged.variant)),
        "criteria_by_category": _records_by_stratum(_by_stratum(long, agreement_table, "category")),
        "criteria_result_vs_rest": _records_by_stratum(_by_stratum(long, agreement_table, "is_result")),
        "criteria_excluded": dict(long.attrs),
        "result_value": _by_stratum(results, result_value_summary),
        "verifier_failures": {
            "groups": _group_failures(judged, frame),
            "answers": _records_by_stratum(_by_stratum(coverage, verdict_coverage))
            if len(coverage) else {},
            "answers_teacher_and_student": json_records(verdict_coverage(judged.verdicts)),
            "errors": judged.usage.get("errors", {}),
        },
        "levers": _lever_counts(judged.verdicts),
        "decided": decided_summary(parts),
        "zero_spread": zero_spread(parts, groups=[(r["task_id"], int(r.get("step", 0))) for r in judged.rubrics]),
        "advantage_use": advantage_use(_labelled_parts(parts, frame, bank.graded), prompts_per_step=prompts_per_step),
        "judge_tokens": judge_tokens(judged, n_scored, bank.teacher_refs),
        "wall_s": judged.usage.get("wall_s"),
        "judge_wall_s": judge_wall_s,
        "judge_s_per_scored_answer": judge_wall_s / n_scored if judge_wall_s is not None and n_scored else None,
    }


def _judge_walls(judged: Mapping[str, Judged]) -> dict[str, float | None]:
    """Seconds each variant's judging took: its own, or for a derived variant its parent's (the same calls)."""
    own = {name: result.usage.get("wall_s") for name, result in judged.items()}
    out = {}
    for name, result in judged.items():
        parent = result.usage.get("derived_from")
        out[name] = own.get(parent) if parent else own[name]
    return out


def _safe_overrides(name: str) -> dict[str, Any] | None:
    try:
        return parse_variant(name)
    except ValueError:
        return None


def machine_facts() -> dict[str, Any]:
    """What the wall times depend on: cores, the CPU (model, torch's capability level, native bf16), memory, load."""
    from ..train.student import cpu_facts

    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        cpu = cpu_facts()
    except Exception as exc:  # noqa: BLE001 - facts are descriptive; a missing one must not lose the study
        cpu = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem_gib,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def summarise(
    study: StudyConfig,
    bank: Bank,
    judged: Mapping[str, Judged],
    signals: Mapping[str, Sequence[Mapping]] | None = None,
    *,
    references: Mapping[str, Judged] | None = None,
    config: RunConfig | None = None,
    machine: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The body of fidelity.json, from records only (no model, no I/O).

    Keys: study, config (the bank's RunConfig: key variable names only), machine, timings, labels ("ground truth",
    "binary" or "graded": what `correct` / `label` hold), bank (sizes, n_pos / n_neg, groups with both, teacher
    competence, a labelled bank's description, the independent label's disagreement), signals (per signal: pooled
    `auc` and `within_group_auc` with tied pairs, each per stratum "all" / "teacher_competent=True|False", with 95%
    task-cluster bootstrap interval and n/n_pos/n_neg/n_pairs; `stats.signal_summary`; graded labels: the
    within-prompt order only), signal_names (figure labels), by_kind (per signal and flaw kind: that kind against
    the good answers of the same prompt), variants (per variant: criteria by category and result-vs-rest, result
    value check, verifier failures, lever counts, what the consensus check decided, zero reward spread, judge time
    and tokens per scored answer), references (the same for the judgings under the reference rubrics) and
    loss_split (per variant judged under both: `links.loss_split`).
    """
    signals = dict(signals or {})
    references = dict(references or {})
    frame = signal_frame(bank, judged, signals, references)
    names = []
    for variant in judged:
        names += [rubric_signal(variant)] + [f"{kind}:{variant}" for kind in ("verifier_part", "check")
                                             if f"{kind}:{variant}" in frame.columns]
    names += [f"reference:{variant}" for variant in references] + [s for s in SIGNALS if s in signals]
    graded = bank.graded
    options = {"n_boot": study.n_boot, "seed": study.seed, "level": study.level}
    walls = _judge_walls(judged)
    per_step = (config or study.run_config()).prompts_per_step
    by_kind = {name: kind_auc(frame, name, **options) for name in names} if frame["kind"].notna().any() else {}
    splits = {
        variant: loss_split(frame, variant, rubric_signal(variant), f"reference:{variant}",
                            chain_records=(judged[variant].rubrics, judged[variant].verdicts),
                            reference_records=(references[variant].rubrics, references[variant].verdicts),
                            graded=graded, **options)
        for variant in judged if variant in references
    }
    return {
        "study": study.model_dump(),
        "config": (config or study.run_config()).model_dump(),
        "machine": dict(machine) if machine is not None else None,
        "timings": dict(timings or {}),
        "labels": "graded" if graded else "binary" if bank.labelled else "ground truth",
        "bank": bank_summary(bank, frame),
        "signals": signal_summary(frame, names, by=STRATUM, label="label" if graded else "correct", graded=graded,
                                  **options),
        "signal_names": {s: signal_label(s) for s in names},
        "by_kind": {name: kinds for name, kinds in by_kind.items() if kinds},
        "variants": {name: variant_summary(bank, result, frame, walls[name], prompts_per_step=per_step)
                     for name, result in judged.items()},
        "references": {name: variant_summary(bank, result, frame, result.usage.get("wall_s"),
                                             prompts_per_step=per_step)
                       for name, result in references.items()},
        "loss_split": splits,
    }


def _auc_cell(numbers: Mapping[str, Any] | None) -> str:
    if not numbers or numbers.get("auc") is None:
        return (numbers or {}).get("note") or "-"
    low, high = numbers.get("low"), numbers.get("high")
    interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return f"{numbers['auc']:.2f}{interval}"


def summary_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per signal: pooled and within-group AUC with intervals, overall and per teacher-competence stratum,
    and the counts behind them (what the CLI prints at the end)."""
    cell = _auc_cell
    rows = []
    for signal, measures in result["signals"].items():
        pooled, within = measures["auc"], measures["within_group_auc"]
        everything = pooled.get("all", {})
        inside = within.get("all") or {}
        row = {"signal": result.get("signal_names", {}).get(signal, signal),
               "n": everything.get("n"), "n_pos": everything.get("n_pos"), "n_neg": everything.get("n_neg"),
               "pooled AUC": cell(everything), "within-group AUC": cell(inside),
               "pairs": inside.get("n_pairs"), "tied pairs": inside.get("n_ties")}
        for stratum in (f"{STRATUM}=True", f"{STRATUM}=False"):
            label = STRATUM_LABELS[stratum]
            row[f"pooled, {label}"] = cell(pooled.get(stratum))
            row[f"within, {label}"] = cell(within.get(stratum))
        rows.append(row)
    return pd.DataFrame(rows)


def variant_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per variant: its overrides, failures, judge tokens per scored rollout, and its result criterion."""
    rows = []
    judgings = [(name, "induced", v) for name, v in result["variants"].items()]
    judgings += [(name, "reference", v) for name, v in (result.get("references") or {}).items()]
    for name, rubric, v in judgings:
        failures = v["verifier_failures"]["groups"].get("all", {})
        tokens = v["judge_tokens"]
        value = v["result_value"].get("all", {})
        decided = v.get("decided") or {}
        spread = v.get("zero_spread") or {}
        per_answer = v.get("judge_s_per_scored_answer")
        rows.append({
            "variant": name,
            "rubric": rubric,
            "overrides": json.dumps(v.get("overrides") or {}, sort_keys=True),
            "groups": failures.get("groups"),
            "groups_failed": failures.get("groups_failed"),
            "zero-spread groups": spread.get("frac_reward_zero_std"),
            "answers checked by code": decided.get("share_checked"),
            **{f"push the right way ({scale})": (v.get("advantage_use") or {}).get(scale, {}).get("right")
               for scale in ("group", "batch")},
            "judge tokens / scored rollout": round(tokens["per_scored_rollout"]) if tokens.get("per_scored_rollout")
            else None,
            "teacher-side tokens / scored rollout": round(tokens["teacher_side_per_scored_rollout"])
            if tokens.get("teacher_side_per_scored_rollout") else None,
            "judge s / scored answer": round(per_answer, 3) if per_answer is not None else None,
            "rubrics naming the right result": value.get("share_right"),
            "judge wall s": v.get("wall_s"),
        })
    return pd.DataFrame(rows)


def kind_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (signal, flaw kind): that kind against the good answers of the same prompt — within-prompt AUC
    with its interval, pairs and tied pairs. Empty when the bank names no kinds."""
    names = result.get("signal_names", {})
    rows = [{"signal": names.get(signal, signal), "kind": kind, "within-prompt AUC": _auc_cell(numbers),
             "pairs": numbers.get("n_pairs"), "tied pairs": numbers.get("n_ties")}
            for signal, kinds in (result.get("by_kind") or {}).items() for kind, numbers in kinds.items()]
    return pd.DataFrame(rows, columns=["signal", "kind", "within-prompt AUC", "pairs", "tied pairs"])


def loss_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per variant judged under the reference rubrics too: where the labels' order is lost. The Verifier
    alone (reference rubric) against the whole chain (induced rubric), the teacher's references against the good
    and the flawed answers under the reference rubric, and the share of criteria that separate good from flawed."""
    rows = []
    for name, split in (result.get("loss_split") or {}).items():
        teacher = split["teacher_under_reference"]
        rows.append({
            "variant": name,
            "prompts": split["n_prompts"],
            "Verifier, reference rubric": _auc_cell(split["verifier_under_reference"]),
            "whole chain, induced rubric": _auc_cell(split["whole_chain"]),
            "teacher refs score (reference)": teacher["refs_score"],
            "good answers score (reference)": teacher["good_score"],
            "flawed answers score (reference)": teacher["flawed_score"],
            "P(ref > good)": _auc_cell(teacher["refs_vs_good"]),
            "P(ref > flawed)": _auc_cell(teacher["refs_vs_flawed"]),
            "induced criteria separating": split["induced_criteria"]["share_separating"],
            "reference criteria separating": split["reference_criteria"]["share_separating"],
        })
    return pd.DataFrame(rows)


def criteria_table(result: Mapping[str, Any], variant: str, stratum: str = "all") -> pd.DataFrame:
    """A variant's agreement with correctness per criterion category (one stratum); in a reference-only study, its
    judging under the reference rubrics."""
    judgings = result["references"] if result["study"].get("reference_only") else result["variants"]
    return pd.DataFrame(judgings[variant]["criteria_by_category"].get(stratum, []))


def fidelity_figure(result: Mapping[str, Any]) -> "go.Figure":
    """AUC of each signal with its 95% interval, pooled and within-group, per teacher-competence stratum."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = result.get("signal_names", {})
    signals = list(result["signals"])
    labels = [names.get(s, s) for s in signals]
    strata = ["all", f"{STRATUM}=True", f"{STRATUM}=False", f"{STRATUM}=missing"]
    colours = {"all": "#1f77b4", f"{STRATUM}=True": "#2ca02c", f"{STRATUM}=False": "#d62728",
               f"{STRATUM}=missing": "#7f7f7f"}
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True,
                        subplot_titles=("pooled ROC AUC (rollouts of all tasks)",
                                        "within-group AUC (right vs wrong of one prompt: what GRPO sees)"))
    for col, measure in enumerate(("auc", "within_group_auc"), start=1):
        for stratum in strata:
            cells = [result["signals"][s][measure].get(stratum) for s in signals]
            if not any(cells):
                continue
            y = [c.get("auc") if c else None for c in cells]
            plus = [(c["high"] - c["auc"]) if c and c.get("auc") is not None and c.get("high") is not None else None
                    for c in cells]
            minus = [(c["auc"] - c["low"]) if c and c.get("auc") is not None and c.get("low") is not None else None
                     for c in cells]
            text = [(f"n={c.get('n')} ({c.get('n_pos')} right, {c.get('n_neg')} wrong)"
                     + (f"; {c['note']}" if c.get("note") else "")) if c else "" for c in cells]
            fig.add_trace(
                go.Bar(x=labels, y=y, name=STRATUM_LABELS.get(stratum, stratum), marker_color=colours[stratum],
                       error_y={"type": "data", "array": plus, "arrayminus": minus, "visible": True},
                       hovertext=text, legendgroup=stratum, showlegend=col == 1),
                row=1, col=col,
            )
        fig.add_hline(y=0.5, line_dash="dot", line_color="grey", row=1, col=col)
    bank = result.get("bank", {}).get("by_stratum", {}).get("all", {})
    fig.update_layout(
        title=f"Reward fidelity: AUC vs correctness, 95% task-bootstrap intervals (n={bank.get('n')}: "
              f"{bank.get('n_pos')} right, {bank.get('n_neg')} wrong; {bank.get('n_tasks')} tasks)",
        barmode="group", height=520, width=1150, yaxis={"range": [0, 1.05], "title": "AUC"},
        legend={"title": "tasks"},
    )
    return fig


def _plain(value: Any) -> Any:
    """JSON-ready: NaN and NA as None, numpy scalars as Python numbers, tuples as lists."""
    import math

    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def write_result(study: StudyConfig, result: Mapping[str, Any]) -> tuple[Path, Path]:
    """DIR/fidelity.json and DIR/fidelity.html (plotly.js inlined: opens offline)."""
    from ..analysis import save_figure

    study.path.mkdir(parents=True, exist_ok=True)
    json_path = study.path / FIDELITY_JSON
    json_path.write_text(json.dumps(_plain(result), indent=2, default=str, allow_nan=False) + "\n")
    html_path = save_figure(fidelity_figure(result), study.path / FIDELITY_HTML)
    return json_path, html_path


def summarise_study(study: StudyConfig, *, variants: Iterable[str] | None = None,
                    config: RunConfig | None = None) -> dict[str, Any]:
    """Read what the study folder holds (bank, judged variants, signals, timings), summarise, write fidelity.json
    and fidelity.html; returns the summary. No model is called."""
    started = time.perf_counter()
    bank = Bank.read(study.bank_path)
    variants = list(variants if variants is not None else study.variants)
    judged = {} if study.reference_only else read_judged(study, variants)
    signals = {name: records for name, records in read_signals(study).items() if name in study.signals}
    references = read_references(study, variants if study.reference_only else list(judged)) if study.labelled else {}
    result = summarise(study, bank, judged, signals, references=references, config=config, machine=machine_facts(),
                       timings=read_timings(study.path))
    result["timings"]["summarise_s"] = round(time.perf_counter() - started, 3)
    write_result(study, result)
    return result


def serving_config(study: StudyConfig, config: RunConfig | None = None) -> RunConfig:
    """The bank's config with a local server context large enough for every variant's largest request (evidence
    and read-first replies are longer than plain verdicts); unchanged when server_ctx_size is set."""
    from ..offline.serve import server_ctx_size

    config = config or study.run_config()
    if study.labelled:
        # No student samples a labelled bank: its endpoint is pointed at the Verifier's, so no server loads it.
        config = config.model_copy(update={"student": config.endpoint("verifier")})
    if config.server_ctx_size is not None:
        return config
    need = max(server_ctx_size(study.variant_config(config, name)) for name in study.variants)
    return config.model_copy(update={"server_ctx_size": max(need, server_ctx_size(config))})


def run_study(study: StudyConfig, *, progress: bool = True) -> dict[str, Any]:
    """The whole study: bank, every variant, the reference signals, fidelity.json and fidelity.html. Local
    endpoints are served for the duration (one llama-server per model) and stopped at the end."""
    from ..offline.serve import local_endpoints

    started = time.perf_counter()
    study.save()
    (study.path / TIMINGS_FILE).unlink(missing_ok=True)  # fidelity.json's timings are this run's
    config = study.run_config()
    with local_endpoints(serving_config(study, config)) as served:
        bank = build_bank(study, served, progress=progress)
        if not study.reference_only:
            judge_variants(study, bank, served, progress=progress)
        judge_references(study, bank, served, progress=progress)
        if "judge" in study.signals:
            judge_signal(study, bank, served, progress=progress)
    if "logprob" in study.signals:  # in-process model: after the servers have let go of their memory
        logprob_signal(study, bank, config)
    record_timing(study.path, "total_s", time.perf_counter() - started)
    return summarise_study(study, config=config)
