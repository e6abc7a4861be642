"""Smoothing of keypoint tracks, measured on synthetic noisy tracks whose clean version is known: the causal filter
every node run uses (meta-batch chunks, continued renders) and the whole-track smoother that looks ahead (the
command line)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pose_tracks import FPS, LEFT_ARM, LIPS, RIGHT_ARM, pixels, talking_track, track_points
from talkingpose.errors import TalkingPoseError
from talkingpose.pose import PoseFrame, process_track
from talkingpose.pose.smoothing import (DEFAULT_STRENGTH, PoseSmoother, SmootherState, smooth_track,
                                        smooth_whole_track)

SIZE = 512
NOISE_PX = 1.5
STEP_PX = 60.0
STEP_AT = 100
FRAMES = 200
# Frames where the clean track is smooth: away from the start (the filter settles) and from the sudden move.
STEADY = np.r_[10:STEP_AT - 5, STEP_AT + 25:FRAMES]


def noisy_track(sway_px=0.0, seed=0):
    """A still person (every body, hand and face point) that jumps STEP_PX to the right at frame STEP_AT, optionally
    swaying slowly (amplitude `sway_px`, period 90 frames); DWPose-like jitter of NOISE_PX (std per coordinate)."""
    rng = np.random.default_rng(seed)
    body, hands, face = rng.uniform(150, 350, (18, 2)), rng.uniform(150, 350, (2, 21, 2)), rng.uniform(200, 300, (68, 2))
    clean, noisy = [], []
    for t in range(FRAMES):
        offset = np.array([sway_px * np.sin(2 * np.pi * t / 90), 0.5 * sway_px * np.cos(2 * np.pi * t / 70)])
        offset = offset + np.array([STEP_PX, 0.0]) * (t >= STEP_AT)

        def frame(noise):
            def place(points):
                return (points + offset + rng.normal(0, NOISE_PX, points.shape) * noise) / SIZE
            return PoseFrame((SIZE, SIZE), place(body), np.ones(18), place(hands), np.ones((2, 21)), place(face), np.ones(68))

        clean.append(frame(0.0))
        noisy.append(frame(1.0))
    return clean, noisy


def _part(frames, part):
    return np.stack([pixels(f, getattr(f, part).reshape(-1, 2)) for f in frames])


def jitter_figures(clean, noisy, smoothed, part):
    """(residual std against the clean track before, after; mean |frame-to-frame acceleration| before, after;
    frames after the sudden move until every point is within 10% of the move)."""
    c, x, y = _part(clean, part), _part(noisy, part), _part(smoothed, part)

    def acceleration(a):
        return np.linalg.norm(np.diff(a, 2, axis=0), axis=-1)[STEADY[:-2]].mean()

    error = np.linalg.norm(y - c, axis=-1)[STEP_AT:]
    settle = max(int(np.argmax(error[:, k] < 0.1 * STEP_PX)) for k in range(error.shape[1]))
    return (x - c)[STEADY].std(), (y - c)[STEADY].std(), acceleration(x), acceleration(y), settle


def test_strength_zero_returns_the_input_bit_identically():
    _, noisy = noisy_track()
    out, state = smooth_track(noisy, 0)
    assert all(a is b for a, b in zip(out, noisy))
    assert state.frames == FRAMES


# The node filter's figures before the zero-lag filter (One-Euro alone, default strength; residual px, mean
# |acceleration| px/frame², frames to settle after the jump): the still speaker must come out no worse.
ONE_EURO_STILL = {"body": (0.60, 0.74, 1), "hands": (0.73, 1.15, 1), "face": (1.05, 2.09, 1)}


@pytest.mark.parametrize("part", ["body", "hands", "face"])
def test_default_strength_halves_jitter_and_follows_a_sudden_move(part):
    clean, noisy = noisy_track()
    smoothed, _ = smooth_track(noisy, DEFAULT_STRENGTH)
    before, after, acc_before, acc_after, settle = jitter_figures(clean, noisy, smoothed, part)
    # Measured (residual px, mean |acceleration| px/frame², frames to settle): body 1.48 -> 0.60, 4.56 -> 0.74, 0;
    # hands 1.49 -> 0.73, 4.59 -> 1.15, 0; face 1.52 -> 1.03, 4.64 -> 1.37, 0 (the face is held lightly: the lips'
    # quick small movements carry the speech).
    assert acc_after <= 0.5 * acc_before
    if part != "face":
        assert after <= 0.5 * before
    else:
        assert after <= 0.75 * before
    assert settle <= 2
    # No worse than the One-Euro filter the nodes ran before (its figures rounded to 0.01 px).
    one_euro_after, one_euro_acc, one_euro_settle = ONE_EURO_STILL[part]
    assert after <= one_euro_after + 0.005 and acc_after <= one_euro_acc + 0.005 and settle <= one_euro_settle


def test_a_slowly_swaying_person_is_smoothed_without_losing_the_sway():
    clean, noisy = noisy_track(sway_px=6.0)
    smoothed, _ = smooth_track(noisy, DEFAULT_STRENGTH)
    before, after, acc_before, acc_after, settle = jitter_figures(clean, noisy, smoothed, "body")
    # Measured: residual 1.48 -> 0.88 px (the sway's lag is part of it), acceleration 4.56 -> 0.87.
    assert after <= 0.65 * before and acc_after <= 0.5 * acc_before and settle <= 2


def test_stronger_smoothing_smooths_a_still_person_more_and_every_strength_lands_on_a_jump():
    clean, noisy = noisy_track()
    figures = [jitter_figures(clean, noisy, smooth_track(noisy, s)[0], "body") for s in (0.25, 0.5, 0.75, 1.0)]
    residuals = [f[1] for f in figures]
    assert residuals == sorted(residuals, reverse=True)
    assert all(f[4] == 0 for f in figures), [f[4] for f in figures]  # the jump restarts the filter: see below


def test_a_point_that_jumps_restarts_where_it_lands():
    """The 60 px jump is far from where every point's last frames put it: the filter restarts there as after a gap,
    so the frame of the jump already shows the new position (the One-Euro filter arrived a frame later)."""
    clean, noisy = noisy_track()
    smoothed, _ = smooth_track(noisy, DEFAULT_STRENGTH)
    for part in ("body", "hands", "face"):
        c, x, y = (_part(frames, part) for frames in (clean, noisy, smoothed))
        np.testing.assert_array_equal(y[STEP_AT], x[STEP_AT])  # the raw point: nothing dragged from before the jump
        assert np.linalg.norm(y[STEP_AT:STEP_AT + 3] - c[STEP_AT:STEP_AT + 3], axis=-1).max() < 0.15 * STEP_PX


def test_a_joint_that_disappears_restarts_cleanly_where_it_comes_back():
    clean, noisy = noisy_track()
    track = [PoseFrame(f.canvas_hw, f.body.copy(), f.body_score.copy(), f.hands.copy(), f.hand_score.copy(),
                       f.face.copy(), f.face_score.copy()) for f in noisy[:80]]
    for t in range(40, 50):  # right wrist and left hand gone for ten frames...
        track[t].body_score[4] = 0.0
        track[t].hands[0] = -1.0
    for t in range(50, 80):  # ...and back 100 px away
        track[t].body[4] += 100.0 / SIZE
        track[t].hands[0] += 100.0 / SIZE
    smoothed, _ = smooth_track(track, DEFAULT_STRENGTH)
    for t in range(40, 50):
        assert not smoothed[t].body_visible[4] and (smoothed[t].hands[0] == -1).all()
        np.testing.assert_array_equal(smoothed[t].body[4], track[t].body[4])  # hidden: passed through
    # The first frame back is the raw position (not dragged from before the gap), then the filter takes over.
    np.testing.assert_array_equal(smoothed[50].body[4], track[50].body[4])
    np.testing.assert_array_equal(smoothed[50].hands[0], track[50].hands[0])
    assert np.abs(pixels(smoothed[51], smoothed[51].body)[4] - pixels(track[51], track[51].body)[4]).max() < 5.0
    # Other joints were never interrupted.
    reference, _ = smooth_track(noisy[:80], DEFAULT_STRENGTH)
    np.testing.assert_array_equal(smoothed[60].body[:4], reference[60].body[:4])


def test_nobody_in_a_frame_restarts_every_point():
    _, noisy = noisy_track()
    track = noisy[:30] + [None, PoseFrame.empty((SIZE, SIZE))] + noisy[32:40]
    smoothed, _ = smooth_track(track, DEFAULT_STRENGTH)
    assert smoothed[30] is None and smoothed[31].is_empty
    np.testing.assert_array_equal(smoothed[32].body, noisy[32].body)


@pytest.mark.parametrize("strength", [0.25, 0.5, 0.75, 1.0])
def test_chunked_smoothing_equals_one_shot_through_a_saved_state(strength):
    """Gestures, a still face, a hidden wrist, a frame without anybody and a jump, cut into chunks of 1, 3, 7 and 32
    frames, each continued from the state the previous one left, saved through JSON: the frames of the one-shot run."""
    _, noisy = talking_track(frames=120)
    track = [PoseFrame(f.canvas_hw, f.body.copy(), f.body_score.copy(), f.hands.copy(), f.hand_score.copy(),
                       f.face.copy(), f.face_score.copy()) for f in noisy]
    for t in range(30, 38):
        track[t].body_score[4] = 0.0
    track[60] = None
    for t in range(80, 120):
        track[t].body[:, 0] += 80.0 / track[t].canvas_hw[1]
    one_shot, one_shot_state = smooth_track(track, strength)
    for size in (1, 3, 7, 32):
        chunked, state = [], None
        for start in range(0, len(track), size):
            if state is not None:  # as a render saved between queue runs: through JSON and back
                state = SmootherState.from_dict(json.loads(json.dumps(state.to_dict())))
            piece, state = smooth_track(track[start:start + size], strength, state)
            chunked += piece
        assert state.frames == len(track) and state.to_dict() == one_shot_state.to_dict()
        for a, b in zip(chunked, one_shot):
            if b is None:
                assert a is None
                continue
            np.testing.assert_array_equal(a.body, b.body)
            np.testing.assert_array_equal(a.hands, b.hands)
            np.testing.assert_array_equal(a.face, b.face)


def test_a_state_saved_before_the_zero_lag_filter_continues_with_a_restart(caplog):
    """States saved by the One-Euro-only filter (no "version", no history) load: every point restarts at the next
    frame, as after a gap, and the log says why. A state from a newer TalkingPose is refused with what to do."""
    _, noisy = noisy_track()
    _, state = smooth_track(noisy[:20], DEFAULT_STRENGTH)
    old = {key: value for key, value in state.to_dict().items() if key not in ("version", "history", "run")}
    with caplog.at_level("WARNING", logger="TalkingPose"):
        loaded = SmootherState.from_dict(json.loads(json.dumps(old)))
    assert "older TalkingPose" in caplog.text
    continued, _ = smooth_track(noisy[20:22], DEFAULT_STRENGTH, loaded)
    np.testing.assert_array_equal(continued[0].body, noisy[20].body)  # restarted on the raw points
    with pytest.raises(TalkingPoseError, match="smoothing state is version 3.*Update TalkingPose"):
        SmootherState.from_dict({**state.to_dict(), "version": 3})


def test_bad_settings_and_tracks_are_refused_with_sentences():
    _, noisy = noisy_track()
    for bad in (-0.1, 1.5, "strong", float("nan")):
        with pytest.raises(TalkingPoseError, match="smoothing strength must be"):
            PoseSmoother(bad)
    _, state = smooth_track(noisy[:5], 0.5)
    with pytest.raises(TalkingPoseError, match="made with strength 0.5, this run asks for 0.8"):
        smooth_track(noisy[5:10], 0.8, state)
    other_canvas = PoseFrame.empty((SIZE, 896))
    other_canvas.body[:] = 0.5
    other_canvas.body_score[:] = 1.0
    with pytest.raises(TalkingPoseError, match="changes canvas at frame 5"):
        smooth_track(noisy[:5] + [other_canvas], 0.5)
    with pytest.raises(TalkingPoseError, match="smoothing state is damaged"):
        SmootherState.from_dict({"position": [[0.0, 0.0]]})


def test_default_strength_keeps_the_lips_moving():
    """Speech: the lips open and close 5 px every 8 frames (4 Hz at 32 fps) under 1 px of jitter; the face's
    settings follow that motion instead of flattening it. Measured: 93% of the amplitude kept, the still face
    points' jitter down to 62%."""
    rng = np.random.default_rng(3)
    face = rng.uniform(200, 300, (68, 2))
    lips = slice(48, 68)
    clean, noisy = [], []
    for t in range(240):
        moved = face.copy()
        moved[lips, 1] += 5 * np.sin(2 * np.pi * t / 8)
        for frames, noise in ((clean, 0.0), (noisy, 1.0)):
            points = (moved + rng.normal(0, 1.0, face.shape) * noise) / SIZE
            frames.append(PoseFrame((SIZE, SIZE), np.full((18, 2), 0.5), np.ones(18), np.full((2, 21, 2), -1.0),
                                    np.zeros((2, 21)), points, np.ones(68)))
    smoothed, _ = smooth_track(noisy, DEFAULT_STRENGTH)
    c, x, y = (_part(frames, "face")[40:] for frames in (clean, noisy, smoothed))
    amplitude = (y[:, lips, 1] - face[lips, 1]).std(axis=0).mean() / (c[:, lips, 1] - face[lips, 1]).std(axis=0).mean()
    still_jitter = (y - c)[:, :48].std() / (x - c)[:, :48].std()
    assert amplitude >= 0.85 and still_jitter <= 0.75, (amplitude, still_jitter)


