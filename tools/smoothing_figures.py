"""Print the smoothing table of docs/poses.md, per strength, for the whole-track smoother (the command line) and the
causal filter every node run uses (zero-lag FIR in motion, One-Euro at rest; meta-batch chunks and renders continued
from a state equal one-shot runs), on the synthetic tracks of tests/test_smoothing.py and tests/pose_tracks.py:

- a still person (512x512, 1.5 px jitter) who jumps 60 px at frame 100: body residual to the clean track and mean
  |frame-to-frame acceleration| before -> after, frames until every body point is within 10% of the jump;
- a speaker gesturing at 1 Hz (1280x720, 25 fps, wrist up to 25 px per frame, 2.5 px noise), both arms: jitter
  (acceleration the clean motion does not have) as a share of the raw track's, mean distance to the clean track,
  amplitude kept, lag in frames;
- lips opening 5 px four times a second (no noise): amplitude kept, lag.

    python tools/smoothing_figures.py
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pose_tracks import LEFT_ARM, LIPS, RIGHT_ARM, talking_track  # noqa: E402
from talkingpose.pose.smoothing import DEFAULT_STRENGTH, smooth_track, smooth_whole_track  # noqa: E402
from test_smoothing import jitter_figures, motion_figures, noisy_track  # noqa: E402

FILTERS = {"whole track (command line)": smooth_whole_track,
           "causal (nodes)": lambda frames, s: smooth_track(frames, s)[0]}


def main() -> int:
    still_clean, still_noisy = noisy_track()
    talk_clean, talk_noisy = talking_track()
    lips, _ = talking_track(wrist_speed=0.0, noise_px=0.0, lips_hz=4, lips_px=5)
    _, raw_distance, _, _, _ = motion_figures(talk_clean, talk_noisy, talk_noisy, RIGHT_ARM + LEFT_ARM)
    print(f"| strength | smoother | still: body jitter px (raw {jitter_figures(still_clean, still_noisy, still_noisy, 'body')[0]:.2f}) "
          f"| still: mean acceleration (raw {jitter_figures(still_clean, still_noisy, still_noisy, 'body')[2]:.2f}) "
          "| frames to follow the jump | gesture: jitter (of raw) "
          f"| gesture: distance to truth px (raw {raw_distance:.2f}) | gesture: amplitude | gesture: lag (frames) "
          "| lips 4 Hz: amplitude | lips: lag (frames) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for strength in (0.25, 0.5, 0.75, 1.0):
        for name, smooth in FILTERS.items():
            _, after, _, acc_after, settle = jitter_figures(still_clean, still_noisy, smooth(still_noisy, strength), "body")
            jitter, _, distance, amplitude, lag = motion_figures(talk_clean, talk_noisy, smooth(talk_noisy, strength),
                                                                 RIGHT_ARM + LEFT_ARM)
            _, _, _, lips_amplitude, lips_lag = motion_figures(lips, lips, smooth(lips, strength), LIPS)
            label = f"**{strength:g}** (default)" if strength == DEFAULT_STRENGTH else f"{strength:g}"
            print(f"| {label} | {name} | {after:.2f} | {acc_after:.2f} | {settle} | {jitter:.2f} | {distance:.2f} "
                  f"| {amplitude:.2f} | {lag:+.1f} | {lips_amplitude:.0%} | {lips_lag:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
