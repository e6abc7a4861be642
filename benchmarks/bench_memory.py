"""Peak memory against video length, for the two long-video paths.

    python -m benchmarks.bench_memory animate --frames 40 400     # the headless command, end to end
    python -m benchmarks.bench_memory chunked --frames 200 2000   # the sampler node over meta-batch chunks

Each length runs in a fresh child process (tiny random weights, 64×64, 2 steps: memory, not speed, is
measured) and its peak resident set size is read from the kernel when it exits.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TALKINGPOSE_SHARED", ROOT.parent / "shared"))

CHUNKED_CHILD = r"""
import sys, numpy as np, torch
root, weights, frames, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, root)
from talkingpose.random_weights import write_random_weights
from talkingpose.vae_clip import load_image_encoder, load_vae
from nodes.model_nodes import LoadTalkingPoseModel, TalkingPoseAppearanceEncode, TalkingPoseClosedLoopSampler
from nodes.backend import host
import os
paths = write_random_weights(weights, "tiny")
os.environ["TALKINGPOSE_MODELS"] = weights
(model,) = LoadTalkingPoseModel().load("random-tiny/", "fp32")
vae = load_vae(paths["vae"])
image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
(appearance,) = TalkingPoseAppearanceEncode().encode(model, load_image_encoder(paths["image_encoder"]), vae, image, 64, 64, "stretch")
class Manager:
    frames_per_batch, unique_id = chunk, "m"
manager, rng = Manager(), np.random.default_rng(0)
for i in range((frames + chunk - 1) // chunk):
    n = min(chunk, frames - i * chunk)
    poses = torch.from_numpy(rng.random((n, 64, 64, 3), dtype=np.float32))  # what Load Video + Pose Extract hand over
    latent, state = TalkingPoseClosedLoopSampler().sample(model, appearance, poses, 1, 2, 3.5, 0.05, meta_batch=manager,
                                                          unique_id="s", prompt={"m": {"inputs": {"requeue": i}}})
    host.vae_decode(vae, latent["samples"])  # VAE Decode; Video Combine appends to its file
assert state.next_frame == frames
"""


def peak_rss_mb(command: list[str]) -> float:
    # The child's output goes to a file: a pipe nobody reads until it exits would fill up and stall it.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
        if status != 0:
            log.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{log.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", choices=["animate", "chunked"])
    ap.add_argument("--frames", type=int, nargs="+", required=True)
    ap.add_argument("--chunk", type=int, default=16, help="meta-batch frames per chunk (chunked)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for frames in args.frames:
            if args.path == "animate":
                command = [sys.executable, "cli.py", "animate", "--driving", str(SHARED / "samples/driving/vid1.mp4"),
                           "--poses", str(SHARED / "samples/dwpose/vid1.mp4"), "--random-weights", "--size", "64x64",
                           "--steps", "2", "--frames", str(frames), "--out", f"{scratch}/out{frames}.mp4"]
            else:
                command = [sys.executable, "-c", CHUNKED_CHILD, str(ROOT), f"{scratch}/w{frames}", str(frames), str(args.chunk)]
            rows.append({"path": args.path, "frames": frames, "peak_rss_mb": peak_rss_mb(command)})
            print(f"{args.path:>8} {frames:>6} frames  peak RSS {rows[-1]['peak_rss_mb']:.0f} MB", flush=True)
    base = rows[0]["peak_rss_mb"]
    for row in rows[1:]:
        print(f"{row['frames']} vs {rows[0]['frames']} frames: {100 * (row['peak_rss_mb'] / base - 1):+.1f}%")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
