"""A driving keypoint track made ready to draw: fitted to the source person, then smoothed.

`process_track` is the one path the Pose Extract node, the Retarget/Smooth nodes, `cli.py pose …` and
`cli.py animate` share:

- alignment (`mode`, one of `MODES`, the values of the nodes' `alignment` and the command line's `--alignment`):
  ``"off"`` leaves the poses where they are; ``"similarity"`` is one similarity transform per video (scale and
  shift from neck, shoulders and head, `align.py`); ``"retarget"`` gives every bone the source's length
  (`retarget.py`; the output lives in the source's canvas);
- then smoothing at `strength` (0: off, `smoothing.py`): a whole track with the zero-phase smoother, which looks
  a few frames ahead; a track that arrives in chunks (`streaming`, or continued from a `state`) with the causal
  filter (zero-lag FIR in motion, One-Euro at rest), which never needs a frame it has not seen.

The per-video alignment and the causal filter are carried in a `PoseTrackState`, so a video processed in chunks
(VideoHelperSuite meta batches, renders resumed from a saved state) equals the same video streamed at once, provided
the alignment was measured on the same leading frames: a chunked render measures it on its first chunk
(`calibration_frames`).
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from typing import Sequence

from ..errors import TalkingPoseError
from .align import Alignment, estimate_alignment
from .keypoints import PoseFrame
from .retarget import Retarget, check_one_canvas, estimate_retarget
from .smoothing import PoseSmoother, SmootherState, check_strength, smooth_whole_track

log = logging.getLogger("TalkingPose")

MODES = ("off", "similarity", "retarget")
# The spellings before the options were given one name (the command line's `--retarget align|full`, `pose retarget
# --mode`): pose states and resumable renders saved then record them, and old command lines still use them.
LEGACY_MODES = {"align": "similarity", "full": "retarget"}
STATE_FORMAT = "talkingpose-pose-state/1"


@dataclass
class PoseTrackState:
    """How far a track has been processed and with which per-video alignment and filter state."""

    mode: str
    strength: float
    frames: int = 0
    alignment: Alignment | None = None
    retarget: Retarget | None = None
    smoother: SmootherState | None = None

    def to_dict(self) -> dict:
        """Plain JSON types, exact: floats round-trip through JSON unchanged."""
        return {
            "format": STATE_FORMAT, "mode": self.mode, "strength": self.strength, "frames": self.frames,
            "alignment": None if self.alignment is None else {**asdict(self.alignment), "space": list(self.alignment.space)},
            "retarget": None if self.retarget is None else self.retarget.to_dict(),
            "smoother": None if self.smoother is None else self.smoother.to_dict(),
        }

    @classmethod
    def from_dict(cls, data) -> "PoseTrackState":
        if (not isinstance(data, dict) or data.get("format") != STATE_FORMAT
                or upgrade_mode(data.get("mode")) not in MODES):
            raise TalkingPoseError("The saved pose state is damaged or not a TalkingPose pose state; start the render "
                                   "again from its first frame.")
        try:
            alignment = data.get("alignment")
            if alignment is not None:
                alignment = Alignment(float(alignment["scale"]), float(alignment["tx"]), float(alignment["ty"]),
                                      tuple(int(v) for v in alignment["space"]))
            frames = int(data["frames"])
            strength = check_strength(data["strength"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TalkingPoseError(f"The saved pose state is damaged ({type(exc).__name__}); start the render again "
                                   "from its first frame.") from None
        retarget = None if data.get("retarget") is None else Retarget.from_dict(data["retarget"])
        smoother = None if data.get("smoother") is None else SmootherState.from_dict(data["smoother"])
        if frames < 0:
            raise TalkingPoseError("The saved pose state is damaged (negative frame count); start the render again "
                                   "from its first frame.")
        return cls(upgrade_mode(data["mode"]), strength, frames, alignment, retarget, smoother)


def upgrade_mode(mode):
    """An alignment in today's spelling (`LEGACY_MODES` mapped; anything else as it is)."""
    return LEGACY_MODES.get(mode, mode) if isinstance(mode, str) else mode


def check_mode(mode: str) -> str:
    """The alignment in today's spelling; a clear error for anything else."""
    mode = upgrade_mode(mode)
    if mode not in MODES:
        raise TalkingPoseError(f"alignment must be one of {', '.join(MODES)}; got {mode!r}.")
    return mode


