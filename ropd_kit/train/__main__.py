"""`python -m ropd_kit.train --config FILE` (or `ropd train --config FILE`): one training run, `train(config)`.

FILE is a run config (configs/*.yaml; config_file): the RunConfig fields a notebook's `parameters` cell would hold,
flat (`verifier_base_url: ...`) or as a block per role (`verifier: {base_url: ..., model: ...}`), TRL's names where
they have ours. `--set FIELD=VALUE` overrides one field (VALUE is read as YAML). The config is checked in full
(trainer_overrides against TRL's config class included) before anything starts; `--dry-run` then prints the plan
(plan.run_plan: the method, the student and where it trains, where each judge runs and whether its key's variable
is set, the sizes, the limits) and stops without importing torch, loading a model or calling an endpoint;
`--print-config` prints the checked config as JSON and stops. The file may also be given without `--config`.
Exit status: 0 done, 2 a config or set-up error (said in one line), 3 stopped by the judge failure gate.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..config_file import error_text, read_config_file  # noqa: F401 - read_config_file: this module's old home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ropd_kit.train", description="Train the student with one method (ropd, lopd, rlvr, judge, sft) "
        "from a config file of RunConfig fields.",
    )
    parser.add_argument("config_file", nargs="?", metavar="FILE", help="the run config (the same as --config)")
    parser.add_argument("--config", metavar="FILE", help="a .yaml or .json file of RunConfig fields, e.g. "
                        "configs/gpu.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a field; VALUE is read as YAML (--set max_steps=20 --set resume=true "
                        "--set 'trainer_overrides={gradient_accumulation_steps: 4}'); repeatable")
    parser.add_argument("--print-config", action="store_true",
                        help="check the config, print it as JSON and exit without training")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the config, print the plan (where each role runs, sizes, limits) and exit: "
                        "no model is loaded, no endpoint called, torch is not imported")
    args = parser.parse_args(argv)
    if (args.config is None) == (args.config_file is None):
        parser.error("give the run config once: --config FILE (or FILE)")
    path = args.config or args.config_file

    import yaml

    from ..config_file import load_config

    overrides = {}
    for item in args.set:
        field, sep, value = item.partition("=")
        try:
            if not sep or not field.strip():
                raise ValueError("expected FIELD=VALUE")
            overrides[field.strip()] = yaml.safe_load(value)
        except (ValueError, yaml.YAMLError) as exc:
            print(f"ropd_kit.train: --set {item!r}: {exc}", file=sys.stderr)
            return 2
    try:
        config = load_config(path, overrides)
    except ValueError as exc:  # ConfigError: the message names the file and the field
        print(f"ropd_kit.train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(config.model_dump(), indent=2))
        return 0
    if args.dry_run:
        from ..plan import run_plan

        print(run_plan(config, source=str(path)))
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
        print(f"ropd_kit.train: {type(exc).__name__}: {error_text(exc)}", file=sys.stderr)
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
