"""The local OpenAI-compatible server of the offline default: llama.cpp's `llama-server` over a GGUF model.

The black-box roles (teacher references, rubric induction, verification) and the student sampler talk to an
OpenAI-compatible endpoint. Offline, that endpoint is llama-server: it serves `response_format` with a JSON schema
(grammar-constrained, so the Rubricator's and Verifier's JSON always parses), runs `--parallel` slots with continuous
batching so concurrent requests share the CPU, and honours a per-request `seed`.

In:  a model (registry name or .gguf path, see models.py) and server sizes; or a RunConfig whose endpoints say
     `base_url="local"`.
Out: a running server (`LocalServer.base_url`, served model id == registry name) or a RunConfig copy pointing at
     running servers (`local_endpoints`). Servers run in their own process group and are stopped on exit.

The binary is compiled once from the llama.cpp source vendored in the llama-cpp-python sdist (PyPI is reachable
where model hubs are not) and cached in `<cache_root>/bin/llama-server`.

CLI: `python -m ropd_kit.offline.serve build [--force]` · `python -m ropd_kit.offline.serve run MODEL [--port P] [--parallel N]`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ropd_kit.config import cache_root
from ropd_kit.offline.models import file_lock, served_gguf

if TYPE_CHECKING:
    from ropd_kit.config import EndpointConfig, RunConfig

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
CMAKE_FLAGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary that can be copied out of the build folder
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # ON downloads the web UI from a model hub at configure time
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
    "-DGGML_NATIVE=ON",  # the cache lives on the machine that uses it, so tune for its CPU
)
# llama-server links code that a text-only chat server runs rarely or never; compiled at -O3 it is half of the first
# build's time. Optimisation level per target (the last -O on gcc's and clang's command line wins): mtmd (images
# and audio, loaded only with --mmproj, which LocalServer never passes) at -O0; the common library (argument parsing,
# chat templates, JSON schema -> grammar: once per request), the HTTP library and the server's request handling at
# -O1. The model's math (ggml), the sampler and the grammar (llama) stay at -O3.
# A target the source does not define (another llama.cpp version) is skipped.
COLD_TARGETS: dict[str, str] = {
    "mtmd": "-O0",
    "llama-common": "-O1",
    "cpp-httplib": "-O1",
    "server-context": "-O1",
    "llama-server-impl": "-O1",
}
MIN_SLOT_CTX = 4096
ROLES = ("teacher", "rubricator", "verifier", "student")
# Sizing a slot from the config (slot_context_need). The fixed prompt text is counted at 3 characters a token, more
# tokens than any tokenizer we serve makes of English, so the estimate errs on the large side.
CHARS_PER_TOKEN = 3
FENCE_TOKENS = 32  # per fenced answer: its two marker lines, and the cut marker of an answer cut to max_answer_chars
FEEDBACK_TOKENS = 400  # the message that sends a rejected reply back with its problems (rubrics/verify _feedback)
JUDGE_MAX_TOKENS = 256  # reward.JudgeReward caps its reply at min(verifier_max_tokens, this)
SLOT_ROUNDING = 256


# Set once a server died of SIGILL in this process (see LocalServer.start); every later server starts without
# weight repacking.
_NO_REPACK = False


def _disable_repack() -> None:
    global _NO_REPACK
    _NO_REPACK = True


class ServerError(RuntimeError):
    """llama-server could not be built, did not start, or died; the message carries the tail of its log."""


# --- building the binary -------------------------------------------------------------------------------------------

def binary_path() -> Path:
    return cache_root() / "bin" / "llama-server"


def _stamp_path() -> Path:
    return cache_root() / "bin" / "llama-server.stamp.json"


def _cpu_fingerprint() -> str:
    """The CPU's instruction-set flags: GGML_NATIVE code from another CPU may crash here with SIGILL."""
    import hashlib
    import platform

    flags = platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            flags += next((line for line in fh if line.startswith(("flags", "Features"))), "")
    return hashlib.sha256(flags.encode()).hexdigest()[:16]