# ------------------------------------------------------------------------ motion: a person talking (25 fps)
EDGE = 10  # frames left out at either end of a track: the fits there see one side only


def motion_figures(clean, noisy, smoothed, which):
    """Over the points `which`: (jitter of the smoothed track / jitter of the raw one, where jitter is the mean
    |frame-to-frame acceleration| of the difference to the clean track, i.e. the acceleration the true motion does
    not have; mean distance to the clean track of the raw and of the smoothed track, px; amplitude kept, the
    least-squares gain of the smoothed motion on the clean motion; lag, frames, the shift within ±3 frames (under half
    a period of 4 Hz lips at 25 fps, so a whole period is never mistaken for a lag) that best aligns the smoothed
    velocity with the clean velocity, refined to a fraction by a parabola through the best three)."""
    c, x, y = (track_points(frames, which)[EDGE:-EDGE] for frames in (clean, noisy, smoothed))

    def jitter(a):
        return np.linalg.norm(np.diff(a - c, 2, axis=0), axis=-1).mean()

    def distance(a):
        return np.linalg.norm(a - c, axis=-1).mean()

    centred = c - c.mean(axis=0)
    amplitude = ((y - y.mean(axis=0)) * centred).sum() / (centred ** 2).sum()
    vc, vy = np.diff(c, axis=0), np.diff(y, axis=0)
    shifts = np.arange(-3, 4)
    match = np.array([(vy[s:] * vc[:len(vc) - s]).sum() if s >= 0 else (vy[:s] * vc[-s:]).sum() for s in shifts])
    best = int(np.argmax(match))
    lag = float(shifts[best])
    if 0 < best < len(shifts) - 1:
        before, at, after = match[best - 1:best + 2]
        lag += 0.5 * (before - after) / (before - 2 * at + after)
    raw_jitter = jitter(x)
    return (jitter(y) / raw_jitter if raw_jitter else float("nan")), distance(x), distance(y), amplitude, lag


