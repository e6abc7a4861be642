"""`pose`: keypoint tracks on their own — extract once, retarget to a source person, smooth, draw.

    pose extract  --video V.mp4 --out track.json                 DWPose keypoints only (POSE_KEYPOINT JSON)
    pose retarget --source SRC --driving DRV.json --out OUT.json [--smooth [STRENGTH]]
    pose smooth   --driving DRV.json --out OUT.json [--strength S]
    pose draw     --keypoints track.json --out poses.mp4 --size WxH [--fps F]

The JSON is comfyui_controlnet_aux's POSE_KEYPOINT format (Save/Load Pose Keypoints read and write it), so a track
can be edited in a pose editor between the steps. `draw` renders exactly as Pose Extract draws.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_alignment, output_file, size

_MODELS_HELP = ("models root with dwpose/ (default: $TALKINGPOSE_MODELS or ComfyUI's models/); DWPose runs only "
                "for `extract` and for an image given as --source")


# `--smooth` given without a number. The number lives in the engine (smoothing.DEFAULT_STRENGTH); importing it here
# would load numpy and OpenCV for every command's --help.
DEFAULT = "default"


def strength(text: str) -> float:
    """A smoothing strength argument (checked against 0..1 by the engine); argparse passes string defaults through
    here too."""
    if text == DEFAULT:
        return DEFAULT
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"strength '{text}' is not a number from 0 (off) to 1") from None


def resolve_strength(value) -> float:
    from ..pose.smoothing import DEFAULT_STRENGTH

    return DEFAULT_STRENGTH if value == DEFAULT else float(value)


def register(subparsers) -> None:
    pose = subparsers.add_parser("pose", help="extract, retarget, smooth or draw keypoint tracks (POSE_KEYPOINT JSON)",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = pose.add_subparsers(dest="pose_command", required=True)

    ex = commands.add_parser("extract", help="DWPose keypoints of every frame of a video, as POSE_KEYPOINT JSON")
    ex.add_argument("--video", type=Path, required=True, help="driving video")
    ex.add_argument("--out", type=output_file, required=True, help="output .json")
    ex.add_argument("--frames", type=int, help="stop after this many frames")
    ex.add_argument("--models", type=Path, help=_MODELS_HELP)
    ex.set_defaults(func=run_extract)

    rt = commands.add_parser("retarget", help="give a driving track the source person's bone lengths")
    rt.add_argument("--source", type=Path, required=True, help="source image, or a one-frame POSE_KEYPOINT .json")
    rt.add_argument("--driving", type=Path, required=True, help="driving track (.json)")
    rt.add_argument("--out", type=output_file, required=True, help="output .json (in the source's canvas)")
    rt.add_argument("--smooth", type=strength, nargs="?", const=DEFAULT, default=0.0, metavar="STRENGTH",
                    help="also smooth, 0 (off) to 1 (alone: the default strength, 0.5)")
    add_alignment(rt, ["retarget", "similarity"], "retarget", legacy_flag="--mode",
                  help="retarget: every bone to the source's length (default); similarity: one scale and shift per "
                       "video")
    rt.add_argument("--models", type=Path, help=_MODELS_HELP)
    rt.set_defaults(func=run_retarget)

    sm = commands.add_parser("smooth", help="smooth a track, looking ahead (jitter out, no delay, sudden moves kept)")
    sm.add_argument("--driving", type=Path, required=True, help="track to smooth (.json)")
    sm.add_argument("--out", type=output_file, required=True, help="output .json")
    sm.add_argument("--strength", type=strength, default=DEFAULT,
                    help="0 (off: the input unchanged) to 1 (default: the default strength, 0.5)")
    sm.set_defaults(func=run_smooth)

    dr = commands.add_parser("draw", help="render a track as Pose Extract draws it")
    dr.add_argument("--keypoints", type=Path, required=True, help="track (.json)")
    dr.add_argument("--out", type=output_file, required=True,
                    help="output video (.mp4), or a folder for lossless PNG frames (frame_00000.png, …)")
    dr.add_argument("--size", type=size, help="WIDTHxHEIGHT of the renders (default: the track's canvas)")
    dr.add_argument("--fps", type=float, default=25.0, help="frame rate of the video (default 25)")
    dr.set_defaults(func=run_draw)


def _extractor(args):
    """DWPose with the weights in `<models root>/dwpose` (or the other places DWPose is looked for)."""
    from ..pose import PoseExtractor
    from ..runtime import models_root

    return PoseExtractor.from_folders([models_root(args.models) / "dwpose"])


def _check_json_out(path: Path) -> None:
    from ..errors import TalkingPoseError

    if path.is_dir():
        raise TalkingPoseError(f"--out {path} is a folder; give a file name ending in .json.")


def _load_track(path: Path):
    from ..pose import from_pose_keypoints, load_pose_keypoints

    return from_pose_keypoints(load_pose_keypoints(path))


def _write_track(path: Path, frames, canvas_hw=None) -> None:
    from ..pose import save_pose_keypoints, to_pose_keypoints

    save_pose_keypoints(path, to_pose_keypoints(frames, canvas_hw))
    print(f"wrote {path} ({len(frames)} frames)")


def run_extract(args) -> int:
    from ..pose.track import extract_video_track

    _check_json_out(args.out)
    track = extract_video_track(args.video, _extractor(args), max_frames=args.frames)
    _write_track(args.out, track)
    return 0


def run_retarget(args) -> int:
    from ..pose.track import load_source_pose, process_track

    _check_json_out(args.out)
    driving = _load_track(args.driving)
    source = load_source_pose(args.source, lambda: _extractor(args))
    space = None
    if args.alignment == "similarity":  # measured on the driving canvas, where the aligned poses stay
        space = (driving[0].canvas_hw[1], driving[0].canvas_hw[0])
    frames, state = process_track(driving, source=source, mode=args.alignment, strength=resolve_strength(args.smooth),
                                  space=space)
    if state.retarget is not None:
        print(f"body size ratio {state.retarget.body_ratio:.3f}; hands {state.retarget.hand_ratios[0]:.3f}/"
              f"{state.retarget.hand_ratios[1]:.3f}; face {state.retarget.face_ratio:.3f}")
        for note in state.retarget.notes:
            print(f"note: {note}")
    _write_track(args.out, frames)
    return 0


def run_smooth(args) -> int:
    from ..pose.track import process_track

    _check_json_out(args.out)
    frames, _ = process_track(_load_track(args.driving), strength=resolve_strength(args.strength))
    _write_track(args.out, frames)
    return 0


def run_draw(args) -> int:
    import numpy as np
    from PIL import Image

    from ..errors import TalkingPoseError
    from ..pose import render_pose
    from ..pose.keypoints import MAX_CANVAS_SIDE
    from ..video_io import VideoWriter

    track = _load_track(args.keypoints)
    width, height = args.size or (track[0].canvas_hw[1], track[0].canvas_hw[0])
    if not (2 <= width <= MAX_CANVAS_SIDE and 2 <= height <= MAX_CANVAS_SIDE):
        raise TalkingPoseError(f"--size {width}x{height}: each side must be from 2 to {MAX_CANVAS_SIDE} pixels.")
    to_folder = args.out.suffix == "" or args.out.is_dir()
    if to_folder:
        args.out.mkdir(parents=True, exist_ok=True)
        for i, pose in enumerate(track):
            Image.fromarray(np.ascontiguousarray(render_pose(pose, width, height))).save(args.out / f"frame_{i:05d}.png")
    else:
        if args.out.suffix.lower() != ".mp4":
            raise TalkingPoseError(f"--out {args.out.name}: give an .mp4 file, or a folder for PNG frames.")
        with VideoWriter(args.out, args.fps, (width, height)) as writer:
            for pose in track:
                writer.write(render_pose(pose, width, height))
    print(f"wrote {args.out} ({len(track)} frames, {width}x{height})")
    return 0