def _wanted_stamp() -> dict:
    return {"llama_cpp_python": LLAMA_CPP_PYTHON_VERSION, "cmake_flags": list(CMAKE_FLAGS),
            "cold_targets": dict(COLD_TARGETS), "cpu": _cpu_fingerprint()}


def _cold_targets_flag(build_dir: Path) -> list[str]:
    """The cmake argument that applies COLD_TARGETS: a script cmake includes right after llama.cpp's project() call,
    which defers itself to the end of the top-level CMakeLists (when every target exists). Written and passed even
    when COLD_TARGETS is empty, so that a build folder configured with an older script forgets its targets."""
    lines = [
        "# Written by ropd_kit.offline.serve (COLD_TARGETS): less optimisation for code llama-server rarely runs.",
        "if(CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR AND NOT ROPD_COLD_TARGETS_DEFERRED AND NOT MSVC)",
        "  set(ROPD_COLD_TARGETS_DEFERRED ON)",
        "  function(ropd_cold_targets)",
        *(f"    if(TARGET {target})\n      target_compile_options({target} PRIVATE {opt})\n    endif()"
          for target, opt in COLD_TARGETS.items()),
        "  endfunction()",
        "  cmake_language(DEFER CALL ropd_cold_targets)",
        "endif()",
    ]
    script = build_dir.parent / "build-llama-cold-targets.cmake"
    script.write_text("\n".join(lines) + "\n")
    return [f"-DCMAKE_PROJECT_INCLUDE={script}"]


def _read_stamp() -> dict:
    try:
        return json.loads(_stamp_path().read_text())
    except (OSError, ValueError):
        return {}


def is_built() -> bool:
    """True when the cached binary was built from this version, with these flags, for this CPU."""
    stamp = _read_stamp()
    return binary_path().is_file() and {k: stamp.get(k) for k in _wanted_stamp()} == _wanted_stamp()


def _tail(path: Path | None, n: int = 40) -> str:
    if path is None or not path.is_file():
        return "(no log)"
    with open(path, "rb") as fh:
        lines = deque(fh, maxlen=n)
    return b"".join(lines).decode(errors="replace").rstrip() or "(log is empty)"


def _run_logged(cmd: Sequence[str], log: Path, what: str) -> None:
    with open(log, "ab") as fh:
        fh.write(("\n$ " + " ".join(cmd) + "\n").encode())
        fh.flush()
        rc = subprocess.run(list(cmd), stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise ServerError(f"{what} failed (exit {rc}); full log: {log}\n{_tail(log, 30)}")


def _source_tree(log: Path) -> Path:
    """The llama.cpp source vendored in the llama-cpp-python sdist, downloaded with pip and unpacked once."""
    src_root = cache_root() / "src"
    tree = src_root / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}"
    llama = tree / "vendor" / "llama.cpp"
    if (llama / "CMakeLists.txt").is_file():
        return llama
    src_root.mkdir(parents=True, exist_ok=True)
    sdist = src_root / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    if not sdist.is_file():
        print(f"[serve] downloading the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist", file=sys.stderr)
        _run_logged(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--disable-pip-version-check", "-d", str(src_root), f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"],
            log, "pip download of the llama-cpp-python sdist",
        )
    staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=src_root))
    try:
        with tarfile.open(sdist) as tar:
            # The 'data' filter refuses absolute paths and links out of the tree (PEP 706).
            tar.extractall(staging, filter="data")
        shutil.rmtree(tree, ignore_errors=True)
        os.replace(staging / tree.name, tree)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not (llama / "CMakeLists.txt").is_file():
        raise ServerError(f"{sdist} has no vendor/llama.cpp/CMakeLists.txt; is it the llama-cpp-python sdist?")
    return llama


