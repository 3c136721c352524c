"""Benchmarks of ROPD's judging (stages 3–4): throughput against concurrency, verification granularity, cache replay.

In: groups of real answers (per task: `n_teacher_refs` teacher references and `n_rollouts` student rollouts, made
once by the local server into `<work>/inputs` and kept in the LLM cache), a judge model served by llama-server.
Out: one JSON per benchmark under `reports/bench/` (`bench.py` writes them and the index):

- `judge_throughput`: rubric induction + blind verification of every group, with at most 1, 4 or 16 groups (and
  requests) in flight; one rubric call and one verifier call per group (a group whose rubric is unusable is
  verified against `fallback_rubric`, so a small judge model still pays for both stages). (a) against the local
  server as it is: on a small CPU the server is the ceiling (tokens/s per pass say how much batching still buys).
  (b) through `FaultProxy` in replay mode with a fixed latency per call: the answers are the server's own, recorded
  in (a), so only the latency is left and the ratio measures what our client overlaps.
- `verify_granularity`: one verifier call per group (the default) vs one per answer vs one per (answer, criterion),
  and soft verdicts (one request per (answer, criterion), p(true) read from log-probabilities, an answer's criteria
  asked one after another): calls, prompt + completion tokens (and the prompt tokens the server took from its prompt
  cache) and wall time per group, on the same rubrics.
- `cache_replay`: the reward of one ropd step (teacher refs + judging of its groups, `RubricReward.judge_groups`)
  with an empty cache, then again with the cache it filled: HTTP requests and the speed-up.

Every judging run here uses clients without the cache (except cache_replay's warm pass), so every call is real.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .. import rundir
from ..config import RunConfig
from ..data import Task, load_tasks
from ..llm import Clients, make_clients, run_sync

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Group:
    """One prompt's answers as the judges see them."""

    task: Task
    teacher_refs: list[str]
    rollouts: list[str]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    return None if a is None or b in (None, 0) else a / b


def judge_params(model: str, work: Path, **sizes: Any) -> dict[str, Any]:
    """Flat run parameters for the bench: one local model in every role, the shipped arithmetic tasks."""
    return {
        "run_dir": str(work / "inputs"),
        "tasks_path": str(REPO / "data" / "arith_train.jsonl"),
        "seed": 0,
        **{f"{role}_model": model for role in ("teacher", "rubricator", "verifier", "student")},
        # Timeouts long enough that a busy CPU server never turns into retries (which would be counted as work).
        **{f"{role}_timeout_s": 900 for role in ("teacher", "rubricator", "verifier", "student")},
        **sizes,
    }


def make_inputs(config: RunConfig) -> list[Group]:
    """Teacher refs and student rollouts for `config.n_tasks` tasks (the cache makes a re-run free)."""
    from ..pipeline import rollouts_stage, stage_tasks, teacher_refs_stage

    stage_tasks(config)
    teacher_refs_stage(config)
    rollouts_stage(config)
    return read_groups(config.path)


def read_groups(run_dir: Path) -> list[Group]:
    """The groups of a run directory's step-0 teacher refs and rollouts, in task order; answers that failed are
    left out (they would be judged as empty)."""
    tasks = load_tasks(run_dir / rundir.TASKS)
    refs: dict[str, list[str]] = {}
    for r in rundir.read_jsonl(run_dir / rundir.TEACHER_REFS):
        if r.get("text"):
            refs.setdefault(r["task_id"], []).append(r["text"])
    rollouts: dict[str, list[str]] = {}
    for r in rundir.read_jsonl(run_dir / rundir.ROLLOUTS):
        if r.get("text") and r.get("step", 0) == 0:
            rollouts.setdefault(r["task_id"], []).append(r["text"])
    return [Group(t, refs.get(t.id, []), rollouts.get(t.id, [])) for t in tasks if refs.get(t.id)]


