#!/usr/bin/env bash
# The GPU figures of docs/performance.md: one JSON file per run in benchmarks/results/ (about 8
# minutes of an H100 or H200; benchmarks/gpu_figures.py says what each figure is).
#   bash benchmarks/gpu_figures.sh [--out DIR] CARRY_DIR [GOLDEN_CASE_DIR]
#   bash benchmarks/gpu_figures.sh --dry-run [--out DIR] [CARRY_DIR]    # every stage, tiny, on the CPU (same keys)
# CARRY_DIR is what benchmarks/prepare_official.sh made (official code + its pinned wheels + the pack's wheels
# the GPU image lacks); the machine needs no registry. Without GOLDEN_CASE_DIR, golden_fp32_max_abs is null.
#
# In two calls, where one call carries at most 64 MiB (the device tool), each carrying one half of CARRY_DIR
# (prepare_official.sh makes the halves as CARRY_DIR/parts/pack and CARRY_DIR/parts/official) and each writing a
# part file; then the two are joined into the one results file here:
#   call 1: bash benchmarks/gpu_figures.sh --part pack --out "$OUT" .gpu-carry/parts/pack ../shared/golden/sampler-a
#   call 2: bash benchmarks/gpu_figures.sh --part official --out "$OUT" .gpu-carry/parts/official
#   here:   python -m benchmarks.gpu_figures --merge PACK_PART.json OFFICIAL_PART.json
# The pack part has every figure but the official comparison; the official part writes the same random weights
# and inputs (fixed seeds) and times the official code on them; the merge computes the speed-up when both calls
# ran on the same GPU (else it stays null, and the file names the official part's GPU).
set -euo pipefail
export PYTHONUNBUFFERED=1
dry=() part=all out=()
while [[ ${1:-} == --* ]]; do
  case $1 in
    --dry-run) dry=(--dry-run); shift ;;
    --part) part=${2:?--part needs pack, official or all}; shift 2 ;;
    --out) out=(--out "${2:?--out needs a folder}"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
carry=${1:-}
golden=${2:-}
# the pack's modules the GPU image lacks: the official part needs only diffusers (the random weights)
needed="import diffusers, av"
[[ $part == official ]] && needed="import diffusers"
if [[ -n $carry && -d $carry/pack-wheels ]] && ! python3 -c "$needed" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/talkingpose-site "$carry"/pack-wheels/*.whl
  export PYTHONPATH=/tmp/talkingpose-site${PYTHONPATH:+:$PYTHONPATH}
fi
if [[ ${#dry[@]} -eq 0 ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
args=("${dry[@]}" --part "$part" "${out[@]}")
[[ -n $carry && -d $carry/TalkingPose ]] && args+=(--official "$carry")
[[ -n $golden ]] && args+=(--golden "$golden")
python3 -m benchmarks.gpu_figures "${args[@]}"