def _wait_for_foreign_build(build_dir: Path) -> None:
    """Wait while another process (not holding our lock, e.g. a shell) compiles into the same folder."""
    if shutil.which("pgrep") is None:
        return
    announced = False
    while True:
        out = subprocess.run(["pgrep", "-f", f"cmake --build {build_dir}"], capture_output=True, text=True).stdout
        if not out.strip():
            return
        if not announced:
            print(f"[serve] another cmake build of {build_dir} is running; waiting for it", file=sys.stderr)
            announced = True
        time.sleep(5)


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        raise ServerError(
            f"{name!r} is not on PATH; building llama-server needs cmake and a C++ compiler "
            f"(Debian/Ubuntu: apt-get install cmake g++; or `pip install cmake` into this environment)"
        )
    return found


def build(force: bool = False, *, jobs: int | None = None) -> Path:
    """Compile llama-server once (idempotent); returns `<cache_root>/bin/llama-server`.

    A changed version or flag set rebuilds; `force` recompiles from clean. About 860 CPU-seconds of compiling on
    the 2-core Xeon of docs/offline-default.md (1062 before COLD_TARGETS).
    """
    binary = binary_path()
    if not force and is_built():
        return binary
    root = cache_root()
    build_dir = root / "build-llama"
    log = root / "build-llama.log"
    with file_lock(root / "build-llama.lock"):
        if not force and is_built():
            return binary
        cmake = _tool("cmake")
        _wait_for_foreign_build(build_dir)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        started = time.monotonic()
        src = _source_tree(log)
        cache = build_dir / "CMakeCache.txt"
        if cache.is_file() and f"CMAKE_HOME_DIRECTORY:INTERNAL={src}" not in cache.read_text(errors="replace"):
            shutil.rmtree(build_dir)  # configured from another source tree; cmake refuses to reuse it
        print(f"[serve] building llama-server (log: {log})", file=sys.stderr)
        flags = [*CMAKE_FLAGS, *_cold_targets_flag(build_dir)]
        _run_logged([cmake, "-S", str(src), "-B", str(build_dir), *flags], log, "cmake configure")
        cmd = [cmake, "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs or os.cpu_count() or 1)]
        # -march=native does not change the compiler flags' text, so a cache shared with another CPU (a home
        # directory on a cluster) needs a clean build for make to recompile anything.
        if force or _read_stamp().get("cpu") not in (None, _cpu_fingerprint()):
            cmd.append("--clean-first")
        _run_logged(cmd, log, "cmake build of llama-server")
        built = build_dir / "bin" / "llama-server"
        if not built.is_file():
            raise ServerError(f"the build finished but {built} does not exist; log: {log}")
        binary.parent.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_name(binary.name + ".tmp")
        shutil.copy2(built, tmp)
        os.replace(tmp, binary)
        seconds = round(time.monotonic() - started, 1)
        _stamp_path().write_text(json.dumps({**_wanted_stamp(), "build_s": seconds, "source": str(src)}, indent=2))
        print(f"[serve] llama-server built in {seconds} s -> {binary}", file=sys.stderr)
        return binary


def server_binary() -> Path:
    """The cached binary, building it first when it is missing or stale."""
    return binary_path() if is_built() else build()


# --- running a server -----------------------------------------------------------------------------------------------

def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 2.0) -> tuple[int, dict | None]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout, ValueError):
        return 0, None


def _death_signal_hook():
    """A preexec_fn asking Linux to SIGTERM the server when the process that started it dies.

    Without it a killed notebook kernel leaves a server holding every core. The libc function is looked up here,
    before the fork: the child must not import anything between fork and exec.
    """
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return hook