def _with_concurrency(config: RunConfig, n: int, base_url: str | None = None) -> RunConfig:
    updates = {}
    for role in ("rubricator", "verifier", "teacher"):
        endpoint = config.endpoint(role)
        changes: dict[str, Any] = {"max_concurrency": n}
        if base_url is not None:
            changes["base_url"] = base_url
        updates[role] = endpoint.model_copy(update=changes)
    return config.model_copy(update={**updates, "use_cache": False})


async def _judge_one(group: Group, clients: Clients, config: RunConfig) -> dict[str, Any]:
    """Rubric induction, then blind verification of all of the group's answers, as the reward does it. An unusable
    rubric is replaced by `fallback_rubric`, so that every group pays for one verification whatever the judge model:
    a small model that writes no usable rubric would otherwise turn the benchmark into rubric induction alone."""
    from ..pipeline import _group_seed
    from ..verify import verify_group_async

    rubric, source = await _rubric_for(group, clients, config)
    verdicts = await verify_group_async(group.task.prompt, rubric, group.teacher_refs, group.rollouts,
                                        clients.verifier, config, seed=_group_seed(config, group.task.id, 0))
    return {"rubric": source, "failed": verdicts.failed}


async def _judge_groups(groups: list[Group], clients: Clients, config: RunConfig, concurrency: int) -> dict[str, Any]:
    """Judge every group with at most `concurrency` groups in flight; wall time and outcome."""
    gate = asyncio.Semaphore(concurrency)

    async def one(group: Group):
        async with gate:
            return await _judge_one(group, clients, config)

    started = time.perf_counter()
    results = await asyncio.gather(*(one(g) for g in groups))
    wall = time.perf_counter() - started
    by_role = clients.stats.snapshot()
    usage = clients.stats.totals(by_role)
    tokens = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "wall_s": round(wall, 3),
        "groups": len(groups),
        "groups_per_s": len(groups) / wall if wall > 0 else None,
        "induced_rubrics": sum(r["rubric"] == "induced" for r in results),
        "failed_groups": sum(r["failed"] for r in results),
        "http_requests": usage["http_requests"],
        "http_requests_by_role": {role: u.get("http_requests", 0) for role, u in by_role.items()
                                  if u.get("http_requests")},
        "tokens": tokens,
        "tokens_per_s": tokens / wall if wall > 0 else None,
    }


def judge_pass(groups: list[Group], config: RunConfig, concurrency: int, base_url: str | None = None) -> dict:
    """One timed pass over `groups` with fresh, cache-less clients capped at `concurrency` requests per role."""
    run_config = _with_concurrency(config, concurrency, base_url)

    async def go():
        async with make_clients(run_config) as clients:
            return await _judge_groups(groups, clients, run_config, concurrency)

    return run_sync(go())


def _levels_summary(passes: dict[int, list[dict]]) -> dict[str, Any]:
    by_level = {
        str(level): {
            "groups_per_s_median": median([p["groups_per_s"] for p in runs if p["groups_per_s"]]),
            "wall_s_median": median([p["wall_s"] for p in runs]),
            "tokens_per_s_median": median([p["tokens_per_s"] for p in runs if p.get("tokens_per_s")]),
            "failed_groups": [p["failed_groups"] for p in runs],
            "induced_rubrics": [p["induced_rubrics"] for p in runs],
            "http_requests": [p["http_requests"] for p in runs],
            "passes": runs,
        }
        for level, runs in passes.items()
    }
    base = by_level[str(min(passes))]["groups_per_s_median"]
    for row in by_level.values():
        row["speedup_vs_1"] = ratio(row["groups_per_s_median"], base)
    return by_level


def local_pass_groups(level: int, n_groups: int) -> int:
    """Groups judged by one pass against the local server at `level`: one wave, `level` groups in flight (at
    least 4), at most all of them. The server is the ceiling, so its rate at concurrency 1 is the same over 4
    groups as over 16, and the full set is paid only where it is needed to fill the slots."""
    return min(n_groups, max(4, level))


