"""Temporal smoothing of keypoint tracks: a zero-phase local-polynomial smoother for a whole track, and a causal
One-Euro filter for a track that arrives in pieces.

**Whole track** (`smooth_whole_track`: the command line, a node that gets the whole video). Every visible point is
replaced by a least-squares polynomial fitted to its own positions a few frames before *and after* (Savitzky-Golay
style), so the smoothed track has no delay: the fit sits on the motion, not behind it. Per point and frame, in
short sides of the canvas:

    light  = degree-4 fit over ±h_light frames     (keeps fast gestures and the lips' 3–5 Hz motion)
    strong = degree-1 fit over ±h_strong frames    (a point at rest: jitter averaged over many frames)
    x_hat = strong + w · (light - strong),  w = how fast the point moves around that frame (0 at rest, 1 moving)

`w` comes from the RMS speed of the light fit over ±4 frames, so it is as symmetric in time as the fits are (no lag)
and does not drop at the turning point of a gesture. Body and hands blend the two; the face uses the light fit
only, because the lips' small quick motions cannot be told from detection noise frame by frame. Near the ends of a
visible stretch the window is cut and the degree lowered until the fit is no noisier than the raw point.

**In pieces** (`PoseSmoother`, `smooth_track`: VideoHelperSuite meta-batch chunks, a render continued from a saved
state). A chunk's last frames have no frames after them yet, so a filter that looks ahead cannot give the same
answer in chunks as at once. Here the One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) runs instead: a low-pass
filter whose cutoff rises with the point's speed, causal, so its `SmootherState` after frame k is all it needs to
continue at frame k+1 and a track smoothed in chunks equals the track smoothed at once. Per point and frame:

    v      = low-pass(x - x_prev, d_cutoff)          (the raw motion, so zero-mean jitter averages out)
    cutoff = min_cutoff + beta · |v|
    x^     = x^_prev + alpha(cutoff) · (x - x^_prev),   alpha(f) = 1 / (1 + 1 / (2 pi f))

The speed |v| is that of the point (its x and y share one cutoff), so a diagonal move is followed like a horizontal
one. What being causal costs on fast motion is in the README's smoothing table.

Both: body, hands and face have their own settings; a point that disappears (a hidden joint: confidence below 0.3
/ coordinates -1) leaves the filter, and it restarts from where it comes back, so nothing is dragged across a gap.
One `strength` (0–1) picks the settings; 0 switches smoothing off and returns the input frames untouched.
"""
from __future__ import annotations

import copy
import functools
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


# ------------------------------------------------------------------------------------------- whole track
@dataclass(frozen=True)
class LookAhead:
    """Half-widths (frames) of the light (degree-4) and strong (degree-1) fits at the default strength; `strong` None:
    the light fit alone."""

    light: int
    strong: int | None
    light_most: int | None = None  # the light fit's widest half-width at any strength


# Chosen on synthetic tracks (tests/test_smoothing.py, figures in the README): at 25 fps a ±4-frame quartic keeps
# 1–2 Hz gestures whole and the lips' 4 Hz motion at 90 %; a ±6-frame straight line averages a still point's jitter
# over 13 frames. Strength s scales every half-width by 2s (0.25: the light fit is ±2 frames, a quadratic; 1: double).
# The face stops at ±6 frames: wider, a quartic's response to 4 Hz turns negative (the lips would move the wrong way).
_LOOK_AHEAD = {"body": LookAhead(4, 6), "hands": LookAhead(4, 6), "face": LookAhead(4, None, light_most=6)}
_LIGHT_DEGREE, _STRONG_DEGREE = 4, 1
# The blend: RMS speed of the light fit over ±_MOTION_HALF frames, in canvas short sides per frame; at or below
# _STILL_SPEED the strong fit alone, at or above _MOVING_SPEED the light fit alone (about 0.8 and 2 px per frame on
# a 512 canvas: detection jitter alone stays below the first, a gesturing hand far above the second).
_MOTION_HALF = 4
_STILL_SPEED, _MOVING_SPEED = 0.0015, 0.004


def look_ahead_for(strength: float) -> dict[str, LookAhead]:
    """The body/hands/face half-widths for a strength in (0, 1]."""
    strength = check_strength(strength)
    if strength == 0:
        raise ValueError("strength 0 means no filter")
    return {part: LookAhead(min(round(2 * strength * s.light), s.light_most or math.inf),
                            None if s.strong is None else round(2 * strength * s.strong))
            for part, s in _LOOK_AHEAD.items()}


@functools.lru_cache(maxsize=None)
def _fit_weights(half: int, degree: int) -> np.ndarray:
    """[half+1, half+1, 2·half+1]: for a window cut to `left` frames before and `right` after, the weights that give
    the least-squares polynomial's value at the centre frame. The degree is lowered until the fit averages, i.e. is
    less noisy than the raw point (sum of squared weights below 1): a quartic through five frames would only
    reproduce them, and one on a window cut short by a gap could be noisier than no smoothing."""
    table = np.zeros((half + 1, half + 1, 2 * half + 1))
    for left in range(half + 1):
        for right in range(half + 1):
            offsets = np.arange(-left, right + 1)
            for d in range(min(degree, len(offsets) - 1), -1, -1):
                weights = np.linalg.pinv(np.vander(offsets, d + 1, increasing=True))[0]
                if d == 0 or (weights ** 2).sum() < 1.0 - 1e-9:
                    break
            table[left, right, half - left:half + right + 1] = weights
    return table