class LocalServer:
    """One llama-server process serving one model under its registry name.

    `ctx_size` is the total context; llama-server splits it evenly over the `parallel` slots (default: 4096 tokens
    per slot). `threads=None` lets llama.cpp use every core, the fastest choice on a machine of its own; where other
    busy processes share the cores, pass a small number (1 on 2 cores): llama.cpp's threads wait for each other
    after every op, and a descheduled one stalls the rest (SmolLM2 on a loaded 2-core machine: 2 threads 3 tok/s,
    1 thread 50 tok/s). Use as a context manager, or call start()/stop(); the server also stops at interpreter exit
    and, on Linux, when the process that started it dies.

    >>> with LocalServer("smollm2-135m-instruct", parallel=2) as server:   # doctest: +SKIP
    ...     print(server.base_url, server.model_id)
    http://127.0.0.1:41234/v1 smollm2-135m-instruct
    """

    def __init__(
        self,
        model: str,
        *,
        parallel: int = 4,
        ctx_size: int | None = None,
        threads: int | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_path: str | Path | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout_s: float = 300.0,
    ) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        self.model = model
        self.parallel = parallel
        self.ctx_size = ctx_size if ctx_size is not None else MIN_SLOT_CTX * parallel
        if self.ctx_size < parallel:
            raise ValueError(f"ctx_size {self.ctx_size} is smaller than parallel={parallel}")
        self.threads = threads
        self.host = host
        self.requested_port = port
        self.extra_args = tuple(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self._own_log = log_path is None
        self.log_path: Path | None = Path(log_path) if log_path is not None else None
        self.port: int | None = None
        self.model_id: str | None = None
        self.gguf: Path | None = None
        self._proc: subprocess.Popen | None = None

    # -- public surface --
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise ServerError(f"the server for {self.model!r} is not started")
        return f"{self._root_url}/v1"

    @property
    def _root_url(self) -> str:
        # A server listening on every interface is still reached through loopback.
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        return _tail(self.log_path, n)

    def start(self) -> "LocalServer":
        if self.running:
            return self
        binary = server_binary()
        self.model_id, self.gguf = served_gguf(self.model)
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="ropd-llama-server-")) / f"{self.model_id}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # A free port found by binding can be taken before llama-server binds it; retry with a fresh one.
        attempts = 1 if self.requested_port else 3
        attempt = 0
        while attempt < attempts:
            self.port = self.requested_port or _free_port(self.host)
            self._spawn(binary)
            try:
                self._wait_ready()
                break
            except ServerError:
                bind_failed = "bind" in self.log_tail(10).lower() and not self.running
                illegal = self._proc is not None and self._proc.returncode == -signal.SIGILL
                self._kill()
                if illegal and not _NO_REPACK:
                    # A CPU that advertises AMX in a VM that does not enable it: the repacked (AMX) matmul dies
                    # with SIGILL at the first decode. Without weight repacking llama.cpp never runs it.
                    _disable_repack()
                    continue
                attempt += 1
                if attempt < attempts and bind_failed:
                    continue
                raise
            except BaseException:  # Ctrl-C while loading must not leave the process behind
                self._kill()
                raise
        atexit.register(self.stop)
        return self

    def ensure_alive(self) -> None:
        """Raise ServerError with the log tail if the process has exited."""
        if self._proc is None:
            raise ServerError(f"the server for {self.model!r} is not started")
        rc = self._proc.poll()
        if rc is not None:
            raise ServerError(
                f"llama-server for {self.model_id} ({self.base_url}) exited with code {rc}; log {self.log_path}:\n"
                f"{self.log_tail()}"
            )

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it if it is still there after `timeout_s`."""
        atexit.unregister(self.stop)
        if self._proc is None:
            return
        was_running = self._proc.poll() is None
        self._kill(timeout_s)
        if was_running and self._own_log and self.log_path is not None:
            # A cleanly stopped server's log is noise; a crashed one's stays for the error message.
            shutil.rmtree(self.log_path.parent, ignore_errors=True)
            self.log_path = None

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.base_url}" if self.running else "stopped"
        return f"LocalServer({self.model!r}, parallel={self.parallel}, ctx_size={self.ctx_size}, {state})"

    # -- internals --
    def command(self, binary: Path, port: int) -> list[str]:
        cmd = [
            str(binary), "--model", str(self.gguf), "--alias", str(self.model_id),
            "--host", self.host, "--port", str(port),
            "--parallel", str(self.parallel), "--ctx-size", str(self.ctx_size),
            "--jinja",  # the chat template stored in the GGUF, rendered as transformers would
            "--no-webui", "--offline",
        ]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        if _NO_REPACK and "--no-repack" not in self.extra_args:
            cmd.append("--no-repack")
        return cmd + list(self.extra_args)

    def _spawn(self, binary: Path) -> None:
        cmd = self.command(binary, self.port)
        with open(self.log_path, "ab") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            # The death signal follows the *thread* that forked, so only a main-thread start may use it.
            main_thread = threading.current_thread() is threading.main_thread()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() can signal everything it started
                preexec_fn=_death_signal_hook() if main_thread else None,
            )

    def _wait_ready(self) -> None:
        root = self._root_url
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerError(
                    f"llama-server for {self.model_id} ({self.gguf}) exited with code {self._proc.returncode} "
                    f"while starting; log {self.log_path}:\n{self.log_tail()}"
                )
            status, _ = _get_json(root + "/health")
            if status == 200:
                status, models = _get_json(root + "/v1/models")
                ids = [m.get("id") for m in (models or {}).get("data", [])]
                if status == 200 and self.model_id in ids:
                    return
            time.sleep(0.2)
        raise ServerError(
            f"llama-server for {self.model_id} did not become ready at {root} within {self.startup_timeout_s:.0f} s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def _kill(self, timeout_s: float = 10.0) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left in the group (the server itself if SIGTERM was ignored) goes now.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _retries(n: int) -> str:
    return f"{n} retr{'y' if n == 1 else 'ies'}"


def _prompt_tokens(*names: str, prompts_dir: str | None = None) -> int:
    from ropd_kit import prompts

    # The longest version over the task families (and prompts_dir's replacements): one server serves them all.
    chars = sum(prompts.longest(n, prompts_dir) for n in names)
    return chars // CHARS_PER_TOKEN + 1


def slot_context_need(config: "RunConfig", roles: Sequence[str] = ROLES) -> dict[str, dict[str, int]]:
    """Tokens the largest request of each kind can take in one server slot under `config`: prompt, output, and what
    a retry chain appends (each rejected reply is sent back with its problems). {kind: {part: tokens}}; the kinds
    are those the `roles` serve (teacher: refs, and the judge baseline when judge_role is "teacher"; rubricator;
    verifier: verification, and the judge baseline by default; student: rollouts).

    Every part is bounded by a config size: answers by their max_tokens (a judged answer is never longer than its
    generation budget), the rubric shown to the Verifier by rubricator_max_tokens, the question by max_prompt_tokens.
    """
    question = config.max_prompt_tokens

    def text(*names: str) -> int:
        return _prompt_tokens(*names, prompts_dir=getattr(config, "prompts_dir", None))

    ref, rollout = config.teacher_max_tokens + FENCE_TOKENS, config.rollout_max_tokens + FENCE_TOKENS
    n_refs = config.n_teacher_refs
    need: dict[str, dict[str, int]] = {}
    if "teacher" in roles:
        need["teacher"] = {"prompt text": text("teacher_system.txt"), "question": question,
                           "output": config.teacher_max_tokens}
    if "rubricator" in roles:
        shown = min(config.rubric_student_samples, config.n_rollouts)
        need["rubricator"] = {
            "prompt text": text("rubricator_system.txt", "rubricator_user.txt"), "question": question,
            f"{n_refs} refs": n_refs * ref, f"{shown} rollouts": shown * rollout,
            "output": config.rubricator_max_tokens,
            _retries(config.rubric_attempts - 1): (config.rubric_attempts - 1) * (config.rubricator_max_tokens + FEEDBACK_TOKENS),
        }
    if "verifier" in roles:
        # The largest chunk of answers one call shows, with the references (the longer answers) in it first.
        chunk = min(config.max_answers_per_call, n_refs + config.n_rollouts)
        refs_in = min(chunk, n_refs)
        from ropd_kit.verify import reply_budget

        # The evidence / read-first levers use their own templates and longer replies (a quote per criterion).
        fields = getattr(config, "verifier_evidence", False) or getattr(config, "verifier_read_first", False)
        names = ("verifier_system_fields.txt", "verifier_user_fields.txt") if fields else (
            "verifier_system.txt", "verifier_user.txt")
        output = reply_budget(config, chunk, config.max_criteria)
        need["verifier"] = {
            "prompt text": text(*names), "question": question,
            "rubric": config.rubricator_max_tokens, f"{refs_in} refs": refs_in * ref,
            f"{chunk - refs_in} rollouts": (chunk - refs_in) * rollout, "output": output,
            _retries(config.verify_attempts - 1): (config.verify_attempts - 1) * (output + FEEDBACK_TOKENS),
        }
    if getattr(config, "judge_role", "verifier") in roles:
        need["judge"] = {"prompt text": text("judge_system.txt", "judge_user.txt"), "question": question,
                         "rollout": rollout, "output": min(config.verifier_max_tokens, JUDGE_MAX_TOKENS)}
    if "student" in roles:
        need["student"] = {"prompt text": text("student_system.txt"), "question": question,
                           "output": config.rollout_max_tokens}
    return need


def server_ctx_size(config: "RunConfig", roles: Sequence[str] | None = None) -> int:
    """The `--ctx-size` for a local server under `config`: `server_ctx_size` when set (refused, with the numbers,
    when its share per slot is smaller than the largest request needs), else that need per slot (at least
    MIN_SLOT_CTX, rounded up) times `server_parallel`. `roles`: the roles served locally (default: the config's
    endpoints with base_url "local"; every role when none is)."""
    from ropd_kit.config import ConfigError

    if roles is None:
        roles = [r for r in ROLES if config.endpoint(r).is_local] or list(ROLES)
    need = slot_context_need(config, roles)
    kind, parts = max(need.items(), key=lambda item: sum(item[1].values()))
    needed = sum(parts.values())
    parallel = config.server_parallel
    if config.server_ctx_size is None:
        per_slot = max(MIN_SLOT_CTX, -(-needed // SLOT_ROUNDING) * SLOT_ROUNDING)
        return per_slot * parallel
    per_slot = config.server_ctx_size // parallel
    if per_slot < needed:
        detail = " + ".join(f"{name} {tokens}" for name, tokens in parts.items() if tokens)
        raise ConfigError(
            f"server_ctx_size={config.server_ctx_size} over server_parallel={parallel} slots leaves {per_slot} tokens "
            f"per request, but the largest {kind} request of this config can take about {needed} ({detail}); "
            f"set server_ctx_size to at least {needed * parallel}, or to None to size it from the config"
        )
    return config.server_ctx_size


@contextlib.contextmanager
def local_endpoints(config: "RunConfig") -> Iterator["RunConfig"]:
    """A copy of `config` whose `base_url="local"` endpoints point at started llama-servers.

    One server per distinct model: roles that name the same model (teacher, rubricator and verifier by default)
    share it; the student gets its own. With several servers and `server_threads=None`, the cores are split between
    them. Servers stop when the block exits. Endpoints with a real URL are untouched. Each server's context is
    `server_ctx_size(config)`: sized for the config's largest request per slot, or refused before anything starts
    when an explicit `server_ctx_size` is too small for it.
    """
    local = {role: config.endpoint(role) for role in ROLES if config.endpoint(role).is_local}
    if not local:
        yield config
        return
    parallel = config.server_parallel
    ctx_size = server_ctx_size(config)  # refuses, before anything starts, a context too small for the config
    files = {role: served_gguf(endpoint.model)[1].resolve() for role, endpoint in local.items()}
    # Every server gets every core by default: the stages call one model at a time (teacher refs, then rollouts,
    # then judges; training waits for its reward), so two servers are never busy together. Measured on 2 cores,
    # Qwen2.5-Coder-1.5B: 34 tok/s with 2 threads vs 24 with 1. Set server_threads when they will be (llama.cpp
    # threads wait for each other after every op, and two busy servers on the same cores thrash).
    threads = config.server_threads
    with contextlib.ExitStack() as stack:
        by_file: dict[Path, LocalServer] = {}
        updates = {}
        for role, endpoint in local.items():
            server = by_file.get(files[role])
            if server is None:
                server = LocalServer(endpoint.model, parallel=parallel, ctx_size=ctx_size, threads=threads)
                stack.enter_context(server)
                by_file[files[role]] = server
            updates[role] = served_endpoint(endpoint, server)
        yield config.model_copy(update=updates)


def served_endpoint(endpoint: "EndpointConfig", server: "LocalServer") -> "EndpointConfig":
    """`endpoint` pointed at a started local server, with `local_client_limits` for its queue."""
    return endpoint.model_copy(update={"base_url": server.base_url, "model": server.model_id,
                                       **local_client_limits(endpoint, server.parallel)})


# A request's time limit on this machine's own server, unless the endpoint sets one.
LOCAL_TIMEOUT_S = 900.0


def local_client_limits(endpoint: "EndpointConfig", parallel: int) -> dict[str, Any]:
    """Timeout and concurrency for a client of a local server, where the endpoint has them at their defaults (a
    value equal to the default counts as not chosen: a config read back from config.json has every field set).

    A request to our own server waits in its queue behind the other requests (more than `parallel` in flight, and
    the judge roles share one server), and its timeout runs while it waits; a timed-out request is sent again from
    scratch. The 120 s default meant for a remote API made the 1.5B judges time out over and over on a busy 2-core
    machine (seen: 130 cancelled requests and nothing judged in 17 minutes). Slow there means busy, not down: wait
    longer, and send no more at once than the server has slots.

    >>> from ropd_kit.config import EndpointConfig
    >>> local_client_limits(EndpointConfig(), 4)
    {'timeout_s': 900.0, 'max_concurrency': 4}
    >>> local_client_limits(EndpointConfig(timeout_s=60, max_concurrency=2), 4)
    {}
    """
    defaults = type(endpoint).model_fields
    limits: dict[str, Any] = {}
    if endpoint.timeout_s == defaults["timeout_s"].default:
        limits["timeout_s"] = LOCAL_TIMEOUT_S
    if endpoint.max_concurrency == defaults["max_concurrency"].default and parallel < endpoint.max_concurrency:
        limits["max_concurrency"] = parallel
    return limits


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


# --- CLI -----------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropd_kit.offline.serve", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_build = sub.add_parser("build", help="compile llama-server into the cache (idempotent)")
    p_build.add_argument("--force", action="store_true", help="recompile from clean")
    p_run = sub.add_parser("run", help="serve a model until Ctrl-C")
    p_run.add_argument("model", help="registry name/alias or .gguf path")
    p_run.add_argument("--port", type=int, default=None)
    p_run.add_argument("--host", default="127.0.0.1")
    p_run.add_argument("--parallel", type=int, default=4)
    p_run.add_argument("--ctx-size", type=int, default=None, help="total over slots (default 4096 per slot)")
    p_run.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    from ropd_kit.offline.models import ModelError

    try:
        if args.cmd == "build":
            print(build(force=args.force))
            return 0
        server = LocalServer(args.model, parallel=args.parallel, ctx_size=args.ctx_size, threads=args.threads,
                             port=args.port, host=args.host)
        # SIGTERM (e.g. from a process manager) should take the same clean path as Ctrl-C.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            with server:
                print(f"serving {server.model_id} at {server.base_url} (Ctrl-C to stop; log {server.log_path})",
                      flush=True)
                while True:
                    time.sleep(1)
                    server.ensure_alive()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    except (ServerError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
