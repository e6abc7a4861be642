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

**In pieces** (`PoseSmoother`, `smooth_track`: every node run, since any may be one VideoHelperSuite meta-batch
chunk or a render continued from a saved state). A chunk's last frames have no frames after them yet, so a filter
that looks ahead cannot give the same answer in chunks as at once: here every output frame depends only on the
frames up to it (causal), and `SmootherState` after frame k (the last raw frames of every point and a One-Euro
filter's state) is all it needs to continue at frame k+1, so a track smoothed in chunks equals it smoothed at once.
Per point and frame, in short sides of the canvas:

    zero-lag = sum_k h[k] · x[t-k]      over the last `taps` frames of the point's visible stretch
    at rest  = One-Euro filter (Casiez, Roussel, Vogel, CHI 2012): a low-pass whose cutoff rises with the speed
    x^ = at rest + w · (zero-lag - at rest),  w = the point's speed (slope of a line through its last 8 frames)

The zero-lag filter `h` is a least-squares FIR design (`_zero_lag_design`): exact on a point moving at constant
speed (no lag) and flat over the passband (body and hands: to 2 cycles per 25 frames, gestures; face: to 4, speech),
with the noise above the stopband (6 cycles per 25 frames) pushed down. Being causal and zero-lag has a price that
no causal filter avoids (the gain-phase trade-off): between passband and stopband the response rises above 1 (body
and hands up to about 1.6 at 4 cycles per 25 frames), so quick small motions there come out larger, noise there
included. The face uses the zero-lag filter alone: the lips' speech motion is as small and quick as detection
noise, so no speed tells them apart. A point that lands far from where its last frames predicted (a jump, a
mis-detection) restarts there, as after a gap.

Both: body, hands and face have their own settings; a point that disappears (a hidden joint: confidence below 0.3
/ coordinates -1) leaves the filter, and it restarts from where it comes back, so nothing is dragged across a gap.
One `strength` (0–1) picks the settings; 0 switches smoothing off and returns the input frames untouched.
"""
from __future__ import annotations

import copy
import functools
import logging
import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ..errors import TalkingPoseError
from .keypoints import BODY_POINTS, FACE_POINTS, HAND_POINTS, PoseFrame

log = logging.getLogger("TalkingPose")

DEFAULT_STRENGTH = 0.5
POINTS = BODY_POINTS + 2 * HAND_POINTS + FACE_POINTS
_BODY = slice(0, BODY_POINTS)
_HANDS = slice(BODY_POINTS, BODY_POINTS + 2 * HAND_POINTS)
_FACE = slice(BODY_POINTS + 2 * HAND_POINTS, POINTS)
_IS_FACE = np.arange(POINTS) >= BODY_POINTS + 2 * HAND_POINTS


@dataclass(frozen=True)
class OneEuro:
    """Filter settings in frame units: cutoffs in cycles per frame, `beta` per (canvas short side per frame)."""

    min_cutoff: float
    beta: float
    d_cutoff: float = 0.15


# The filter at rest of body and hands; settings at the default strength 0.5, chosen on synthetic tracks
# (tests/test_smoothing.py, numbers in docs/poses.md): the body's jitter more than halves. The face's entry still runs
# (one vectorised filter over all 128 points, and `settings_for` reports it) but its output is not used: the face at
# rest is held by _FACE_AT_REST, which keeps the lips' speech motion.
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


@dataclass(frozen=True)
class ZeroLag:
    """A causal zero-lag FIR design in frame units: `taps` frames; response held at 1 up to `passband` and pushed
    down above `stopband` (cycles per frame) with weight `stop_weight` at the default strength."""

    taps: int
    passband: float
    stopband: float
    stop_weight: float
    ramp_exact: bool = True  # a constant speed followed without lag (else only a point at rest stays put)


# Chosen on the synthetic tracks of tests/test_smoothing.py (figures in docs/poses.md): at 25 fps body and hands keep
# gestures to 2 Hz without lag and halve the jitter; the face keeps the lips' 3-4 Hz motion. Strength s scales the
# stop weight by 10^(2s-1): stronger pushes the high-frequency noise down harder (and raises the response between
# the bands).
_ZERO_LAG = {
    "body": ZeroLag(taps=10, passband=0.08, stopband=0.25, stop_weight=0.01),
    "hands": ZeroLag(taps=10, passband=0.08, stopband=0.25, stop_weight=0.01),
    "face": ZeroLag(taps=8, passband=0.16, stopband=0.25, stop_weight=1.0),
}
# The face at rest: held only at rest, not on a ramp (its lag there is about a frame), and the noise above the
# stopband pushed down twice as hard: a still face as smooth as the One-Euro filter made it (the lips keep 96 % at 4 Hz,
# 37 % at 5 Hz).
# The lips' speech motion goes back and forth within a few frames, so the speed stays low and this filter keeps it.
_FACE_AT_REST = replace(_ZERO_LAG["face"], stop_weight=2.0, ramp_exact=False)
_STOP_WEIGHT_RANGE = 10.0
_HISTORY = max(z.taps for z in _ZERO_LAG.values())
# The speed that decides between the filter at rest and the zero-lag one: the slope of the least-squares line
# through a point's last _SPEED_FRAMES frames (noise averages out of it: 1.5 px of jitter gives about 0.3 px per
# frame), in canvas short sides per frame: at or below _AT_REST the One-Euro filter alone, at or above _IN_MOTION the
# zero-lag filter alone (about 1.4 and 3.6 px per frame on 720 px; a 1 Hz gesture's elbow moves 5 px per frame and more).
_SPEED_FRAMES = 8
_AT_REST, _IN_MOTION = 0.002, 0.005
# A point further than this (canvas short sides, about 58 px on 720 px) from where the quadratic through its last
# frames puts it has jumped: it restarts there. A 25 px-per-frame gesture stays within about 25 px of the prediction.
_JUMP = 0.08
_RIDGE = 0.01  # a small penalty on sum h^2 in every design: bounds the response between passband and stopband


def _band(taps: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """The means over frequencies f in [low, high] (cycles per frame) of cos(2 pi f (i - j)) and cos(2 pi f i)."""
    def mean_cos(lag):
        return (high * np.sinc(2 * high * lag) - low * np.sinc(2 * low * lag)) / (high - low)

    k = np.arange(taps)
    return mean_cos(k[:, None] - k[None, :]), mean_cos(k)


@functools.lru_cache(maxsize=None)
def _zero_lag_design(taps: int, passband: float, stopband: float, stop_weight: float, ramp_exact: bool) -> np.ndarray:
    """[taps+1, taps]: row n holds the weights h[0..n-1] (h[k] weighs the frame k frames back) for a point seen for
    n frames: least squares for H(f) = 1 over [0, passband] plus `stop_weight` times |H(f)|^2 over [stopband, 0.5],
    plus `_RIDGE` times sum h^2, subject to sum h = 1 and, if `ramp_exact`, sum k·h = 0 (a constant speed is
    followed without lag).
    A window whose weights would be noisier than the raw point (sum h^2 >= 1) takes the shorter one's (rows 0-2:
    the raw point; row 0 unused)."""
    table = np.zeros((taps + 1, taps))
    table[:, 0] = 1.0
    for n in range(3, taps + 1):
        pass_a, pass_b = _band(n, 0.0, passband)
        stop_a, _ = _band(n, stopband, 0.5)
        system = pass_a + stop_weight * stop_a + _RIDGE * np.eye(n)
        moments = np.stack([np.ones(n), np.arange(n, dtype=float)])[:2 if ramp_exact else 1]
        kkt = np.block([[system, moments.T], [moments, np.zeros((len(moments), len(moments)))]])
        weights = np.linalg.solve(kkt, np.concatenate([pass_b, [1.0, 0.0][:len(moments)]]))[:n]
        table[n] = 0.0
        if (weights ** 2).sum() < 1.0:
            table[n, :n] = weights
        else:
            table[n] = table[n - 1]
    return table


@functools.lru_cache(maxsize=None)
def _line_weights(frames: int) -> tuple[np.ndarray, np.ndarray]:
    """[frames+1, frames] weights over the last n frames (n = row, newest first) of the least-squares line's slope
    (per frame) and of the quadratic's value one frame ahead (degree lowered to what n frames allow)."""
    slope = np.zeros((frames + 1, frames))
    ahead = np.zeros((frames + 1, frames))
    for n in range(1, frames + 1):
        back = -np.arange(n, dtype=float)  # frame offsets, newest first
        if n >= 2:
            slope[n, :n] = np.linalg.pinv(np.vander(back, 2, increasing=True))[1]
        ahead[n, :n] = np.vander(np.array([1.0]), min(3, n), increasing=True) @ np.linalg.pinv(
            np.vander(back, min(3, n), increasing=True))
    return slope, ahead


