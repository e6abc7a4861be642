"""Print the smoothing figures of the README: jitter before/after and the lag on a sudden move, per strength and
part, on the synthetic noisy tracks of tests/test_smoothing.py (a still or slowly swaying person, 1.5 px jitter,
a 60 px jump at frame 100).

    python tools/smoothing_figures.py
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from talkingpose.pose import smooth_track  # noqa: E402
from test_smoothing import jitter_figures, noisy_track  # noqa: E402


def main() -> int:
    print("track   strength  part   residual px (before -> after)  mean |accel| px/frame^2  frames to follow the jump")
    for sway in (0.0, 6.0):
        clean, noisy = noisy_track(sway_px=sway)
        for strength in (0.25, 0.5, 0.75, 1.0):
            smoothed, _ = smooth_track(noisy, strength)
            for part in ("body", "hands", "face"):
                before, after, acc_before, acc_after, settle = jitter_figures(clean, noisy, smoothed, part)
                track = "sway" if sway else "still"
                print(f"{track:7s} {strength:8.2f}  {part:5s}  {before:5.2f} -> {after:5.2f} ({after / before:4.2f})"
                      f"           {acc_before:5.2f} -> {acc_after:5.2f} ({acc_after / acc_before:4.2f})    {settle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
