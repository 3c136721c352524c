"""`make bench`: where ROPD's time and money go, measured side by side on this machine.

Runs the benchmarks of `bench_judge` (judge throughput against concurrency, local and behind a latency proxy;
verification granularity; cache replay) and of `bench_step` (step-time breakdown and teacher-side cost per scored
rollout for ropd, lopd, rlvr and judge) and of `bench.ratelimit` (a requests/minute limit as the endpoint sees it,
through the latency proxy), writes one JSON per benchmark under `reports/bench/` (inputs, machine
facts, raw timings, medians, ratios) and `reports/bench/index.html` with the plots, linking `injection.json` and
`gpu_grpo.json` when they exist.

The judging benchmarks use SmolLM2-135M as judge by default, with rubrics capped at 6 criteria (the demo's cap):
16 groups of 12 answers at three concurrency levels take minutes with it and close to an hour with the 1.5B
teacher on a 2-core CPU. `--judge-model qwen2.5-coder-1.5b-instruct` runs them with the offline default's teacher.
The local-server passes judge max(4, concurrency) of the groups (`--local-groups all`: every group at every
level): the server is the ceiling, so a rate needs no more, and only concurrency 16 needs all 16 groups in flight.
The step breakdown trains one step of each method on the offline default at the demo's sizes.

Measured on a fresh clone, 2 cores (llama-server built and models converted in ~/.cache/ropd-kit): `make bench`
16 min 49 s, of which the venv about 50 s; inputs 87 s; (a) 59 s / 23 s / 197 s at concurrency 1 / 4 / 16 (4, 4 and
16 groups); (b) 3 repeats per level, about 2 min; granularity 1.5 min; cache replay 1.5 min; step breakdown about
5 min.

    python -m ropd_kit.bench                          # everything (about 16 min on 2 cores)
    python -m ropd_kit.bench --steps-from reports/demo # step breakdown from `make demo`'s runs, no new training
    python -m ropd_kit.bench --only judge_throughput --groups 4
    python -m ropd_kit.bench --only rate_limit        # about 2.5 min, no model: 8 requests/minute, 24 requests
    python -m ropd_kit.bench --only multiprocess      # 2 ropd steps in 2 CPU processes vs 1 (SmolLM2)
    python -m ropd_kit.bench --only demo_time          # `make demo`'s finished batch against its budget, and set-up
    python -m ropd_kit.bench --only tests_time         # `make test`'s JUnit report against its 20-minute budget
    python -m ropd_kit.bench --quick                  # about 4 min: tiny sizes, SmolLM2 everywhere
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Callable

from .judge import REPO

MACHINE_SHOWN = ("cpus", "memory_gib", "processor", "cpu", "matmul")  # the machine facts the index page prints
BENCHES = ("judge_throughput", "verify_granularity", "cache_replay", "step_breakdown", "rate_limit", "multiprocess",
           "demo_time", "tests_time")
NOT_JUDGE = ("step_breakdown", "rate_limit", "multiprocess", "demo_time", "tests_time")
DEFAULT_OUT = REPO / "reports" / "bench"
LINKED = {"injection.json": "prompt injection into the Verifier (python -m ropd_kit.bench.injection)",
          # Written on a GPU box by scripts/gpu_smoke.sh (reports/gpu/), linked from here when it was brought back.
          "../gpu/gpu_grpo.json": "ropd GRPO steps on a GPU, transformers vs Unsloth (scripts/gpu_smoke.sh)"}


def matmul_ms(runs: int = 5, shape: tuple[int, int, int] = (512, 896, 896)) -> dict[str, Any]:
    """One-thread (m x k) @ (k x n) matmul in fp32 and in bf16, median ms of `runs` after a warm-up: whether this
    CPU computes bf16 natively (ratio near or below 1) or emulates it (tens of times slower). 896 is the hidden size
    of the 0.5B student."""
    import statistics

    import torch

    m, k, n = shape
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out: dict[str, Any] = {"shape": f"{m}x{k} @ {k}x{n}", "threads": 1, "runs": runs}
    try:
        for dtype in ("float32", "bfloat16"):
            g = torch.Generator().manual_seed(0)
            a = torch.randn(m, k, generator=g).to(getattr(torch, dtype))
            b = torch.randn(k, n, generator=g).to(getattr(torch, dtype))
            a @ b
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                a @ b
                times.append((time.perf_counter() - started) * 1000)
            out[f"{dtype}_ms"] = round(statistics.median(times), 3)
            out[f"{dtype}_min_ms"] = round(min(times), 3)  # on a shared CPU the least disturbed run
    finally:
        torch.set_num_threads(threads)
    out["bf16_vs_fp32"] = round(out["bfloat16_ms"] / out["float32_ms"], 2) if out["float32_ms"] else None
    return out


def machine_facts(*, matmul_runs: int = 5) -> dict[str, Any]:
    """What the numbers depend on: cores, the CPU (model, torch's capability level, native bf16, the dtype the
    student loads in, a bf16-vs-fp32 matmul), memory, load at the start, library versions, the llama-server build."""
    from importlib.metadata import PackageNotFoundError, version

    from ..offline import serve
    from ..train.student import choose_dtype, cpu_facts

    def v(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    mem_kb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1) if mem_kb else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": {**cpu_facts(), "student_dtype_auto": choose_dtype("auto")[0]},
        "matmul": matmul_ms(matmul_runs),
        "python": platform.python_version(),
        "packages": {p: v(p) for p in ("torch", "transformers", "trl", "openai", "ropd-kit")},
        "llama_server": serve._read_stamp(),
    }


def write_result(out: Path, name: str, result: dict[str, Any], facts: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    payload = {"bench": name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": facts, **result}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------


def run_judge_benches(names: list[str], out: Path, facts: dict, args: argparse.Namespace) -> dict[str, Path]:
    from .judge import bench_cache_replay, bench_judge_throughput, bench_verify_granularity, judge_params, make_inputs
    from ..config import RunConfig
    from ..offline.serve import local_endpoints

    work = out / "work"
    level_max = max(args.levels)
    params = judge_params(
        args.judge_model, work,
        n_tasks=args.groups, n_teacher_refs=args.refs, n_rollouts=args.rollouts,
        teacher_max_tokens=args.answer_tokens, rollout_max_tokens=args.answer_tokens, max_criteria=args.max_criteria,
        # A cache and reference index of the bench's own: on a fresh clone the inputs are made (and timed) anew,
        # a re-run gets them free.
        cache_dir=str(work / "llm-inputs"), ref_index_dir=str(work / "refs-inputs"),
        # One slot per request in flight at the highest level, each sized for the bench's largest request (the
        # server_ctx_size default: offline.serve.server_ctx_size).
        server_parallel=level_max,
    )
    config = RunConfig.from_params(**params)
    written: dict[str, Path] = {}
    with local_endpoints(config) as served:
        started = time.perf_counter()
        groups = make_inputs(served)
        _say(f"inputs: {len(groups)} groups of {args.refs} teacher refs + {args.rollouts} rollouts "
             f"({time.perf_counter() - started:.0f} s)")
        if "judge_throughput" in names:
            result = bench_judge_throughput(groups, served, levels=tuple(args.levels), repeats_local=args.repeats_local,
                                            repeats_remote=args.repeats, latency_s=args.latency,
                                            local_groups=args.local_groups, progress=_say)
            written["judge_throughput"] = write_result(out, "judge_throughput", result, facts)
        if "verify_granularity" in names:
            result = bench_verify_granularity(groups[: args.granularity_groups], served, repeats=args.repeats_local,
                                              progress=_say)
            written["verify_granularity"] = write_result(out, "verify_granularity", result, facts)
    if "cache_replay" in names:
        # With the offline default's teacher, which writes usable rubrics, at the demo's step size (every reply is
        # cached, a rejected one with its rejection, so a warm pass is free whatever the judge writes).
        from .judge import Group

        step_config = RunConfig.from_params(**{
            **params, **{f"{role}_model": args.step_judge_model for role in ("teacher", "rubricator", "verifier")},
            "n_teacher_refs": 2, "teacher_max_tokens": 256, "max_criteria": 6,
            "server_parallel": 4,
        })
        step_groups = [Group(g.task, g.teacher_refs, g.rollouts[: args.step_rollouts])
                       for g in groups[: args.step_groups]]
        with local_endpoints(step_config) as served:
            result = bench_cache_replay(step_groups, served, repeats=args.repeats, progress=_say)
        written["cache_replay"] = write_result(out, "cache_replay", result, facts)
    return written


def run_step_bench(out: Path, facts: dict, args: argparse.Namespace) -> dict[str, Path]:
    from .step import run_method, summarise_steps

    work = out / "work"
    overrides: dict[str, Any] = {"max_steps": args.steps}
    if args.quick:
        overrides.update({
            **{f"{role}_model": "smollm2-135m-instruct" for role in ("teacher", "rubricator", "verifier")},
            "student_model": "smollm2-135m-instruct", "lopd_teacher_model": "smollm2-135m-instruct",
            "n_rollouts": 2, "n_teacher_refs": 2, "rollout_max_tokens": 32, "teacher_max_tokens": 48,
            "max_criteria": 3, "min_criteria": 2, "prompts_per_step": 1,
        })
    runs = []
    if args.steps_from:
        # Finished runs instead of new ones (e.g. reports/demo after `make demo`): the same numbers, no training.
        from .step import read_run

        found = sorted(p.parent for p in Path(args.steps_from).glob("**/train_log.jsonl"))
        if not found:
            raise SystemExit(f"--steps-from {args.steps_from}: no train_log.jsonl below it")
        runs = [read_run(d, progress=_say) for d in found]
        inputs: dict[str, Any] = {"from_runs": [str(d) for d in found]}
    else:
        for method in args.methods:
            _say(f"step breakdown: {method}, {args.steps} steps")
            runs.append(run_method(method, work, progress=_say, **overrides))
        inputs = {"methods": args.methods, "steps": args.steps, "overrides": overrides}
    summary = summarise_steps(runs)
    return {
        "step_breakdown": write_result(out, "step_breakdown", {"inputs": inputs, **{
            k: v for k, v in summary.items() if k != "cost_per_reward"}}, facts),
        "cost_per_reward": write_result(out, "cost_per_reward", {"inputs": inputs,
                                                                 "per_method": summary["cost_per_reward"]}, facts),
    }


def run_rate_limit(out: Path, facts: dict, args: argparse.Namespace) -> dict[str, Path]:
    """One pass of judge calls through the latency proxy under `--rate-limit` requests per `--rate-window` s; needs
    no model (the upstream is the stub judge)."""
    from .ratelimit import bench_rate_limit

    result = bench_rate_limit(limit=args.rate_limit, window_s=args.rate_window, groups=args.rate_groups,
                              latency_s=args.latency, progress=_say)
    return {"rate_limit": write_result(out, "rate_limit", result, facts)}


def run_multiprocess(out: Path, facts: dict, args: argparse.Namespace) -> dict[str, Path]:
    """The same ropd steps in `--mp-processes` CPU training processes and in one (`bench.multiprocess`)."""
    from .multiprocess import bench_multiprocess

    sizes = {"max_steps": args.mp_steps, "n_rollouts": args.mp_rollouts, "rollout_max_tokens": args.mp_tokens,
             "student_model": args.mp_student}
    result = bench_multiprocess(processes=args.mp_processes, work=out / "work" / "multiprocess",
                                judge_model=args.judge_model, progress=_say, **sizes)
    return {"multiprocess": write_result(out, "multiprocess", result, facts)}


def _timed_against_target(name: str, timed: Callable[..., dict], source: str, out: Path,
                          facts: dict) -> dict[str, Path]:
    """A bench that reads what another command left (`source`) and holds it, with the llama-server build from its
    stamp, against a target; no run. Without `source` there is nothing to time: said, and skipped."""
    try:
        result = timed(source, build_s=(facts.get("llama_server") or {}).get("build_s"))
    except FileNotFoundError as exc:
        _say(f"{name} skipped: {exc}")
        return {}
    return {name: write_result(out, name, result, facts)}


def run_demo_time(out: Path, facts: dict, args: argparse.Namespace) -> dict[str, Path]:
    """`make demo`'s finished batch (`--demo-from`) against its budget on 2 cores (15 minutes with native bf16, 20
    without), and the set-up before it."""
    from .demo_time import demo_time

    return _timed_against_target("demo_time", demo_time, args.demo_from, out, facts)


def run_tests_time(out: Path, facts: dict, args: argparse.Namespace) -> dict[str, Path]:
    """`make test`'s JUnit report (`--junit-from`) against the 20-minute budget of a full suite on 2 cores."""
    from .tests_time import suite_time

    return _timed_against_target("tests_time", suite_time, args.junit_from, out, facts)