def process_track(frames: Sequence[PoseFrame | None], *, source: PoseFrame | None = None, mode: str = "off",
                  strength: float = 0.0, space: tuple[int, int] | None = None, calibration_frames: int = 0,
                  state: PoseTrackState | None = None,
                  streaming: bool = False) -> tuple[list[PoseFrame | None], PoseTrackState]:
    """Fit (see module doc) and smooth the next `frames` of a track.

    `source`: the source person's pose (needed by ``similarity`` and ``retarget``). `space`: (width, height) the
    renders are stretched to, in which ``similarity`` measures (default: the driving canvas). `calibration_frames`: how many of
    the leading frames measure the alignment (0: all of `frames`). `state`: what the previous chunk of the same
    video returned; its alignment is reused and its causal filter continued. `streaming`: more chunks of this video will follow
    (a meta batch), so smooth with the causal filter from the first chunk on. Otherwise `frames` are the whole
    track and the zero-phase smoother runs; the returned state then holds the causal filter as it stands after
    these frames too, so that a render continued from it goes on without a restart.
    """
    mode = check_mode(mode)
    strength = check_strength(strength)
    if state is not None and (state.mode, state.strength) != (mode, strength):
        raise TalkingPoseError(
            f"The pose state was made with alignment '{state.mode}' and smoothing {state.strength:g}; this run asks for "
            f"'{mode}' and {strength:g}. Use the same settings to continue the render, or start it again."
        )
    # A copy: the caller's state (a node's cached output, a loaded file) must stay as it was.
    state = copy.deepcopy(state) if state is not None else PoseTrackState(mode, strength)
    frames = list(frames)
    window = frames[:calibration_frames] if calibration_frames and calibration_frames > 0 else frames
    if mode != "off" and source is None:
        raise TalkingPoseError(f"alignment '{mode}' needs the source person's pose; give a source image or pose.")
    if mode == "similarity":
        if state.alignment is None:
            canvas = check_one_canvas(window)
            if space is None:
                if canvas is None:
                    raise TalkingPoseError("The driving track shows nobody, so there is nothing to align.")
                space = (canvas[1], canvas[0])
            state.alignment = estimate_alignment(source, window, space)
        frames = [state.alignment.apply(f) for f in frames]
    elif mode == "retarget":
        if state.retarget is None:
            state.retarget = estimate_retarget(source, window)
        frames = [state.retarget.apply(f) for f in frames]
    if strength > 0:
        whole_track = not streaming and state.frames == 0 and state.smoother is None
        smoother = PoseSmoother(strength, state.smoother)
        streamed = [smoother(f) for f in frames]
        state.smoother = smoother.state
        frames = smooth_whole_track(frames, strength) if whole_track else streamed
    state.frames += len(frames)
    return frames, state


# ------------------------------------------------------------------------------------- tracks from files
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def extract_video_track(video, extractor, max_frames: int | None = None) -> list[PoseFrame]:
    """DWPose keypoints of every frame of a video (keypoints only: a few KB per frame)."""
    from ..video_io import VideoReader

    with VideoReader(video, max_frames=max_frames) as reader:
        track = list(extractor.iter_extract(reader))
    if not track:
        raise TalkingPoseError(f"{video} has no frames to extract poses from.")
    return track


def load_source_pose(path, extractor_factory) -> PoseFrame:
    """The source person's pose: DWPose on an image, or a one-frame POSE_KEYPOINT JSON (several people: the most
    confident, as everywhere). `extractor_factory()` is called only for an image."""
    from pathlib import Path

    from .keypoints import from_pose_keypoints, load_pose_keypoints

    path = Path(path)
    if path.suffix.lower() == ".json":
        frames = load_pose_keypoints(path)
        if len(frames) != 1:
            raise TalkingPoseError(f"{path} holds {len(frames)} frames; the source pose is one frame. Save the "
                                   "source image's pose alone (e.g. `pose extract` on the image), or give the image.")
        return from_pose_keypoints(frames)[0]
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise TalkingPoseError(f"The source {path.name} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a "
                               "POSE_KEYPOINT .json file.")
    if not path.is_file():
        raise TalkingPoseError(f"Source image not found: {path}.")
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise TalkingPoseError(f"Could not read the source image {path} ({exc}).") from None
    return extractor_factory()(rgb)
