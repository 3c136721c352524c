"""`ropd`: one console command over the kit's entry points, each also `python -m ropd_kit.<module>`.

    ropd train --config configs/gpu.yaml --dry-run
    ropd batch experiments/ten_steps.yaml

Everything after the command's name is handed to that module's `main` unchanged, so `ropd COMMAND --help` shows
the command's own options and its exit status is the command's.
"""

from __future__ import annotations

import difflib
import importlib
import sys

# command -> (module, what it does). Each module has `main(argv) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("ropd_kit.demo", "the offline demo batch end to end, then its summary table and report path"),
    "train": ("ropd_kit.train.__main__", "one training run from a config file (--config FILE [--dry-run])"),
    "batch": ("ropd_kit.batch.runner", "an experiment: runs x notebooks, executed headless into reports/"),
    "fidelity": ("ropd_kit.fidelity.__main__", "does the reward follow correctness: the reward-fidelity study"),
    "bench": ("ropd_kit.bench.suite", "measurements: judge throughput, step times, costs"),
    "serve": ("ropd_kit.offline.serve", "the local llama-server (CPU): build it, start it"),
    "models": ("ropd_kit.offline.models", "the offline model files: install, path, list"),
}


def usage() -> str:
    from . import __version__

    width = max(map(len, COMMANDS)) + 2
    lines = [f"usage: ropd COMMAND [ARGS...]   (ropd-kit {__version__})", "",
             "Rubric-based On-Policy Distillation: distill a black-box teacher LLM into a small student.", "",
             "commands:"]
    lines += [f"  {name:<{width}}{text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "`ropd COMMAND --help` shows a command's options. Each command is also "
              "`python -m ropd_kit.<module>` (ropd_kit.train, ropd_kit.batch, ropd_kit.offline.serve, ...)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from . import __version__

        print(f"ropd-kit {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        print(f"ropd: unknown command {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
              + f"; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