def test_the_talking_track_is_what_the_figures_say():
    clean, noisy = talking_track()
    wrist = track_points(clean, [4])[:, 0]
    assert 24.0 <= np.linalg.norm(np.diff(wrist, axis=0), axis=-1).max() <= 25.0  # px per frame
    assert (track_points(noisy) - track_points(clean)).std() == pytest.approx(2.5, rel=0.02)
    lips, _ = talking_track(wrist_speed=0.0, noise_px=0.0, lips_hz=4, lips_px=5)
    opening = track_points(lips, LIPS)[:, :, 1] - track_points(lips, LIPS)[0, :, 1]
    assert opening.max() == pytest.approx(5.0, rel=0.01) and opening.min() == pytest.approx(0.0)
    assert np.argmax(opening[:FPS, 0]) in (3, 9, 15, 21)  # four openings a second


def test_whole_track_default_removes_jitter_and_stays_on_a_gesture():
    """1 Hz gestures, the wrist up to 25 px per frame, 2.5 px noise on 1280x720. Measured (jitter ratio, distance
    raw -> smoothed px, amplitude, lag): arms 0.27, 3.13 -> 1.99, 1.00, 0.00."""
    clean, noisy = talking_track()
    smoothed, _ = process_track(noisy, strength=DEFAULT_STRENGTH)  # as `pose smooth` runs it
    jitter, raw_distance, distance, amplitude, lag = motion_figures(clean, noisy, smoothed, RIGHT_ARM + LEFT_ARM)
    assert jitter <= 0.5 and distance < 0.75 * raw_distance and amplitude >= 0.97 and abs(lag) <= 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_node_default_keeps_up_with_a_gesture(seed):
    """The causal filter of the nodes on the same gestures (three noise draws). Measured (jitter ratio, distance raw
    -> smoothed px, lag): 0.484, 3.14 -> 3.05, +0.01; 0.486, 3.12 -> 3.04; 0.486, 3.13 -> 3.05 (the One-Euro filter
    before: 5.03 px, behind the raw track). Thin margins: a causal filter has no frames after the one it smooths."""
    clean, noisy = talking_track(seed=seed)
    streamed, _ = smooth_track(noisy, DEFAULT_STRENGTH)
    jitter, raw_distance, distance, _, lag = motion_figures(clean, noisy, streamed, RIGHT_ARM + LEFT_ARM)
    assert jitter <= 0.5 and distance < raw_distance and abs(lag) <= 1.0, (jitter, raw_distance, distance, lag)


