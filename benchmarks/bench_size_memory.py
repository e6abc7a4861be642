"""Peak memory of the VAE against the output size: the figures behind `talkingpose.memory`.

    python -m benchmarks.bench_size_memory --preset sd15 --sizes 256 512
    python -m benchmarks.bench_size_memory --preset tiny --sizes 256 512

Each size runs in a fresh child process (one thread, float32, random weights of the preset's VAE): the peak
resident set size after encoding one picture and decoding its latent, less the size after building the VAE,
divided by the pixel count. The fixed part of the peak is in the smaller size's figure, so it is the larger.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import resource, sys, torch
sys.path.insert(0, sys.argv[1])
from diffusers import AutoencoderKL
from talkingpose.random_weights import PRESETS
torch.set_num_threads(1)
side = int(sys.argv[3])
vae = AutoencoderKL(**PRESETS[sys.argv[2]]["vae"]).eval()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.no_grad():
    latent = vae.encode(torch.rand(1, 3, side, side) * 2 - 1).latent_dist.mean
    vae.decode(latent)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024 / side**2)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="sd15", choices=["sd15", "tiny"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()
    for side in args.sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), args.preset, str(side)], check=True,
                             capture_output=True, text=True).stdout
        print(f"{args.preset} {side}x{side}: {float(out):.0f} bytes per pixel (peak RSS over the VAE's own size)")


if __name__ == "__main__":
    main()
