"""Secrets stay out of everything a run writes: which names hold a credential, refusing them as notebook
parameters (papermill copies parameter values into its outputs), scrubbing their values from files.

In: flat parameters and the environment. Out: `SecretParameterError` before anything runs; redacted files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping



# Name parts that mark a variable as holding a credential ("max_tokens" has the part "tokens", which is fine; the
# shell's PWD is a directory, not a password).
_SECRET_PARTS = {"key", "apikey", "token", "secret", "secrets", "password", "passwd", "credential", "credentials"}
_PARAM_ONLY_PARTS = {"auth", "bearer"}  # suspicious as parameter names; as env names they hit SSH_AUTH_SOCK and co.
_SECRET_WORDS = ("api_key", "apikey", "secret", "password", "passwd", "credential", "access_token", "auth_token")
REDACTED = "[redacted]"
class SecretParameterError(ValueError):
    """A parameter that would write a secret into the reports (papermill copies parameter values)."""

# ---------------------------------------------------------------------------------------------------------------
# Secrets


def looks_like_secret_name(name: str, *, parameter: bool = True) -> bool:
    """True for names such as `api_key`, `hf_token`, `openai_secret`; names ending in `_env` hold a variable NAME.

    `parameter=False` applies the stricter reading used for environment variable names.
    """
    lowered = name.lower()
    if lowered.endswith("_env"):
        return False
    parts = set(re.split(r"[^a-z0-9]+", lowered))
    holders = _SECRET_PARTS | _PARAM_ONLY_PARTS if parameter else _SECRET_PARTS
    return bool(parts & holders) or any(word in lowered for word in _SECRET_WORDS)


def secret_values(params: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Values that must never be written: env var name -> value, for every variable a `*_env` parameter names and
    every set variable whose own name looks like a key holder (`OPENAI_API_KEY`, `HF_TOKEN`, ...)."""
    env = os.environ if env is None else env
    named = {v for k, v in params.items() if k.lower().endswith("_env") and isinstance(v, str) and v}
    out = {name: env[name] for name in named if env.get(name)}
    for name, value in env.items():
        # Short values of look-alike names (FOO_TOKEN_ENABLED=1) would match every "1": only real-looking keys count.
        if name not in out and looks_like_secret_name(name, parameter=False) and len(value) >= 8:
            out[name] = value
    return out


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


def check_secrets(params: Mapping[str, Any], *, run: str = "", env: Mapping[str, str] | None = None) -> None:
    """Raise SecretParameterError if a parameter name or value would put a secret into the reports.

    The message names the parameter and the variable, never the value.
    """
    where = f"run {run!r}: " if run else ""
    for name in params:
        if looks_like_secret_name(name):
            raise SecretParameterError(
                f"{where}parameter {name!r} looks like it holds a credential; papermill would copy its value into "
                f"every output notebook. Put the key in an environment variable and pass its NAME, e.g. "
                f"teacher_api_key_env: OPENAI_API_KEY"
            )
    secrets = secret_values(params, env)
    for name, value in params.items():
        for path, text in _strings(value, name):
            for var, secret in secrets.items():
                if text == secret or (len(secret) >= 8 and secret in text):
                    raise SecretParameterError(
                        f"{where}parameter {path!r} contains the value of environment variable {var}; pass the "
                        f"variable's NAME (a `*_api_key_env` parameter), never its value"
                    )


def redact_file(path: Path, secrets: Mapping[str, str]) -> int:
    """Replace secret values in a written file (a last line of defence); returns how many were replaced."""
    values = [v for v in secrets.values() if len(v) >= 6]
    if not values or not path.exists():
        return 0
    text = path.read_text(errors="surrogateescape")
    count = sum(text.count(v) for v in values)
    if count:
        for v in values:
            text = text.replace(v, REDACTED)
        path.write_text(text, errors="surrogateescape")
    return count


def _scrub(text: str, secrets: Mapping[str, str]) -> str:
    for v in secrets.values():
        if len(v) >= 6:
            text = text.replace(v, REDACTED)
    return text