# ---------------------------------------------------------------------------------------------------------------
# index.html


def _read(out: Path, name: str) -> dict | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fig_div(fig: Any) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False)


def _throughput_fig(data: dict) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for key, label in (("local", "local server as it is"),
                       ("remote_latency", f"replayed, {data['inputs']['latency_s']:g} s latency per call")):
        levels = list(data[key])
        fig.add_bar(name=label, x=[f"concurrency {lv}" for lv in levels],
                    y=[data[key][lv]["groups_per_s_median"] for lv in levels],
                    customdata=[(data[key][lv].get("passes") or [{}])[0].get("groups") for lv in levels],
                    hovertemplate="%{y:.3f} groups/s over %{customdata} groups")
    fig.update_layout(title="Judge throughput (groups/s, median)", barmode="group", yaxis_title="groups / s",
                      height=380)
    return fig


def _granularity_fig(data: dict) -> Any:
    from plotly.subplots import make_subplots

    modes = list(data["summary"])
    fig = make_subplots(rows=1, cols=3, subplot_titles=("calls / group", "tokens / group", "wall s / group"))
    for col, key in enumerate(("calls_per_group", "tokens_per_group", "wall_s_per_group"), start=1):
        fig.add_bar(x=modes, y=[data["summary"][m][key] for m in modes], showlegend=False, row=1, col=col)
    fig.update_layout(title="Verification granularity (median per group)", height=380)
    return fig