def bench_judge_throughput(
    groups: list[Group], config: RunConfig, *, levels: tuple[int, ...] = (1, 4, 16), repeats_local: int = 1,
    repeats_remote: int = 3, latency_s: float = 1.0, local_groups: str = "auto", rubric_attempts: int = 1,
    progress: Any = print,
) -> dict[str, Any]:
    """(a) the local server as it is, (b) the same answers replayed with `latency_s` per call. `config` must be
    served (real base URLs).

    Every group is one rubric call (`rubric_attempts`: a capable Rubricator's usual case) and one verifier call
    (`_judge_one`), whether or not the judge model's rubric was usable.

    `local_groups`: "all" judges every group at every level in (a); "auto" judges `local_pass_groups(level)` of
    them (a rate needs no more). (b) judges, at every level, the groups of (a)'s largest pass: all of them were
    recorded there."""
    from .faultproxy import FaultProxy

    if local_groups not in ("auto", "all"):
        raise ValueError(f"local_groups must be 'auto' or 'all', got {local_groups!r}")
    config = config.model_copy(update={"rubric_attempts": rubric_attempts})
    upstream = config.verifier.base_url
    local: dict[int, list[dict]] = {}
    sizes = {level: len(groups) if local_groups == "all" else local_pass_groups(level, len(groups))
             for level in levels}
    covered = max(sizes.values())
    kept = max(level for level in levels if sizes[level] == covered)
    # (a) goes through the proxy too, recording, so that (b) can replay exactly these answers. Only the first pass
    # over all `covered` groups is kept: the server's text can differ between passes (batching changes its
    # arithmetic), and a reply from one pass followed by a request from another is a chain (b) could not replay.
    with FaultProxy(upstream, recording="record") as recorder:
        for level in levels:
            n = sizes[level]
            for rep in range(repeats_local):
                if level == kept and rep == 0:
                    recorder.recordings.clear()
                p = judge_pass(groups[:n], config, level, recorder.base_url)
                progress(f"judge throughput (a) local, concurrency {level}, repeat {rep + 1}: "
                         f"{p['groups_per_s']:.3f} groups/s ({p['wall_s']:.0f} s, "
                         f"{p['induced_rubrics']} of {p['groups']} rubrics usable)")
                local.setdefault(level, []).append(p)
        recordings = dict(recorder.recordings)
    remote: dict[int, list[dict]] = {}
    with FaultProxy(upstream, recording="replay", latency_s=latency_s) as replayer:
        replayer.recordings.update(recordings)
        for level in levels:
            for rep in range(repeats_remote):
                before = replayer.snapshot()
                p = judge_pass(groups[:covered], config, level, replayer.base_url)
                after = replayer.snapshot()
                # A request the recording lacks goes to the real server (and costs its time): counted, not hidden.
                p["not_replayed"] = (after["requests"] - before["requests"]) - (after["replayed"] - before["replayed"])
                progress(f"judge throughput (b) {latency_s:g} s latency, concurrency {level}, repeat {rep + 1}: "
                         f"{p['groups_per_s']:.3f} groups/s ({p['wall_s']:.1f} s, {p['not_replayed']} not replayed)")
                remote.setdefault(level, []).append(p)
    top = str(max(levels))
    a, b = _levels_summary(local), _levels_summary(remote)
    return {
        "bench": "judge_throughput",
        "inputs": {"groups": len(groups), "answers_per_group": _answers_per_group(groups), "levels": list(levels),
                   "local_groups": local_groups, "replayed_groups": covered, "rubric_attempts": rubric_attempts,
                   "repeats_local": repeats_local, "repeats_remote": repeats_remote, "latency_s": latency_s,
                   "model": config.verifier.model, "recorded_requests": len(recordings)},
        "local": a,
        "remote_latency": b,
        "ratios": {
            f"local_{top}_vs_1": a[top]["speedup_vs_1"],
            f"remote_{top}_vs_1": b[top]["speedup_vs_1"],
        },
        "target": {"remote_speedup_at_16_vs_1": 8.0, "met": (b.get("16", {}).get("speedup_vs_1") or 0) >= 8.0},
        "reading": _reading(a, b, top, latency_s),
    }


