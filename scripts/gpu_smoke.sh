#!/usr/bin/env bash
# GPU smoke check: a few ropd GRPO steps on CUDA per student backend (transformers, and Unsloth when it imports),
# on a GPU box that reaches no network; writes reports/gpu/gpu_grpo.json. See ropd_kit/bench/gpu_smoke.py.
#
#   scripts/gpu_smoke.sh --prepare   # here, with PyPI: wheels -> .whl/, tokenizer -> .gpu_smoke/ (both git-ignored)
#   scripts/gpu_smoke.sh --dry-run   # any CPU machine: every step but the CUDA ones, the carry list and its size
#   scripts/gpu_smoke.sh             # on the GPU box, with .whl/ and .gpu_smoke/ brought along: the real run
#
# Extra arguments go to `python -m ropd_kit.bench.gpu_smoke` (e.g. --steps 2, --backends transformers,
# --student /path/to/weights). The run keeps to GPU_SMOKE_BUDGET_S seconds (default 480), the wheel install included.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=run
case "${1:-}" in
  --prepare) mode=prepare; shift ;;
  --dry-run) mode=dry-run; shift ;;
esac

if [ "$mode" != run ]; then
  # The kit's own venv where there is one (prepare pins the wheels to the versions installed in it).
  py=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
  exec "$py" -m ropd_kit.bench.gpu_smoke "$mode" "$@"
fi

py=${PY:-python3}
site=${GPU_SMOKE_SITE:-/tmp/ropd-gpu-site}
budget=${GPU_SMOKE_BUDGET_S:-480}
mkdir -p reports/gpu
if compgen -G ".whl/*.whl" >/dev/null; then
  # Only what the image lacks travels; --target keeps the image's own packages untouched.
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "[gpu-smoke] offline install of .whl/*.whl failed" >&2; exit 2; }
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "[gpu-smoke] no .whl/*.whl here: run scripts/gpu_smoke.sh --prepare where PyPI is reachable, then carry .whl" >&2
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1

"$py" -m ropd_kit.bench.gpu_smoke run --budget-s $((budget - SECONDS)) "$@" 2>&1 | tee reports/gpu/gpu_smoke.log
status=${PIPESTATUS[0]}
# A runner that brings back what is under $OUT (at most 8 files) gets the report and the logs there.
if [ -n "${OUT:-}" ] && [ -d "${OUT}" ]; then
  cp reports/gpu/gpu_grpo.json reports/gpu/*.log "$OUT"/ 2>/dev/null || true
fi
exit "$status"