def _breakdown_fig(data: dict) -> Any:
    import plotly.graph_objects as go

    from .step import PHASES

    methods = list(data["per_method"])
    fig = go.Figure()
    for phase in PHASES:
        fig.add_bar(name=phase, x=methods,
                    y=[data["per_method"][m]["seconds_median"].get(phase) for m in methods])
    fig.update_layout(title="Step time by phase (s, median over steps)", barmode="stack", height=380,
                      yaxis_title="seconds")
    return fig


def _cost_fig(data: dict) -> Any:
    import plotly.graph_objects as go

    methods = list(data["per_method"])
    fig = go.Figure(go.Bar(x=methods, y=[data["per_method"][m]["teacher_tokens_per_rollout"] for m in methods]))
    fig.update_layout(title="Teacher-side tokens per scored rollout", height=380, yaxis_title="tokens")
    return fig


def _rate_limit_fig(data: dict) -> Any:
    import plotly.graph_objects as go

    times = data.get("arrivals_s") or []
    limit, window = data["inputs"]["limit"], data["inputs"]["window_s"]
    end = max(times[-1] if times else 0.0, window) * 1.05
    fig = go.Figure()
    fig.add_scatter(x=times, y=list(range(1, len(times) + 1)), mode="lines+markers", line_shape="hv",
                    name="requests arrived at the proxy")
    edges = [k * window for k in range(int(end // window) + 1)]
    fig.add_scatter(x=edges + [end], y=[limit * (k + 1) for k in range(len(edges))] + [limit * len(edges)],
                    mode="lines", line_shape="hv", line_dash="dash", name=f"{limit} per {window:g} s from the start")
    fig.update_layout(title="Requests arrived at the endpoint under a requests/minute limit", height=380,
                      xaxis_title="seconds since the first request", yaxis_title="requests (cumulative)")
    return fig


def _multiprocess_fig(data: dict) -> Any:
    import plotly.graph_objects as go

    from .step import PHASES

    runs = data["runs"]
    labels = [f"{r['processes']} process{'es' if r['processes'] > 1 else ''}" for r in runs.values()]
    fig = go.Figure()
    for phase in PHASES:
        fig.add_bar(name=phase, x=labels, y=[r["seconds_median"].get(phase) for r in runs.values()])
    fig.update_layout(title="ropd step time by phase, one process vs several (s, median over steps)",
                      barmode="stack", height=380, yaxis_title="seconds")
    return fig


def _ratios_table(rows: list[tuple[str, Any]]) -> str:
    def fmt(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else escape(str(value))

    body = "".join(f"<tr><td>{escape(k)}</td><td>{fmt(v)}</td></tr>" for k, v in rows)
    return f"<table><tr><th>measure</th><th>value</th></tr>{body}</table>"


def headline(out: Path) -> list[tuple[str, Any]]:
    """The ratios quoted in the report, from whatever benchmark JSON files exist."""
    rows: list[tuple[str, Any]] = []
    if data := _read(out, "judge_throughput"):
        for key, value in data["ratios"].items():
            rows.append((f"judge throughput {key.replace('_', ' ')}", value))
    if data := _read(out, "verify_granularity"):
        for mode, r in data["ratios"].items():
            rows.append((f"{mode.replace('_', ' ')}: tokens ratio", r["tokens"]))
            rows.append((f"{mode.replace('_', ' ')}: calls ratio", r["calls"]))
        rows.append(("cheapest verification mode (tokens)", data["cheapest_by_tokens"]))
    if data := _read(out, "cache_replay"):
        rows.append(("cache replay: warm HTTP requests", data["warm_http_requests"]))
        rows.append(("cache replay: speed-up (median)", data["speedup_median"]))
    if data := _read(out, "step_breakdown"):
        for method, m in data["per_method"].items():
            rows.append((f"{method}: step s (median)", m["seconds_median"].get("step")))
            if m.get("reward_over_generation") is not None:
                rows.append((f"{method}: reward time / generation time", m["reward_over_generation"]))
    if data := _read(out, "cost_per_reward"):
        for method, m in data["per_method"].items():
            rows.append((f"{method}: teacher-side tokens per rollout", m["teacher_tokens_per_rollout"]))
    if data := _read(out, "multiprocess"):
        for key in ("step_s", "generation_s", "wall_s"):
            rows.append((f"multiprocess: {key.replace('_s', '')} time, {data['inputs']['processes']} processes / 1",
                         data["ratios"].get(key)))
    if data := _read(out, "demo_time"):
        rows.append((f"make demo: s from the first run's start to the last one's end (target "
                     f"{data['inputs']['target_s']:g})", data["demo_s"]))
        rows.append(("make demo: target met (a cold run, every run done)",
                     data["target_met"] if data["training_judging_cold"] else "not a cold run"))
        setup = data["setup"]
        parts = " + ".join("—" if v is None else f"{v:g}" for k, v in setup.items() if k != "total_s")
        rows.append(("set-up before it: s (venv + llama-server build + models)",
                     setup["total_s"] if setup["total_s"] is not None else parts))
    if data := _read(out, "tests_time"):
        rows.append((f"make test: s of pytest ({data['tests']} tests)", data["suite_s"]))
        rows.append((f"make test + llama-server build: s (target {data['inputs']['target_s']:g})",
                     data["suite_plus_build_s"]))
        rows.append(("make test: target met (no failure or error)",
                     data["target_met"] if data["target_met"] is not None else "no verdict"))
    if data := _read(out, "rate_limit"):
        s = data["at_proxy"]
        rows.append((f"rate limit: most requests in any {s['window_s']:g} s at the endpoint (limit {s['limit']})",
                     s["max_in_window"]))
        rows.append(("rate limit: efficiency (least span the limit allows / span)", s["efficiency"]))
    return rows


def write_index(out: str | Path = DEFAULT_OUT) -> Path:
    """reports/bench/index.html from the JSON files in `out` (any subset of them)."""
    from ..batch.report import _plotly_script

    out = Path(out)
    sections = []
    builders: dict[str, Callable[[dict], Any]] = {
        "judge_throughput": _throughput_fig, "verify_granularity": _granularity_fig,
        "step_breakdown": _breakdown_fig, "cost_per_reward": _cost_fig, "rate_limit": _rate_limit_fig,
        "multiprocess": _multiprocess_fig,
    }
    for name, build in builders.items():
        data = _read(out, name)
        if data is None:
            continue
        sections.append(f'<h2 id="{name}">{escape(name.replace("_", " "))}</h2>'
                        f'<p><a href="{name}.json">{name}.json</a> · created {escape(data.get("created", ""))}</p>'
                        f'{_fig_div(build(data))}'
                        + (f"<p>{escape(data['reading'])}</p>" if data.get("reading") else ""))
    links = [f'<li><a href="{name}">{name}</a>: {escape(what)}</li>' for name, what in LINKED.items()
             if (out / name).exists()]
    other = "".join(links) or "<li>none yet</li>"
    facts = next((d["machine"] for n in BENCHES + ("cost_per_reward",) if (d := _read(out, n))), {})
    page = (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ropd-kit benchmarks</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f3f3f3}</style>"
        f"{_plotly_script()}</head><body><h1>ropd-kit benchmarks</h1>"
        f"<p>Machine: {escape(json.dumps({k: facts[k] for k in MACHINE_SHOWN if k in facts}))}</p>"
        f"<h2>Ratios</h2>{_ratios_table(headline(out))}{''.join(sections)}"
        f"<h2>Other benchmarks</h2><ul>{other}</ul></body></html>"
    )
    target = out / "index.html"
    target.write_text(page)
    return target


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ropd_kit.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--judge-model", default="smollm2-135m-instruct")
    parser.add_argument("--groups", type=int, default=16, help="groups judged per throughput pass")
    parser.add_argument("--refs", type=int, default=4, help="teacher refs per group")
    parser.add_argument("--rollouts", type=int, default=8, help="student rollouts per group")
    parser.add_argument("--answer-tokens", type=int, default=96, help="max tokens of each ref and rollout")
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--local-groups", choices=("auto", "all"), default="auto",
                        help="groups per pass on the local server: auto = max(4, concurrency), all = --groups")
    parser.add_argument("--max-criteria", type=int, default=6, help="rubric size cap of the judging benches (demo's)")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per call of the remote stand-in")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the cheap measurements")
    parser.add_argument("--repeats-local", type=int, default=1, help="repeats of the measurements on the server")
    parser.add_argument("--granularity-groups", type=int, default=1)
    parser.add_argument("--step-groups", type=int, default=2, help="groups in the cache-replay step")
    parser.add_argument("--step-rollouts", type=int, default=4, help="rollouts per group in the cache-replay step")
    parser.add_argument("--step-judge-model", default="qwen2.5-coder-1.5b-instruct",
                        help="teacher side of the cache-replay step")
    parser.add_argument("--methods", type=lambda s: s.split(","), default=["ropd", "lopd", "rlvr", "judge"])
    parser.add_argument("--steps", type=int, default=1, help="training steps per method in the step breakdown")
    parser.add_argument("--steps-from", default=None, metavar="DIR",
                        help="step breakdown of the finished runs below DIR (e.g. reports/demo) instead of new runs")
    parser.add_argument("--rate-limit", type=int, default=8, help="requests per window in the rate_limit bench")
    parser.add_argument("--rate-window", type=float, default=60.0,
                        help="the rate_limit bench's window in seconds (60: requests/minute as configured)")
    parser.add_argument("--rate-groups", type=int, default=12, help="groups judged (2 requests each) in rate_limit")
    parser.add_argument("--mp-processes", type=int, default=2, help="training processes in the multiprocess bench")
    parser.add_argument("--mp-steps", type=int, default=2, help="ropd steps per run in the multiprocess bench")
    parser.add_argument("--mp-rollouts", type=int, default=4, help="rollouts per group in the multiprocess bench")
    parser.add_argument("--mp-tokens", type=int, default=64, help="max tokens per rollout in the multiprocess bench")
    parser.add_argument("--mp-student", default="smollm2-135m-instruct", help="student of the multiprocess bench")
    parser.add_argument("--demo-from", default=str(REPO / "reports" / "demo"), metavar="DIR",
                        help="the finished `make demo` batch that demo_time reads")
    parser.add_argument("--junit-from", default=str(REPO / "reports" / "tests" / "junit.xml"), metavar="FILE",
                        help="the JUnit XML report of `make test` that tests_time reads")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and SmolLM2 everywhere (minutes)")
    args = parser.parse_args(argv)
    if args.quick:
        args.groups, args.refs, args.rollouts, args.answer_tokens = 4, 2, 4, 48
        args.levels, args.latency, args.repeats, args.repeats_local = [1, 4], 0.5, 1, 1
        args.granularity_groups, args.step_groups, args.steps = 1, 2, 1
        args.step_rollouts, args.step_judge_model = 2, "smollm2-135m-instruct"
        args.rate_limit, args.rate_window, args.rate_groups = 4, 10.0, 4
        args.mp_steps, args.mp_rollouts, args.mp_tokens = 1, 2, 16
    unknown = set(args.only.split(",")) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(BENCHES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.only.split(",")
    out = Path(args.out)
    facts = machine_facts()
    started = time.perf_counter()
    written: dict[str, Path] = {}
    judge = [n for n in names if n not in NOT_JUDGE]
    if judge:
        written.update(run_judge_benches(judge, out, facts, args))
    if "step_breakdown" in names:
        written.update(run_step_bench(out, facts, args))
    if "rate_limit" in names:
        written.update(run_rate_limit(out, facts, args))
    if "multiprocess" in names:
        written.update(run_multiprocess(out, facts, args))
    if "demo_time" in names:
        written.update(run_demo_time(out, facts, args))
    if "tests_time" in names:
        written.update(run_tests_time(out, facts, args))
    index = write_index(out)
    for name, value in headline(out):
        print(f"{name}: {value:.3g}" if isinstance(value, float) else f"{name}: {value}")
    print(f"\nwritten: {', '.join(str(p) for p in written.values())}")
    print(f"report: {index.resolve()} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