def _reading(local: dict, remote: dict, top: str, latency_s: float) -> str:
    """One sentence with the numbers that say where the ceiling is."""
    low = min(local, key=int)
    speed_local, speed_remote = local[top]["speedup_vs_1"], remote[top]["speedup_vs_1"]
    lt, ht = local[low].get("tokens_per_s_median"), local[top].get("tokens_per_s_median")
    tokens = f"{lt:.0f} tokens/s at concurrency {low}, {ht:.0f} at {top}" if lt and ht else "tokens/s not measured"
    if speed_local is None or speed_remote is None:
        return "Not enough passes for a reading."
    where = ("the server's compute, not the client, is the ceiling" if speed_local < 0.25 * speed_remote
             else "the server still gains from concurrency")
    return (f"Local server: {speed_local:.2f}x groups/s at concurrency {top} vs {low} ({tokens}): {where}. "
            f"The same answers with only {latency_s:g} s of latency per call: {speed_remote:.1f}x, what the client "
            f"overlaps.")


def _answers_per_group(groups: list[Group]) -> float:
    return statistics.fmean(len(g.teacher_refs) + len(g.rollouts) for g in groups) if groups else 0.0


# ---------------------------------------------------------------------------------------------------------------
# Verification granularity


def fallback_rubric(task: Task):
    """A fixed rubric for an arithmetic task, used when the judge model writes none: the granularity benchmark
    measures what verification costs, and needs some rubric of the usual size to verify against."""
    from ..rubrics import Criterion, Rubric

    return Rubric(criteria=[
        Criterion(id="final", text=f"The final answer is {task.answer}.", points=5, category="correctness"),
        Criterion(id="steps", text="Each operation of the story is written out as a calculation.", points=2,
                  category="reasoning"),
        Criterion(id="order", text="The operations are applied in the order the story tells them.", points=2,
                  category="reasoning"),
        Criterion(id="format", text="The last line has the form 'Answer: <number>'.", points=1, category="format"),
    ])


async def _rubric_for(group: Group, clients: Clients, config: RunConfig):
    from ..rubrics import induce_rubric_async

    outcome = await induce_rubric_async(group.task.prompt, group.teacher_refs, group.rollouts, clients.rubricator,
                                        config)
    if outcome.rubric is not None:
        return outcome.rubric, "induced"
    return fallback_rubric(group.task), "fallback"


async def _verify_mode(group: Group, rubric: Any, mode: str, config: RunConfig, clients: Clients) -> dict[str, Any]:
    from ..rubrics import Rubric
    from ..verify import verify_group_async

    n_answers = len(group.teacher_refs) + len(group.rollouts)
    batched = config.model_copy(update={"verifier_mode": "batched"})  # the matrix modes, whatever "auto" would read
    started = time.perf_counter()
    if mode == "per_group":
        cfg = batched.model_copy(update={"max_answers_per_call": max(n_answers, 1)})
        outcomes = [await verify_group_async(group.task.prompt, rubric, group.teacher_refs, group.rollouts,
                                             clients.verifier, cfg, seed=0)]
    elif mode == "per_answer":
        cfg = batched.model_copy(update={"max_answers_per_call": 1})
        outcomes = [await verify_group_async(group.task.prompt, rubric, group.teacher_refs, group.rollouts,
                                             clients.verifier, cfg, seed=0)]
    elif mode == "per_answer_criterion":
        cfg = batched.model_copy(update={"max_answers_per_call": 1})
        outcomes = await asyncio.gather(*(
            verify_group_async(group.task.prompt, Rubric(criteria=[criterion]), group.teacher_refs, group.rollouts,
                               clients.verifier, cfg, seed=0)
            for criterion in rubric.criteria
        ))
    elif mode == "soft":
        cfg = config.model_copy(update={"verifier_mode": "soft"})
        outcomes = [await verify_group_async(group.task.prompt, rubric, group.teacher_refs, group.rollouts,
                                             clients.verifier, cfg, seed=0)]
    else:
        raise ValueError(f"unknown verification mode {mode!r}")
    wall = time.perf_counter() - started
    usage = clients.stats.totals()
    return {
        "wall_s": round(wall, 3),
        "calls": usage["http_requests"],
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "tokens": usage["prompt_tokens"] + usage["completion_tokens"],
        "reused_prompt_tokens": usage["reused_prompt_tokens"],
        "failed": any(o.failed for o in outcomes),
        "n_answers": n_answers,
        "n_criteria": len(rubric.criteria),
    }


