"""Draw docs/retarget.png: one driving frame, its raw render, its similarity-aligned render and its retargeted render
onto a source person of other proportions, all with the pack's own drawing code (what Pose Extract draws).

The people are the synthetic ones of the tests (tests/pose_tracks.py): a driver with long arms, a big head and narrow
shoulders, and a source with broad shoulders, short arms and a small head, so every bone length is known.

    python tools/retarget_figure.py [--out docs/retarget.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pose_tracks import SOURCE_LENGTHS, driving_track, person  # noqa: E402
from talkingpose.pose import process_track, render_pose  # noqa: E402

PANEL = 384
FRAME = 9  # a frame with both arms raised: the arm lengths show


def _label(image: np.ndarray, lines: list[str]) -> np.ndarray:
    out = np.vstack([np.full((56, image.shape[1], 3), 255, np.uint8), image])
    for k, text in enumerate(lines):
        cv2.putText(out, text, (8, 22 + 24 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (20, 20, 20), 1, cv2.LINE_AA)
    return out


def figure() -> np.ndarray:
    driving = driving_track(40)
    source = person(SOURCE_LENGTHS, neck=(300.0, 170.0), hand_size=15.0, face_size=45.0)
    aligned, _ = process_track(driving, source=source, mode="similarity", space=(512, 512))
    retargeted, state = process_track(driving, source=source, mode="retarget")
    panels = [
        (render_pose(source, PANEL, PANEL), ["source person (the photo's pose)", "broad shoulders, short arms"]),
        (render_pose(driving[FRAME], PANEL, PANEL), [f"driving frame {FRAME}, raw", "long arms, big head"]),
        (render_pose(aligned[FRAME], PANEL, PANEL), ["similarity alignment (one scale+shift)", "driver's proportions"]),
        (render_pose(retargeted[FRAME], PANEL, PANEL),
         ["retargeted (bone lengths of the source)", f"body ratio {state.retarget.body_ratio:.2f}"]),
    ]
    gap = np.full((PANEL + 56, 8, 3), 255, np.uint8)
    row = []
    for image, lines in panels:
        row += [_label(image, lines), gap]
    return np.hstack(row[:-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "retarget.png")
    args = parser.parse_args(argv)
    cv2.imwrite(str(args.out), cv2.cvtColor(figure(), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
