"""`python -m ropd_kit.train CONFIG`: one training run, `train(config)`, from a JSON or YAML file of RunConfig fields.

The file holds what a notebook's `parameters` cell would (flat endpoint fields such as `verifier_base_url` work, and
so do nested `teacher: {...}` blocks); `--set FIELD=VALUE` overrides one field (VALUE is read as YAML). The config
is checked in full (trainer_overrides against TRL's config class included) before anything starts; `--print-config`
stops there. Exit status: 0 done, 2 a config or set-up error (said in one line), 3 stopped by the judge failure gate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The RunConfig fields in a .json, .yaml or .yml file (a mapping at the top level)."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of RunConfig fields at the top level, got {type(data).__name__}")
    return data


def _one_line(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ropd_kit.train", description="Train the student with one method (ropd, lopd, rlvr, judge, sft) "
        "from a config file of RunConfig fields.",
    )
    parser.add_argument("config", metavar="CONFIG", help="a .json or .yaml file of RunConfig fields")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a field; VALUE is read as YAML (--set max_steps=20 --set resume=true "
                        "--set 'trainer_overrides={gradient_accumulation_steps: 4}'); repeatable")
    parser.add_argument("--print-config", action="store_true",
                        help="check the config, print it as JSON and exit without training")
    args = parser.parse_args(argv)

    from ..config import RunConfig

    try:
        params = read_config_file(args.config)
        for item in args.set:
            field, sep, value = item.partition("=")
            if not sep or not field.strip():
                raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
            import yaml

            params[field.strip()] = yaml.safe_load(value)
        config = RunConfig.from_params(**params)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError and our ConfigError are ValueErrors
        print(f"ropd_kit.train: {args.config}: {_one_line(exc)}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(config.model_dump(), indent=2))
        return 0

    from .methods import train
    from .progress import JudgeFailureError
    from .student import TrainError

    try:
        result = train(config)
    except JudgeFailureError as exc:
        print(f"ropd_kit.train: {exc}", file=sys.stderr)
        return 3
    except (TrainError, ConnectionError, ValueError) as exc:  # set-up errors: a setting, an endpoint, a model spec
        print(f"ropd_kit.train: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 2
    from .distributed import is_main

    if not is_main():
        return 0  # under a launcher the main process prints the run's summary once
    print(json.dumps({
        "run_dir": str(result.run_dir), "method": result.method, "backend": result.backend, "steps": result.steps,
        "checkpoint": None if result.checkpoint is None else str(result.checkpoint), "wall_s": result.wall_s,
        "judge_groups": result.judge_groups, "judge_failures": result.judge_failures,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
