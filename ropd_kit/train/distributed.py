"""Training in several processes (`accelerate launch`, `torchrun`): one run directory, whole groups per process.

A launcher starts N copies of `python -m ropd_kit.train CONFIG`; TRL and accelerate make them data-parallel: every
process generates and scores its own slice of the step's batch, and the gradients are averaged. What the kit adds:

- Groups stay whole. Each process judges only the groups in its slice, so a group (n_rollouts adjacent completions,
  TRL's num_generations) must never straddle two slices: `check_group_geometry` refuses a batch shape that would
  split one, before the trainer starts (`methods.py` says why we refuse rather than gather).
- One writer. Only the main process (rank 0) writes the run directory. The others send it their step records
  (rollouts, rubrics, verdicts, raw judge output) at the end of each step, and it writes them in rank order, which
  is the order of the groups in the step's batch, so the files read as a one-process run's would.
- One train log. The judge counters, tokens, failures and timings of every process are reduced at each logged step:
  counts are summed, wall times take the slowest process (the others wait for it at the gradient all-reduce).

In one process (no launcher) the world has size 1, every function here is a no-op and torch is never imported.
The collectives use the process group that accelerate sets up (gloo on a CPU, NCCL on GPUs; objects travel through
`torch.distributed.*_object`, which pickles them). Call them from every process at the same point, or none waits.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any, Iterator

from .student import TrainError

if TYPE_CHECKING:  # pragma: no cover
    from ..config import RunConfig

# What launchers set: torchrun/accelerate (WORLD_SIZE, RANK); MPI (accelerate --cpu --mpirun_hostfile) before
# accelerate copies them to WORLD_SIZE/RANK.
_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                continue
    return default


def _group() -> Any:
    """torch.distributed when a process group is up, else None (checked without importing torch)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def world_size() -> int:
    """How many processes train together (1 without a launcher)."""
    dist = _group()
    return dist.get_world_size() if dist is not None else max(1, _env_int(_SIZE_VARS, 1))


def rank() -> int:
    """This process's index in the run (0 is the main process, the one that writes)."""
    dist = _group()
    return dist.get_rank() if dist is not None else _env_int(_RANK_VARS, 0)


def is_main() -> bool:
    return rank() == 0


def refuse_single_process_cpu_launch() -> None:
    """Raise when `accelerate launch --cpu --num_processes N` (N > 1) started one process instead of N.

    accelerate's `--cpu` launcher starts several processes only through mpirun (`--mpirun_hostfile`); without it
    it starts one and sets MASTER_ADDR, and the run would quietly train alone. We say so rather than train a run
    that is not the one asked for.
    """
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if cpu and os.environ.get("MASTER_ADDR") and world_size() == 1 and "LOCAL_RANK" not in os.environ:
        raise TrainError(
            "`accelerate launch --cpu --num_processes N` started a single process: accelerate's --cpu launcher "
            "starts several only through mpirun (--mpirun_hostfile). On a CPU machine run "
            "`accelerate launch --multi_gpu --num_processes N -m ropd_kit.train CONFIG` (torchrun underneath; "
            "with no GPU the processes train on the CPU over gloo) or `torchrun --nproc_per_node N -m "
            "ropd_kit.train CONFIG`; for one process drop --num_processes (or unset MASTER_ADDR)"
        )


def init(*, cpu: bool) -> None:
    """Set up the process group before the trainer does, so that the run directory, the servers and the teacher refs
    can be arranged between processes first. `cpu` must be what the trainer will be told (`use_cpu`): accelerate's
    state is made once per process, and a state made without cpu=True on a machine without a GPU is not distributed.
    """
    if world_size() == 1 or _group() is not None:
        return
    from accelerate import PartialState

    state = PartialState(cpu=cpu)
    if state.num_processes != world_size():
        raise TrainError(f"the launcher started {world_size()} processes but accelerate set up "
                         f"{state.num_processes} ({state.distributed_type})")


def gather(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order, on every process (`[obj]` in one process)."""
    dist = _group()
    if dist is None:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any) -> Any:
    """The main process's `obj` on every process."""
    dist = _group()
    if dist is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    dist = _group()
    if dist is not None:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[bool]:
    """`with main_first() as main:` the main process runs the block first, the others after it is done (e.g. the
    main process collects and writes what the others then read from disk). Yields whether this is the main process.
    The closing wait happens only when the block finished normally: a failed process must not wait for the others.
    """
    main = is_main()
    if not main:
        barrier()
    yield main
    if main:
        barrier()


@contextlib.contextmanager
def served(config: "RunConfig") -> Iterator["RunConfig"]:
    """`serve.local_endpoints` for a run of any size: with several processes only the main one starts the local
    llama-servers (one per model, not one per process) and the others are told their URLs. The servers stop once every
    process has left the block normally."""
    from ..offline.serve import local_endpoints

    if world_size() == 1:
        with local_endpoints(config) as cfg:
            yield cfg
        return
    roles = ("teacher", "rubricator", "verifier", "student")
    if is_main():
        with local_endpoints(config) as cfg:
            broadcast({role: cfg.endpoint(role) for role in roles})
            yield cfg
            barrier()
    else:
        endpoints = broadcast(None)
        yield config.model_copy(update=endpoints)
        barrier()


# ---------------------------------------------------------------------------------------------------------------
# Batch geometry


def per_process(batch: int, *, group: int = 1, what: str = "the step's batch") -> int:
    """A step's `batch` split over the processes, in whole groups of `group`: the per-device batch size."""
    n = world_size()
    if n == 1:
        return batch
    if batch % (group * n):
        unit = f"{n} processes" + (f" in whole groups of {group}" if group > 1 else "")
        raise TrainError(
            f"{what} of {batch} cannot be split over {unit}: every process takes the same share of a step"
            + (f" and a group of {group} completions is judged by one process (set prompts_per_step to a multiple of "
               f"{n})" if group > 1 else f" (set it to a multiple of {n})")
        )
    return batch // n


def check_group_geometry(per_device_batch: int, steps_per_generation: int, num_generations: int,
                         num_processes: int) -> None:
    """Refuse a GRPO batch shape under which a process would get part of a group.

    TRL's RepeatSampler lays a generation batch out as whole groups (each prompt `num_generations` times in a row),
    and accelerate hands process r the r-th run of `per_device_batch x steps_per_generation` rows of it; that
    process generates for those rows and calls the reward on them once. So groups stay whole in every process
    exactly when that count is a multiple of `num_generations` (one process: TRL itself checks the same).
    """
    rows = per_device_batch * steps_per_generation
    if rows % num_generations:
        raise TrainError(
            f"each of the {num_processes} process(es) generates per_device_train_batch_size x steps_per_generation = "
            f"{per_device_batch} x {steps_per_generation} = {rows} completions, not a whole number of groups of "
            f"n_rollouts={num_generations}: a group would be split between processes, and a rubric needs the whole "
            f"group. Make {rows} a multiple of {num_generations} (prompts_per_step, or steps_per_generation / "
            "gradient_accumulation_steps in trainer_overrides)"
        )


# ---------------------------------------------------------------------------------------------------------------
# Reducing what each process measured


def reduce_timings(parts: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Per-step wall times of every process -> the slowest one's (a step ends when its slowest process does)."""
    keys = {k for p in parts for k in p}
    out: dict[str, float | None] = {}
    for key in sorted(keys):
        values = [p[key] for p in parts if p.get(key) is not None]
        out[key] = max(values) if values else None
    return out
