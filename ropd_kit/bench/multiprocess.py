"""`multiprocess`: the same ropd steps in two training processes and in one, on the CPU — what a second process costs
and where each step's time goes.

In: one ropd config (SmolLM2-135M as student and judge by default, tiny sizes), trained `steps` steps twice from
scratch: once as `python -m ropd_kit.train CONFIG`, once under `accelerate launch --multi_gpu --num_processes N`
with the GPUs hidden (torchrun underneath: N processes over gloo on the CPU; accelerate's own `--cpu` flag starts a
single process, see `train/distributed.py`). Both runs judge on one llama-server that the bench starts, each with a
fresh LLM cache and reference index, so both pay for every judge call. prompts_per_step is the step's batch in both:
with N processes each generates and judges prompts_per_step / N groups.
Out (`reports/bench/multiprocess.json`): per run the launch's wall time (process start, model loading, training,
saving), the threads each process had, and per step the train log's step_s split into generation, teacher refs,
rubric induction, verification, the optimizer's update and the rest (`bench.step.breakdown`; in a multi-process
log each is the slowest process's), with the ratios N-process / one-process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .. import rundir
from .judge import REPO, median, ratio
from .step import PHASES, breakdown

FAST = "smollm2-135m-instruct"


def mp_params(run_dir: Path, scratch: Path, **overrides: Any) -> dict[str, Any]:
    """The bench's ropd run: the shipped arithmetic tasks, no evaluation, a cache and reference index of its own."""
    return {
        "run_dir": str(run_dir),
        "tasks_path": str(REPO / "data" / "arith_easy_train.jsonl"),
        "method": "ropd",
        "seed": 0,
        "n_tasks": 8,
        "student_model": FAST,
        "use_unsloth": "never",
        "n_teacher_refs": 2,
        "n_rollouts": 4,
        "prompts_per_step": 2,
        "rollout_max_tokens": 64,
        "teacher_max_tokens": 96,
        "rubricator_max_tokens": 384,
        "verifier_max_tokens": 256,
        "max_criteria": 4,
        "min_criteria": 2,
        "max_steps": 2,
        "save_steps": 1000,
        "eval_steps": None,
        "max_judge_failure_rate": 1.0,
        "cache_dir": str(scratch / "llm"),
        "ref_index_dir": str(scratch / "refs"),
        **overrides,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(config_file: Path, processes: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment that train `config_file` in `processes` CPU processes (1: no launcher)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if processes == 1:
        return [sys.executable, "-m", "ropd_kit.train", str(config_file)], env
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU run even on a GPU machine
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--main_process_port", str(_free_port()), "--mixed_precision", "no",
            "--dynamo_backend", "no", "-m", "ropd_kit.train", str(config_file)], env


def run_once(config: Any, processes: int, work: Path, *, timeout_s: float = 3600,
             progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Train `config` in `processes` processes from scratch; the launch's wall time and the run's train log."""
    import shutil

    for folder in (config.path, Path(config.cache_dir), Path(config.ref_index_dir)):
        if folder.exists():
            shutil.rmtree(folder)
    config_file = config.save(work / f"{config.path.name}.json")
    cmd, env = launch_command(config_file, processes)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    wall = time.perf_counter() - started
    (work / f"{config.path.name}.log").write_text(done.stdout + done.stderr)
    if done.returncode:
        raise RuntimeError(f"{processes}-process run failed (exit {done.returncode}); its output is in "
                           f"{work / (config.path.name + '.log')}:\n{done.stderr[-3000:]}")
    log = rundir.read_jsonl(config.path / rundir.TRAIN_LOG)
    progress(f"multiprocess: {processes} process(es), {len(log)} steps in {wall:.0f} s "
             f"(steps {', '.join(str(r.get('step_s')) for r in log)} s)")
    threads = (int(env.get("OMP_NUM_THREADS", 0)) or os.cpu_count()) if processes == 1 else 1
    return {"processes": processes, "wall_s": round(wall, 1), "threads_per_process": threads, "log": log}


def bench_multiprocess(*, processes: int = 2, work: Path, judge_model: str = FAST,
                       progress: Callable[[str], None] = print, **overrides: Any) -> dict[str, Any]:
    """Serve the judge once, train the same config in one process and in `processes`, summarise both."""
    from ..config import RunConfig
    from ..offline.serve import local_endpoints

    work.mkdir(parents=True, exist_ok=True)
    params = mp_params(work / "run", work / "scratch", **{f"{r}_model": judge_model
                                                         for r in ("teacher", "rubricator", "verifier")}, **overrides)
    base = RunConfig.from_params(**params)
    runs = []
    with local_endpoints(base.model_copy(update={"student": base.teacher})) as served:
        for n in (1, processes):
            config = served.model_copy(update={"run_dir": str(work / f"run-{n}p"),
                                               "cache_dir": str(work / f"scratch-{n}p" / "llm"),
                                               "ref_index_dir": str(work / f"scratch-{n}p" / "refs")})
            runs.append(run_once(config, n, work, progress=progress))
    inputs = {k: v for k, v in params.items() if k not in ("run_dir", "cache_dir", "ref_index_dir", "tasks_path")}
    return {"inputs": {**inputs, "processes": processes, "judge_model": judge_model,
                       "launcher": "accelerate launch --multi_gpu (torchrun, gloo; GPUs hidden)"},
            **summarise_multiprocess(runs)}


def summarise_multiprocess(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per run (keyed "1p", "2p", ...): median seconds per phase over its steps (the first step too: both runs pay
    for the same cold start), samples per second of step time, the launch's wall time; then N-process / 1-process
    ratios and a reading. `runs` items: {"processes", "wall_s", "threads_per_process", "log": train-log records}."""
    per_run: dict[str, Any] = {}
    for run in runs:
        steps = [s for s in (breakdown(r) for r in run["log"]) if s]
        seconds = {p: median([s[p] for s in steps]) for p in (*PHASES, "step")} if steps else {}
        samples = [r["samples_seen"] / r["step"] for r in run["log"] if r.get("step")]
        per_step = samples[0] if samples else None
        per_run[f"{run['processes']}p"] = {
            "processes": run["processes"],
            "threads_per_process": run.get("threads_per_process"),
            "wall_s": run.get("wall_s"),
            "steps": len(run["log"]),
            "seconds_median": seconds,
            "samples_per_step": per_step,
            "samples_per_s": ratio(per_step, seconds.get("step")) if per_step else None,
            "judge_calls": sum(r.get("judge_calls") or 0 for r in run["log"]),
            "judge_failures": sum(r.get("judge_failures") or 0 for r in run["log"]),
            "reward_mean": [r.get("reward_mean") for r in run["log"]],
            "steps_raw": [{k: r.get(k) for k in ("step", "step_s", "generate_s", "judge_s", "refs_s", "rubric_s",
                                                  "verify_s", "optimizer_s", "processes")} for r in run["log"]],
        }
    one = per_run.get("1p")
    many = next((v for k, v in per_run.items() if k != "1p"), None)
    ratios: dict[str, Any] = {}
    if one and many:
        for phase in (*PHASES, "step"):
            ratios[f"{phase}_s"] = ratio(many["seconds_median"].get(phase), one["seconds_median"].get(phase))
        ratios["wall_s"] = ratio(many["wall_s"], one["wall_s"])
        ratios["samples_per_s"] = ratio(many["samples_per_s"], one["samples_per_s"])
    return {"runs": per_run, "ratios": ratios, "reading": multiprocess_reading(one, many, ratios)}


def multiprocess_reading(one: dict | None, many: dict | None, ratios: dict[str, Any]) -> str:
    """One paragraph: is the N-process step faster, and which phase moved."""
    if not one or not many or ratios.get("step_s") is None:
        return "No pair of timed runs to compare."
    n = many["processes"]
    a, b = one["seconds_median"], many["seconds_median"]
    moved = sorted(((b.get(p) or 0.0) - (a.get(p) or 0.0), p) for p in PHASES)
    gained, lost = moved[0], moved[-1]
    verdict = "faster" if ratios["step_s"] < 1 else "slower"
    text = (f"A step took {b['step']:.1f} s in {n} processes against {a['step']:.1f} s in one "
            f"({ratios['step_s']:.2f}x, {verdict}); the launch took {many['wall_s']:.0f} s against "
            f"{one['wall_s']:.0f} s (model loading and start-up included).")
    if lost[0] > 0:
        text += f" The most time went up in {lost[1]} (+{lost[0]:.1f} s)"
        text += f", the most came off {gained[1]} ({gained[0]:.1f} s)." if gained[0] < 0 else "."
    elif gained[0] < 0:
        text += f" The most time came off {gained[1]} ({gained[0]:.1f} s)."
    text += (f" Each of the {n} processes ran {many['threads_per_process']} thread(s), the single one "
             f"{one['threads_per_process']}; they share the cores with each other and with the judge server.")
    return text