def _fit(values: np.ndarray, before: np.ndarray, after: np.ndarray, half: int, degree: int) -> np.ndarray:
    """The local polynomial fit of `values` [T, N, ...] over ±half frames, each window cut to the visible stretch
    (`before`/`after` [T, N]: visible frames of the same stretch before and after each frame)."""
    if half == 0:
        return values.copy()
    table = _fit_weights(half, degree)
    left, right = np.minimum(before, half), np.minimum(after, half)
    frames = np.arange(len(values))
    out = np.zeros_like(values)
    extra = (1,) * (values.ndim - 2)
    for k in range(-half, half + 1):
        weights = table[left, right, half + k]  # zero where the window does not reach that far
        out += weights.reshape(weights.shape + extra) * values[np.clip(frames + k, 0, len(values) - 1)]
    return out


def _stretches(visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each frame and point [T, N]: how many frames of its visible stretch lie before it and after it."""
    frames = np.arange(len(visible))[:, None]
    starts = visible & ~np.vstack([np.zeros_like(visible[:1]), visible[:-1]])
    ends = visible & ~np.vstack([visible[1:], np.zeros_like(visible[:1])])
    first = np.maximum.accumulate(np.where(starts, frames, 0), axis=0)
    last = np.minimum.accumulate(np.where(ends, frames, len(visible))[::-1], axis=0)[::-1]
    return np.where(visible, frames - first, 0), np.where(visible, last - frames, 0)


def smooth_points(points: np.ndarray, visible: np.ndarray, strength: float) -> np.ndarray:
    """The whole-track smoother on raw arrays: `points` [T, 128, 2] in canvas short sides (body, left hand, right
    hand, face), `visible` [T, 128]. Hidden points come back unchanged."""
    halves = look_ahead_for(strength)
    before, after = _stretches(visible)
    out = points.copy()
    for where, part in ((_BODY, "body"), (_HANDS, "hands"), (_FACE, "face")):
        x, b, a = points[:, where], before[:, where], after[:, where]
        light = _fit(x, b, a, halves[part].light, _LIGHT_DEGREE)
        if halves[part].strong is None:
            smoothed = light
        else:
            strong = _fit(x, b, a, halves[part].strong, _STRONG_DEGREE)
            step = np.zeros(x.shape[:2])  # squared frame-to-frame speed of the light fit, within a stretch
            step[1:] = np.where(b[1:] > 0, np.sum(np.diff(light, axis=0) ** 2, axis=-1), 0.0)
            step[:-1] = np.where(b[:-1] == 0, step[1:] * (a[:-1] > 0), step[:-1])  # a stretch's first frame
            speed = np.sqrt(_fit(step, b, a, _MOTION_HALF, 0))
            moving = np.clip((speed - _STILL_SPEED) / (_MOVING_SPEED - _STILL_SPEED), 0.0, 1.0)[..., None]
            smoothed = strong + moving * (light - strong)
        out[:, where] = np.where(visible[:, where, None], smoothed, x)
    return out


def smooth_whole_track(frames: Sequence[PoseFrame | None], strength: float = DEFAULT_STRENGTH) -> list[PoseFrame | None]:
    """Smooth a whole track with the zero-phase smoother (module doc). A frame without anybody (None or empty) breaks
    every point's stretch, as a hidden point breaks its own."""
    frames = list(frames)
    if check_strength(strength) == 0:
        return frames
    canvas = None
    for index, frame in enumerate(frames):
        if frame is None or frame.is_empty:
            continue
        if canvas is not None and tuple(frame.canvas_hw) != canvas:
            raise TalkingPoseError(
                f"The track changes canvas at frame {index} ({frame.canvas_hw[1]}x{frame.canvas_hw[0]}, "
                f"before {canvas[1]}x{canvas[0]}). Smooth one video's track at a time."
            )
        canvas = tuple(frame.canvas_hw)
    if canvas is None:
        return frames
    height, width = canvas
    unit = np.array([width, height], dtype=np.float64) / min(width, height)  # normalised -> short sides
    points = np.zeros((len(frames), POINTS, 2))
    visible = np.zeros((len(frames), POINTS), dtype=bool)
    for t, frame in enumerate(frames):
        if frame is not None and not frame.is_empty:
            points[t] = np.concatenate([frame.body, frame.hands.reshape(-1, 2), frame.face]) * unit
            visible[t] = np.concatenate([frame.body_visible, frame.hands_visible.reshape(-1), frame.face_visible])
    smoothed = smooth_points(points, visible, strength) / unit
    out = []
    for t, frame in enumerate(frames):
        if frame is None or frame.is_empty:
            out.append(frame)
            continue
        # Hidden points keep their exact input values (smooth_points leaves them, but not through the unit division).
        raw = np.concatenate([frame.body, frame.hands.reshape(-1, 2), frame.face])
        result = np.where(visible[t][:, None], smoothed[t], raw)
        out.append(replace(frame, body=result[_BODY].copy(), hands=result[_HANDS].reshape(2, HAND_POINTS, 2).copy(),
                           face=result[_FACE].copy()))
    return out