@pytest.mark.parametrize("hz,kept", [(3, 0.95), (4, 0.9), (5, 0.3)])
def test_node_default_keeps_the_lips_moving(hz, kept):
    """Lips opening 5 px 3, 4 and 5 times a second (25 fps, no noise) through the nodes' causal filter. Measured
    amplitude kept, lag: 0.98, +0.23; 0.96, +0.64; 0.37, +0.97 (the One-Euro filter before: 0.48 at 4 Hz)."""
    clean, _ = talking_track(wrist_speed=0.0, noise_px=0.0, lips_hz=hz, lips_px=5)
    streamed, _ = smooth_track(clean, DEFAULT_STRENGTH)
    _, _, _, amplitude, lag = motion_figures(clean, clean, streamed, LIPS)
    assert amplitude >= kept and abs(lag) <= 1.0, (amplitude, lag)


@pytest.mark.parametrize("hz,kept", [(3, 0.95), (4, 0.9), (5, 0.7)])
def test_whole_track_default_keeps_the_lips_moving(hz, kept):
    """Lips opening 5 px 3, 4 and 5 times a second (no noise). Measured amplitude kept: 0.98, 0.91, 0.73; no lag."""
    clean, _ = talking_track(wrist_speed=0.0, noise_px=0.0, lips_hz=hz, lips_px=5)
    smoothed = smooth_whole_track(clean, DEFAULT_STRENGTH)
    _, _, _, amplitude, lag = motion_figures(clean, clean, smoothed, LIPS)
    assert amplitude >= kept and abs(lag) <= 0.5