STATE_VERSION = 2  # 1 (no "version" key): the One-Euro filter alone, before the zero-lag filter and its history


@dataclass
class SmootherState:
    """Where the filter stands after the last frame: for each of the 128 points (body, left hand, right hand,
    face; in short sides of the canvas) the One-Euro filter's filtered and raw position and low-passed velocity,
    which points are being followed, the point's last raw positions (newest first) and for how many frames in a row
    it has been seen; the canvas, the strength and the number of frames seen."""

    position: np.ndarray  # [128, 2] One-Euro filtered
    raw: np.ndarray  # [128, 2] as given
    velocity: np.ndarray  # [128, 2] per frame
    live: np.ndarray  # [128] bool
    canvas_hw: tuple[int, int] | None
    strength: float
    frames: int = 0
    history: np.ndarray | None = None  # [_HISTORY, 128, 2] the last raw positions, newest first
    run: np.ndarray | None = None  # [128] frames in a row the point has been seen (the visible stretch so far)

    def __post_init__(self):
        if self.history is None:
            self.history = np.zeros((_HISTORY, POINTS, 2))
        if self.run is None:
            self.run = np.zeros(POINTS, dtype=np.int64)

    @classmethod
    def start(cls, strength: float) -> "SmootherState":
        return cls(np.zeros((POINTS, 2)), np.zeros((POINTS, 2)), np.zeros((POINTS, 2)), np.zeros(POINTS, dtype=bool),
                   None, check_strength(strength))

    def to_dict(self) -> dict:
        """Plain JSON types (floats round-trip exactly through JSON)."""
        return {"version": STATE_VERSION, "position": self.position.tolist(), "raw": self.raw.tolist(),
                "velocity": self.velocity.tolist(), "live": self.live.tolist(),
                "canvas_hw": None if self.canvas_hw is None else list(self.canvas_hw), "strength": self.strength,
                "frames": self.frames, "history": self.history.tolist(), "run": self.run.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "SmootherState":
        """A state from `to_dict`. One saved before the zero-lag filter (version 1) has no history: it loads with
        every point restarting at the next frame, as after a gap, and says so in the log."""
        damaged = "The saved smoothing state is damaged{}; start the render again from its first frame."
        try:
            version = int(data.get("version", 1))
        except (AttributeError, TypeError, ValueError, OverflowError) as exc:
            raise TalkingPoseError(damaged.format(f" ({type(exc).__name__})")) from None
        if version not in (1, STATE_VERSION):
            raise TalkingPoseError(f"The saved smoothing state is version {version}; this TalkingPose reads versions 1 "
                                   f"and {STATE_VERSION}. Update TalkingPose, or start the render again from its first "
                                   "frame.")
        try:
            state = cls(*(np.asarray(data[key], dtype=np.float64).reshape(POINTS, 2)
                          for key in ("position", "raw", "velocity")),
                        np.asarray(data["live"], dtype=bool).reshape(POINTS),
                        None if data["canvas_hw"] is None else tuple(int(v) for v in data["canvas_hw"]),
                        check_strength(data["strength"]), int(data["frames"]))
            if version == STATE_VERSION:
                state.history = np.asarray(data["history"], dtype=np.float64).reshape(_HISTORY, POINTS, 2)
                state.run = np.asarray(data["run"], dtype=np.int64).reshape(POINTS)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise TalkingPoseError(damaged.format(f" ({type(exc).__name__})")) from None
        arrays = (state.position, state.raw, state.velocity, state.history)
        if not all(np.isfinite(a).all() for a in arrays) or state.frames < 0 or (state.run < 0).any():
            raise TalkingPoseError(damaged.format(""))
        if version == 1:
            log.warning("The smoothing state was saved by an older TalkingPose (One-Euro filter only): every keypoint "
                        "restarts its smoothing at the next frame.")
            state.live[:] = False
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
            parts = ((_BODY, "body"), (_HANDS, "hands"), (_FACE, "face"))
            self._min_cutoff = np.empty(POINTS)
            self._beta = np.empty(POINTS)
            self._d_alpha = np.empty(POINTS)
            # Per point: its part's zero-lag weights for every stretch length, [POINTS, _HISTORY+1, _HISTORY].
            self._zero_lag = np.zeros((POINTS, _HISTORY + 1, _HISTORY))
            self._face_at_rest = np.zeros((POINTS, _HISTORY + 1, _HISTORY))
            scale = _STOP_WEIGHT_RANGE ** (2.0 * strength - 1.0)
            for where, part in parts:
                s = settings[part]
                self._min_cutoff[where], self._beta[where], self._d_alpha[where] = s.min_cutoff, s.beta, _alpha(s.d_cutoff)
                z = _ZERO_LAG[part]
                table = _zero_lag_design(z.taps, z.passband, z.stopband, z.stop_weight * scale, z.ramp_exact)
                self._zero_lag[where, :z.taps + 1, :z.taps] = table
                self._zero_lag[where, z.taps + 1:, :z.taps] = table[-1]
            z = _FACE_AT_REST
            table = _zero_lag_design(z.taps, z.passband, z.stopband, z.stop_weight * scale, z.ramp_exact)
            self._face_at_rest[_FACE, :z.taps + 1, :z.taps] = table
            self._face_at_rest[_FACE, z.taps + 1:, :z.taps] = table[-1]

    def __call__(self, frame: PoseFrame | None) -> PoseFrame | None:
        state = self.state
        state.frames += 1
        if self.strength == 0:
            return frame
        if frame is None or frame.is_empty:
            state.live[:] = False  # nobody: every point restarts when the person comes back
            state.run[:] = 0
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
        points = np.arange(POINTS)

        # A point far from where its last frames put it has jumped: it restarts, as after a gap.
        slope_w, ahead_w = _line_weights(_SPEED_FRAMES)
        seen = np.where(state.live, np.minimum(state.run, _SPEED_FRAMES), 0)
        predicted = np.einsum("pk,kpc->pc", ahead_w[seen], state.history[:_SPEED_FRAMES])
        jumped = state.live & visible & (np.linalg.norm(raw - predicted, axis=-1) > _JUMP)
        live = state.live & ~jumped

        follow = visible & live
        start = visible & ~live
        d_alpha = self._d_alpha[:, None]
        velocity = d_alpha * (raw - state.raw) + (1.0 - d_alpha) * state.velocity
        alpha = _alpha(self._min_cutoff + self._beta * np.linalg.norm(velocity, axis=-1))[:, None]
        smoothed = state.position + alpha * (raw - state.position)
        state.position = np.where(follow[:, None], smoothed, np.where(start[:, None], raw, state.position))
        state.velocity = np.where(follow[:, None], velocity, 0.0)
        state.raw = np.where(visible[:, None], raw, state.raw)
        state.live = visible.copy()

        state.run = np.where(visible, np.where(live, state.run, 0) + 1, 0)
        state.history = np.concatenate([raw[None], state.history[:-1]])
        length = np.minimum(state.run, _HISTORY)
        zero_lag = np.einsum("pk,kpc->pc", self._zero_lag[points, length], state.history)
        speed = np.linalg.norm(np.einsum("pk,kpc->pc", slope_w[np.minimum(length, _SPEED_FRAMES)],
                                         state.history[:_SPEED_FRAMES]), axis=-1)
        moving = np.clip((speed - _AT_REST) / (_IN_MOTION - _AT_REST), 0.0, 1.0)
        at_rest = np.where(_IS_FACE[:, None], np.einsum("pk,kpc->pc", self._face_at_rest[points, length], state.history),
                           state.position)
        blended = at_rest + moving[:, None] * (zero_lag - at_rest)

        out = np.where(visible[:, None], blended / unit, np.concatenate(
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


# Chosen on synthetic tracks (tests/test_smoothing.py, figures in docs/poses.md): at 25 fps a ±4-frame quartic keeps
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