MODES = ("per_group", "per_answer", "per_answer_criterion", "soft")


def bench_verify_granularity(
    groups: list[Group], config: RunConfig, *, repeats: int = 2, concurrency: int = 4, progress: Any = print
) -> dict[str, Any]:
    """The same rubric per group verified three ways; per group and mode the medians over `repeats`."""
    run_config = _with_concurrency(config, concurrency)

    # One try: the rubric is an input here, not what is measured (a small judge's unusable one is replaced).
    once = config.model_copy(update={"rubric_attempts": 1})

    async def rubrics():
        async with make_clients(once) as clients:  # cached: a re-run asks for the rubric no more
            return await asyncio.gather(*(_rubric_for(g, clients, once) for g in groups))

    found = run_sync(rubrics())
    rows: list[dict] = []
    for g, (group, (rubric, source)) in enumerate(zip(groups, found)):
        if source == "fallback":
            progress(f"verify granularity: the judge wrote no usable rubric for group {g}; using a fixed one")
        for mode in MODES:
            for rep in range(repeats):
                async def go():
                    async with make_clients(run_config) as clients:
                        return await _verify_mode(group, rubric, mode, run_config, clients)

                row = {"group": g, "task_id": group.task.id, "mode": mode, "repeat": rep, "rubric": source,
                       **run_sync(go())}
                progress(f"verify granularity group {g} {mode}: {row['calls']} calls, {row['tokens']} tokens, "
                         f"{row['wall_s']:.1f} s")
                rows.append(row)
    summary: dict[str, Any] = {}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        summary[mode] = {
            "calls_per_group": median([r["calls"] for r in mine]),
            "tokens_per_group": median([r["tokens"] for r in mine]),
            "prompt_tokens_per_group": median([r["prompt_tokens"] for r in mine]),
            "completion_tokens_per_group": median([r["completion_tokens"] for r in mine]),
            "reused_prompt_tokens_per_group": median([r["reused_prompt_tokens"] for r in mine]),
            "wall_s_per_group": median([r["wall_s"] for r in mine]),
            "failed": sum(r["failed"] for r in mine),
        }
    base = summary["per_group"]
    cheapest = min(MODES, key=lambda m: summary[m]["tokens_per_group"] or float("inf"))
    return {
        "bench": "verify_granularity",
        "inputs": {"groups": len(groups), "answers_per_group": _answers_per_group(groups), "repeats": repeats,
                   "concurrency": concurrency, "model": config.verifier.model},
        "summary": summary,
        "ratios": {
            f"{mode}_vs_per_group": {
                "calls": ratio(summary[mode]["calls_per_group"], base["calls_per_group"]),
                "tokens": ratio(summary[mode]["tokens_per_group"], base["tokens_per_group"]),
                "wall_s": ratio(summary[mode]["wall_s_per_group"], base["wall_s_per_group"]),
            }
            for mode in MODES[1:]
        },
        "default_mode": "per_group",
        "cheapest_by_tokens": cheapest,
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------------------------------
# Cache replay


@contextmanager
def _scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="ropd-bench-cache-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _reward_pass(groups: list[Group], config: RunConfig) -> dict[str, Any]:
    from ..reward import RubricReward

    n = len(groups[0].rollouts)
    reward = RubricReward(config, None, None, num_generations=n)
    try:
        started = time.perf_counter()
        results = run_sync(reward.judge_groups([g.task for g in groups], [g.rollouts for g in groups], step=0))
        wall = time.perf_counter() - started
        snapshot = reward.clients.stats.snapshot()
        totals = reward.clients.stats.totals(snapshot)
    finally:
        reward.close()
    return {
        "wall_s": round(wall, 3),
        "http_requests": totals["http_requests"],
        "cache_hits": totals["cache_hits"],
        "calls": totals["calls"],
        "http_requests_by_role": {role: row["http_requests"] for role, row in snapshot.items()},
        "failed_groups": sum(r.failed for r in results),
        "scores": [r.scores for r in results],
    }


def bench_cache_replay(
    groups: list[Group], config: RunConfig, *, repeats: int = 3, cold_repeats: int = 1, cold_retries: int = 1,
    progress: Any = print,
) -> dict[str, Any]:
    """`cold_repeats` times: a fresh cache and reference index, one cold pass, then `repeats` warm passes over the
    same groups. Every reply is cached, a rejected one with its rejection (the retry that quotes it replays too), so
    warm requests are 0 unless a cold call failed outright (an endpoint error leaves no reply to replay):
    `warm_http_requests_by_role` says which role asked again. The server's text varies from run to
    run (batching), so a cold pass whose warm passes asked again is redone on a fresh cache up to `cold_retries`
    times; the redone ones stay in the row (`redone`), and a last one that still asks again is reported as it is."""
    rows = []
    for rep in range(cold_repeats):
        redone: list[dict] = []
        for attempt in range(1 + cold_retries):
            with _scratch() as folder:
                cfg = config.model_copy(update={"use_cache": True, "cache_dir": str(folder / "llm"),
                                                "ref_index_dir": str(folder / "refs")})
                cold = _reward_pass(groups, cfg)
                warms = [_reward_pass(groups, cfg) for _ in range(repeats)]
            asked_again = [w["http_requests"] for w in warms]
            if not any(asked_again) or attempt == cold_retries:
                break
            redone.append({"cold": cold, "warm_http_requests": asked_again})
            progress(f"cache replay {rep + 1}: warm passes asked again ({asked_again} requests: a cold "
                     f"call failed, so nothing was cached for it); a fresh cold pass")
        warm_wall = median([w["wall_s"] for w in warms])
        row = {"repeat": rep, "cold": cold, "warm": warms, "warm_wall_s_median": warm_wall,
               "same_rewards": all(w["scores"] == cold["scores"] for w in warms),
               "speedup": ratio(cold["wall_s"], warm_wall), "redone": redone}
        rows.append(row)
        progress(f"cache replay {rep + 1}: cold {cold['wall_s']:.1f} s / {cold['http_requests']} requests, warm "
                 f"{warm_wall:.3f} s / {[w['http_requests'] for w in warms]} requests")
    warm_requests = [w["http_requests"] for r in rows for w in r["warm"]]
    by_role: dict[str, int] = {}
    for r in rows:
        for w in r["warm"]:
            for role, n in w["http_requests_by_role"].items():
                by_role[role] = by_role.get(role, 0) + n
    return {
        "bench": "cache_replay",
        "inputs": {"groups": len(groups), "rollouts_per_group": len(groups[0].rollouts) if groups else 0,
                   "n_teacher_refs": config.n_teacher_refs, "cold_repeats": cold_repeats, "warm_repeats": repeats,
                   "cold_retries": cold_retries,
                   "model": config.verifier.model,
                   "what": "RubricReward.judge_groups of one step: teacher refs + rubric induction + verification"},
        "cold_wall_s_median": median([r["cold"]["wall_s"] for r in rows]),
        "warm_wall_s_median": median([w["wall_s"] for r in rows for w in r["warm"]]),
        "cold_http_requests": [r["cold"]["http_requests"] for r in rows],
        "cold_failed_groups": [r["cold"]["failed_groups"] for r in rows],
        "warm_http_requests": warm_requests,
        "warm_http_requests_by_role": by_role,
        "speedup_median": median([r["speedup"] for r in rows if r["speedup"]]),
        "warm_requests_zero": all(n == 0 for n in warm_requests),
        "redone_cold_passes": sum(len(r["redone"]) for r in rows),
        "same_rewards": all(r["same_rewards"] for r in rows),
        "rows": rows,
    }
