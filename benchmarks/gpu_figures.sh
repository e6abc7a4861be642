#!/usr/bin/env bash
# The GPU figures of docs/performance.md: one JSON file per run in benchmarks/results/ (about 8
# minutes of an H100 or H200; benchmarks/gpu_figures.py says what each figure is).
#   bash benchmarks/gpu_figures.sh CARRY_DIR [GOLDEN_CASE_DIR]
#   bash benchmarks/gpu_figures.sh --dry-run [CARRY_DIR]     # every stage, tiny, on the CPU (same keys)
# CARRY_DIR is what benchmarks/prepare_official.sh made (official code + its pinned wheels + the pack's wheels
# the GPU image lacks); the machine needs no registry. Without GOLDEN_CASE_DIR, golden_fp32_max_abs is null.
set -euo pipefail
export PYTHONUNBUFFERED=1
dry=()
if [[ ${1:-} == --dry-run ]]; then dry=(--dry-run); shift; fi
carry=${1:-}
golden=${2:-}
if [[ -n $carry && -d $carry/pack-wheels ]] && ! python3 -c "import diffusers, av" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/talkingpose-site "$carry"/pack-wheels/*.whl
  export PYTHONPATH=/tmp/talkingpose-site${PYTHONPATH:+:$PYTHONPATH}
fi
if [[ ${#dry[@]} -eq 0 ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
args=("${dry[@]}")
[[ -n $carry ]] && args+=(--official "$carry")
[[ -n $golden ]] && args+=(--golden "$golden")
python3 -m benchmarks.gpu_figures "${args[@]}"