@pytest.mark.parametrize("sway", [0.0, 6.0])
def test_whole_track_default_is_no_worse_than_the_causal_filter_on_a_still_speaker(sway):
    """The still (and slowly swaying) speaker that jumps 60 px: residual and jitter at least as good as the causal
    filter's at the same strength. Measured (residual px, mean |acceleration| px/frame², frames to settle), still:
    body 0.55, 0.49, 1; hands 0.54, 0.49, 1; face 0.99, 1.27, 1 (causal: 0.60, 0.74, 0; 0.73, 1.15, 0; 1.03, 1.37,
    0). The jump: the whole track meets it halfway over two frames (below), the causal filter restarts on it."""
    clean, noisy = noisy_track(sway_px=sway)
    smoothed = smooth_whole_track(noisy, DEFAULT_STRENGTH)
    streamed, _ = smooth_track(noisy, DEFAULT_STRENGTH)
    for part in ("body", "hands", "face"):
        _, after, _, acc_after, settle = jitter_figures(clean, noisy, smoothed, part)
        _, causal_after, _, causal_acc_after, causal_settle = jitter_figures(clean, noisy, streamed, part)
        assert after <= causal_after and acc_after <= causal_acc_after and settle <= causal_settle + 1, part


def test_whole_track_meets_a_jump_halfway_over_two_frames():
    """The 60 px jump at frame 100: a fit that looks ahead sees it coming, so it moves one frame early where the
    causal filter arrives one frame late. Measured worst body point, frames 96-104: 4.2, 7.2, 3.9, 18.9, 18.6, 3.3,
    7.3, 3.5, 3.0 px (causal: ... 1.7, 16.2, 5.5, 3.5 ...; raw noise alone up to 5.7)."""
    clean, noisy = noisy_track()
    smoothed = smooth_whole_track(noisy, DEFAULT_STRENGTH)
    c, y = (np.stack([pixels(f, f.body) for f in frames]) for frames in (clean, smoothed))
    error = np.linalg.norm(y - c, axis=-1).max(axis=1)
    assert error[STEP_AT - 1] <= 0.35 * STEP_PX and error[STEP_AT] <= 0.35 * STEP_PX
    around = np.r_[STEP_AT - 6:STEP_AT - 1, STEP_AT + 1:STEP_AT + 7]
    assert error[around].max() < 0.15 * STEP_PX, error[around]


