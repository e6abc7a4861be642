#!/usr/bin/env bash
# Makes the folder benchmarks/gpu_figures.sh carries to a GPU machine that reaches no registry:
#   bash benchmarks/prepare_official.sh OFFICIAL_GIT_DIR [DEST]     (DEST defaults to .gpu-carry, git-ignored)
# OFFICIAL_GIT_DIR: a clone (or bare mirror) of github.com/dfki-av/TalkingPose. DEST gets
#   TalkingPose/   the official code (src/, configs/) at 6df5cb9, the commit the golden cases came from
#   wheels/        the versions it pins: diffusers 0.27.2, transformers 4.30.2, huggingface-hub 0.25.2, einops 0.4.1
#                  (its models import einops, which a plain PyTorch image lacks)
#   pack-wheels/   what this pack needs beyond the GPU image's packages (diffusers, PyAV), for Python 3.12
#   parts/pack/, parts/official/   the same files (hard links) split for the two-call run of gpu_figures.sh,
#                  each under the 64 MiB one device call carries: pack-wheels/ alone; the official code, its
#                  wheels and the pack's diffusers wheel (the official part writes the random weights with it)
# The official code is not part of this repository; it is fetched here and carried, never committed.
set -euo pipefail
official=${1:?usage: prepare_official.sh OFFICIAL_GIT_DIR [DEST]}
dest=${2:-.gpu-carry}
commit=6df5cb9
rm -rf "$dest"
mkdir -p "$dest/TalkingPose" "$dest/wheels" "$dest/pack-wheels"
git --git-dir="$(git -C "$official" rev-parse --absolute-git-dir 2>/dev/null || echo "$official")" archive "$commit" src configs \
  | tar -x -C "$dest/TalkingPose"
python3 -m pip download -q --no-deps --only-binary=:all: -d "$dest/wheels" \
  diffusers==0.27.2 transformers==4.30.2 huggingface-hub==0.25.2 einops==0.4.1
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
  -d "$dest/pack-wheels" "diffusers==$(python3 -c 'import diffusers; print(diffusers.__version__)')" \
  "av==$(python3 -c 'import av; print(av.__version__)')"
mkdir -p "$dest/parts/pack" "$dest/parts/official/pack-wheels"
cp -al "$dest/pack-wheels" "$dest/parts/pack/pack-wheels"
cp -al "$dest/TalkingPose" "$dest/wheels" "$dest/parts/official/"
ln "$dest"/pack-wheels/diffusers-*.whl "$dest/parts/official/pack-wheels/"
du -sh "$dest"
for half in pack official; do
  size=$(du -sm "$dest/parts/$half" | cut -f1)
  echo "$dest/parts/$half: ${size} MiB"
  if (( size > 64 )); then echo "WARNING: $dest/parts/$half is over the 64 MiB one device call carries" >&2; fi
done
