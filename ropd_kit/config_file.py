"""Run config files (configs/*.yaml): a YAML or JSON mapping of RunConfig fields -> one RunConfig.

The file holds what a notebook's `parameters` cell would, in either form: flat endpoint fields
(`verifier_base_url: ...`) or a block per role (`verifier: {base_url: ..., model: ...}`; YAML anchors let roles
share one), and TRL's names where they have ours (`num_generations` is `n_rollouts`, config.TRL_ALIASES).
`python -m ropd_kit.train --config FILE` trains from one, and a batch spec names one as `config: FILE` under its
`base` (batch.spec). Errors name the file and the field:

    configs/gpu.yaml: n_rollouts: Input should be greater than or equal to 2

Importing this module imports neither torch nor trl (a config with `trainer_overrides` imports trl to check them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .config import ConfigError, EndpointConfig, canonical_params

if TYPE_CHECKING:  # pragma: no cover
    from .config import RunConfig

ROLES = ("teacher", "rubricator", "verifier", "student")


def flat_params(data: Mapping[str, Any], *, source: str = "config") -> dict[str, Any]:
    """`data` as flat parameters: a role's block `{teacher: {base_url: ...}}` becomes `teacher_base_url: ...`, and
    TRL's names become ours. Flat is what every consumer takes: RunConfig.from_params, a batch's notebooks (whose
    parameters are flat names), a `--set` on top that overrides one field of a block."""
    out: dict[str, Any] = {}
    written_as: dict[str, str] = {}

    def put(name: str, value: Any, as_written: str) -> None:
        # `student: {model: a}` and `student_model: b` are one parameter written twice (student_model names the
        # served and the trained student at once): different values cannot both hold.
        if name in out and out[name] != value:
            raise ConfigError(f"{source}: {written_as[name]}={out[name]!r} and {as_written}={value!r} set the same "
                              "parameter: give one")
        out[name], written_as[name] = value, as_written

    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{source}: {key!r} is not a field name")
        if key in ROLES and value is not None:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {key}: expected a mapping of endpoint fields "
                                  f"({', '.join(EndpointConfig.model_fields)}), got {type(value).__name__}")
            unknown = [k for k in value if k not in EndpointConfig.model_fields]
            if unknown:
                raise ConfigError(f"{source}: {key}.{unknown[0]}: not an endpoint field "
                                  f"({', '.join(EndpointConfig.model_fields)})")
            for field, v in value.items():
                put(f"{key}_{field}", v, f"{key}.{field}")
        else:
            put(key, value, key)
    try:
        return canonical_params(out)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The flat parameters in a .json, .yaml or .yml file (a mapping at the top level; see flat_params)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            raise ConfigError(f"{path}: not valid YAML ({where}{getattr(exc, 'problem', None) or exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of RunConfig fields at the top level, got {type(data).__name__}")
    return flat_params(data, source=str(path))


def error_text(exc: Exception) -> str:
    """One line for a config error: each pydantic error as `field: message`, anything else as it says."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
    return str(exc)


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> "RunConfig":
    """A RunConfig from a config file, with `overrides` (flat fields, e.g. from `--set`) on top. Raises ConfigError
    naming the file and the field for anything the file or the overrides get wrong."""
    from pydantic import ValidationError

    from .config import RunConfig

    params = read_config_file(path)
    if overrides:
        params.update(flat_params(overrides, source=f"{path} (overrides)"))
    try:
        return RunConfig.from_params(**params)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"{path}: {error_text(exc)}") from exc