def test_stronger_whole_track_smoothing_takes_out_more_jitter():
    clean, noisy = talking_track()
    figures = [motion_figures(clean, noisy, smooth_whole_track(noisy, s), RIGHT_ARM)[0] for s in (0.25, 0.5, 0.75, 1.0)]
    assert figures == sorted(figures, reverse=True)


def test_whole_track_strength_zero_returns_the_input_frames():
    _, noisy = talking_track(frames=30)
    out = smooth_whole_track(noisy, 0)
    assert all(a is b for a, b in zip(out, noisy)) and len(out) == len(noisy)


def test_whole_track_restarts_a_joint_where_it_comes_back():
    clean, noisy = talking_track(frames=80)
    track = [PoseFrame(f.canvas_hw, f.body.copy(), f.body_score.copy(), f.hands.copy(), f.hand_score.copy(),
                       f.face.copy(), f.face_score.copy()) for f in noisy]
    for t in range(40, 50):  # right wrist and left hand gone for ten frames...
        track[t].body_score[4] = 0.0
        track[t].hands[0] = -1.0
        track[t].hand_score[0] = 0.0
    for t in range(50, 80):  # ...and back 100 px to the right
        track[t].body[4, 0] += 100.0 / track[t].canvas_hw[1]
        track[t].hands[0, :, 0] += 100.0 / track[t].canvas_hw[1]
    smoothed = smooth_whole_track(track, DEFAULT_STRENGTH)
    for t in range(40, 50):  # hidden: passed through untouched
        assert not smoothed[t].body_visible[4] and (smoothed[t].hands[0] == -1).all()
        np.testing.assert_array_equal(smoothed[t].body[4], track[t].body[4])
    # Around the gap the joint is fitted to its own side only: never pulled towards the other side's position.
    for t in (38, 39, 50, 51):
        moved = pixels(track[t], track[t].body)[4] - pixels(clean[t], clean[t].body)[4]
        error = pixels(smoothed[t], smoothed[t].body)[4] - pixels(clean[t], clean[t].body)[4] - moved
        assert np.linalg.norm(error) < 8.0, (t, error)
    # The other joints never noticed.
    reference = smooth_whole_track(noisy, DEFAULT_STRENGTH)
    np.testing.assert_array_equal(smoothed[45].body[:4], reference[45].body[:4])
    np.testing.assert_array_equal(smoothed[52].hands[1], reference[52].hands[1])


def test_whole_track_nobody_in_a_frame_breaks_every_stretch():
    _, noisy = talking_track(frames=40)
    track = noisy[:20] + [None, PoseFrame.empty(noisy[0].canvas_hw)] + noisy[22:]
    smoothed = smooth_whole_track(track, DEFAULT_STRENGTH)
    assert smoothed[20] is None and smoothed[21].is_empty
    after = smooth_whole_track(noisy[22:], DEFAULT_STRENGTH)  # what follows the gap is smoothed on its own
    for a, b in zip(smoothed[22:], after):
        np.testing.assert_array_equal(a.body, b.body)
        np.testing.assert_array_equal(a.face, b.face)


def test_whole_track_refuses_a_track_that_changes_canvas():
    _, noisy = talking_track(frames=5)
    other_canvas = PoseFrame.empty((512, 896))
    other_canvas.body[:] = 0.5
    other_canvas.body_score[:] = 1.0
    with pytest.raises(TalkingPoseError, match="changes canvas at frame 5"):
        smooth_whole_track(noisy + [other_canvas], 0.5)
