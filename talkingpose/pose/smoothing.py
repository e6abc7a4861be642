"""Temporal smoothing of keypoint tracks: a One-Euro filter on every visible point.

The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) is a low-pass filter whose cutoff rises with the point's
speed: a point at rest is smoothed hard (jitter goes), a point that moves fast is followed closely (no lag on a
sudden move). Per point and frame, with everything measured in frames and in short sides of the canvas:

    v      = low-pass(x - x_prev, d_cutoff)          (the raw motion, so zero-mean jitter averages out)
    cutoff = min_cutoff + beta · |v|
    x^     = x^_prev + alpha(cutoff) · (x - x^_prev),   alpha(f) = 1 / (1 + 1 / (2 pi f))

The speed |v| is that of the point (its x and y share one cutoff), so a diagonal move is followed like a horizontal
one. Body, hands and face have their own settings: hands move fastest, and the mouth's small quick motions carry
the speech. A point that disappears (a hidden joint: confidence below 0.3 / coordinates -1) leaves the filter,
and it restarts from the raw position when it comes back, so nothing is dragged across a gap.

One `strength` (0–1) picks the settings; 0 switches the filter off and returns the input frames untouched. The
filter is causal: its `SmootherState` after frame k is all it needs to continue at frame k+1, so a track smoothed
in chunks equals the track smoothed at once.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ..errors import TalkingPoseError
from .keypoints import BODY_POINTS, FACE_POINTS, HAND_POINTS, PoseFrame

DEFAULT_STRENGTH = 0.5
POINTS = BODY_POINTS + 2 * HAND_POINTS + FACE_POINTS
_BODY = slice(0, BODY_POINTS)
_HANDS = slice(BODY_POINTS, BODY_POINTS + 2 * HAND_POINTS)
_FACE = slice(BODY_POINTS + 2 * HAND_POINTS, POINTS)


@dataclass(frozen=True)
class OneEuro:
    """Filter settings in frame units: cutoffs in cycles per frame, `beta` per (canvas short side per frame)."""

    min_cutoff: float
    beta: float
    d_cutoff: float = 0.15


# Settings at the default strength 0.5, chosen on synthetic tracks (tests/test_smoothing.py, numbers in the README):
# the body's jitter more than halves and a sudden move is followed within a frame or two; the face adapts fastest
# so that the lips' quick small motions (speech) keep their amplitude; hands sit in between.
_DEFAULT_SETTINGS = {
    "body": OneEuro(min_cutoff=0.03, beta=40.0, d_cutoff=0.02),
    "hands": OneEuro(min_cutoff=0.04, beta=40.0, d_cutoff=0.05),
    "face": OneEuro(min_cutoff=0.03, beta=160.0, d_cutoff=0.05),
}
# Strength s scales the minimum cutoff by 16^(1-2s) and beta by 4^(1-2s): s = 1 smooths 16x harder at rest and
# adapts 4x slower, s near 0 hardly filters.
_CUTOFF_RANGE, _BETA_RANGE = 16.0, 4.0


def settings_for(strength: float) -> dict[str, OneEuro]:
    """The body/hands/face filter settings for a strength in (0, 1]."""
    strength = check_strength(strength)
    if strength == 0:
        raise ValueError("strength 0 means no filter")
    exponent = 1.0 - 2.0 * strength
    return {part: OneEuro(s.min_cutoff * _CUTOFF_RANGE ** exponent, s.beta * _BETA_RANGE ** exponent, s.d_cutoff)
            for part, s in _DEFAULT_SETTINGS.items()}


def check_strength(strength) -> float:
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise TalkingPoseError("The smoothing strength must be a number from 0 (off) to 1.") from None
    if not 0.0 <= value <= 1.0:
        raise TalkingPoseError(f"The smoothing strength must be from 0 (off) to 1; got {value:g}.")
    return value


def _alpha(cutoff):
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff))


@dataclass
class SmootherState:
    """Where the filter stands after the last frame: for each of the 128 points (body, left hand, right hand,
    face; in short sides of the canvas) its filtered and its raw position and its low-passed velocity, which
    points are being followed, the canvas, the strength and the number of frames seen."""

    position: np.ndarray  # [128, 2] filtered
    raw: np.ndarray  # [128, 2] as given
    velocity: np.ndarray  # [128, 2] per frame
    live: np.ndarray  # [128] bool
    canvas_hw: tuple[int, int] | None
    strength: float
    frames: int = 0

    @classmethod
    def start(cls, strength: float) -> "SmootherState":
        return cls(np.zeros((POINTS, 2)), np.zeros((POINTS, 2)), np.zeros((POINTS, 2)), np.zeros(POINTS, dtype=bool),
                   None, check_strength(strength))

    def to_dict(self) -> dict:
        """Plain JSON types (floats round-trip exactly through JSON)."""
        return {"position": self.position.tolist(), "raw": self.raw.tolist(), "velocity": self.velocity.tolist(),
                "live": self.live.tolist(),
                "canvas_hw": None if self.canvas_hw is None else list(self.canvas_hw), "strength": self.strength,
                "frames": self.frames}

    @classmethod
    def from_dict(cls, data: dict) -> "SmootherState":
        try:
            state = cls(*(np.asarray(data[key], dtype=np.float64).reshape(POINTS, 2)
                          for key in ("position", "raw", "velocity")),
                        np.asarray(data["live"], dtype=bool).reshape(POINTS),
                        None if data["canvas_hw"] is None else tuple(int(v) for v in data["canvas_hw"]),
                        check_strength(data["strength"]), int(data["frames"]))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise TalkingPoseError(f"The saved smoothing state is damaged ({type(exc).__name__}); start the render "
                                   "again from its first frame.") from None
        arrays = (state.position, state.raw, state.velocity)
        if not all(np.isfinite(a).all() for a in arrays) or state.frames < 0:
            raise TalkingPoseError("The saved smoothing state is damaged; start the render again from its first frame.")
        return state


class PoseSmoother:
    """Streams frames through the filter: `smoother(frame)` returns the smoothed frame; `smoother.state` continues
    it later (another chunk, another queue run)."""

    def __init__(self, strength: float = DEFAULT_STRENGTH, state: SmootherState | None = None):
        strength = check_strength(strength)
        if state is not None and state.strength != strength:
            raise TalkingPoseError(f"The smoothing state was made with strength {state.strength:g}, this run asks "
                                   f"for {strength:g}. Use the same strength to continue the render.")
        self.strength = strength
        # A copy: the caller's state (a node's cached output, a loaded file) must stay as it was.
        self.state = copy.deepcopy(state) if state is not None else SmootherState.start(strength)
        if strength > 0:
            settings = settings_for(strength)
            parts = ((_BODY, settings["body"]), (_HANDS, settings["hands"]), (_FACE, settings["face"]))
            self._min_cutoff = np.empty(POINTS)
            self._beta = np.empty(POINTS)
            self._d_alpha = np.empty(POINTS)
            for where, s in parts:
                self._min_cutoff[where], self._beta[where], self._d_alpha[where] = s.min_cutoff, s.beta, _alpha(s.d_cutoff)

    def __call__(self, frame: PoseFrame | None) -> PoseFrame | None:
        state = self.state
        state.frames += 1
        if self.strength == 0:
            return frame
        if frame is None or frame.is_empty:
            state.live[:] = False  # nobody: every point restarts when the person comes back
            return frame
        if state.canvas_hw is not None and tuple(frame.canvas_hw) != tuple(state.canvas_hw):
            raise TalkingPoseError(
                f"The track changes canvas at frame {state.frames - 1} ({frame.canvas_hw[1]}x{frame.canvas_hw[0]}, "
                f"before {state.canvas_hw[1]}x{state.canvas_hw[0]}). Smooth one video's track at a time."
            )
        state.canvas_hw = tuple(frame.canvas_hw)
        height, width = frame.canvas_hw
        unit = np.array([width, height], dtype=np.float64) / min(width, height)  # normalised -> short sides
        raw = np.concatenate([frame.body, frame.hands.reshape(-1, 2), frame.face]) * unit
        visible = np.concatenate([frame.body_visible, frame.hands_visible.reshape(-1), frame.face_visible])

        follow = visible & state.live
        start = visible & ~state.live
        d_alpha = self._d_alpha[:, None]
        velocity = d_alpha * (raw - state.raw) + (1.0 - d_alpha) * state.velocity
        alpha = _alpha(self._min_cutoff + self._beta * np.linalg.norm(velocity, axis=-1))[:, None]
        smoothed = state.position + alpha * (raw - state.position)
        state.position = np.where(follow[:, None], smoothed, np.where(start[:, None], raw, state.position))
        state.velocity = np.where(follow[:, None], velocity, 0.0)
        state.raw = np.where(visible[:, None], raw, state.raw)
        state.live = visible.copy()

        out = np.where(visible[:, None], state.position / unit, np.concatenate(
            [frame.body, frame.hands.reshape(-1, 2), frame.face]))
        return replace(frame, body=out[_BODY].copy(), hands=out[_HANDS].reshape(2, HAND_POINTS, 2).copy(),
                       face=out[_FACE].copy())


def smooth_track(frames: Sequence[PoseFrame | None], strength: float = DEFAULT_STRENGTH,
                 state: SmootherState | None = None) -> tuple[list[PoseFrame | None], SmootherState]:
    """Smooth a whole track (or the next chunk of one, given the `state` the previous chunk returned)."""
    smoother = PoseSmoother(strength, state)
    return [smoother(f) for f in frames], smoother.state
