#!/usr/bin/env bash
# The GPU figures of the README's Performance section, in one run (about 6 minutes on one H200).
#   bash benchmarks/gpu_figures.sh RESULTS.jsonl [GOLDEN_CASE_DIR]
# Needs a CUDA torch with the pack's requirements. Each benchmark is its own process so that its peak VRAM is
# its own; one JSON line per benchmark goes to RESULTS.jsonl.
set -uo pipefail
results=${1:?usage: gpu_figures.sh RESULTS.jsonl [GOLDEN_CASE_DIR]}
golden=${2:-../shared/golden/sampler-a}
export PYTHONUNBUFFERED=1
: > "$results"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"

# Exactness on the GPU: the golden case in float32 (TF32 off) and the half-precision tolerances.
TALKINGPOSE_GOLDEN_DIR=$golden TALKINGPOSE_TEST_DEVICE=cuda python3 -m pytest tests/test_golden_sampler.py -q -s -p no:cacheprovider

bench() {  # NAME ARGS...
  local name=$1; shift
  local json; json=$(mktemp)
  if timeout 240 python3 -m benchmarks.bench_sampler --preset sd15 --size 512 --device cuda --peak-tflops 989 --json "$json" "$@"; then
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r['name']=sys.argv[2]; print(json.dumps(r))" "$json" "$name" >> "$results"
  else
    echo "{\"name\": \"$name\", \"failed\": true}" >> "$results"
  fi
  rm -f "$json"
}
bench fp16 --dtype fp16 --steps 30 --frames 10
bench bf16 --dtype bf16 --steps 30 --frames 10
bench fp32 --dtype fp32 --steps 30 --frames 5
bench naive-fp16 --dtype fp16 --steps 30 --frames 5 --mode naive
bench fp16-channels-last --dtype fp16 --steps 30 --frames 10 --channels-last
bench fp16-4-videos --dtype fp16 --steps 30 --frames 5 --videos 4
bench fp16-8-videos --dtype fp16 --steps 30 --frames 4 --videos 8
# Memory against length: the same settings for 10 and 300 frames (2 steps keep it short; memory does not depend on steps).
bench length-10 --dtype fp16 --steps 2 --frames 10
bench length-300 --dtype fp16 --steps 2 --frames 300
bench fp16-compile --dtype fp16 --steps 30 --frames 10 --compile
cat "$results"
