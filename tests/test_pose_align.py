"""Pose alignment: one scale + translation per video, from neck, shoulders and nose."""
from __future__ import annotations

import numpy as np
import pytest

from talkingpose.pose import Alignment, PoseFrame, align_track, estimate_alignment


def _person(neck=(256.0, 200.0), shoulder_half=60.0, head=70.0, canvas=(512, 512), jitter=0.0, seed=0):
    """A simple upright person in canvas pixels -> PoseFrame (normalised)."""
    rng = np.random.default_rng(seed)
    h, w = canvas
    nx, ny = neck
    body = np.zeros((18, 2))
    body[0] = (nx, ny - head)  # nose
    body[1] = (nx, ny)  # neck
    body[2] = (nx - shoulder_half, ny)  # right shoulder
    body[5] = (nx + shoulder_half, ny)  # left shoulder
    body[3] = (nx - shoulder_half, ny + 80)
    body[6] = (nx + shoulder_half, ny + 80)
    body += rng.normal(0, jitter, body.shape)
    score = np.zeros(18)
    score[[0, 1, 2, 3, 5, 6]] = 0.9
    hands = np.full((2, 21, 2), -1.0)
    hands[0, :] = body[6] + np.linspace(0, 20, 21)[:, None]
    face = np.full((68, 2), -1.0)
    face[:34] = body[0] + np.linspace(-10, 10, 34)[:, None]
    norm = np.array([w, h], dtype=float)
    hands_n = np.where(hands == -1, -1.0, hands / norm)
    face_n = np.where(face == -1, -1.0, face / norm)
    return PoseFrame(
        canvas_hw=canvas, body=body / norm, body_score=score,
        hands=hands_n, hand_score=np.where(hands_n[..., 0] == -1, 0.0, 0.9),
        face=face_n, face_score=np.where(face_n[..., 0] == -1, 0.0, 0.9),
    )


def test_alignment_recovers_scale_and_translation():
    source = _person(neck=(300, 220), shoulder_half=80, head=90)
    driving = [_person(neck=(200 + 5 * (i % 3), 150), shoulder_half=40, head=45, seed=i) for i in range(9)]
    alignment = estimate_alignment(source, driving, (512, 512))
    assert alignment.scale == pytest.approx(2.0, rel=1e-6)
    median_neck_x = np.median([200 + 5 * (i % 3) for i in range(9)])
    assert alignment.tx == pytest.approx(300 - 2.0 * median_neck_x)
    assert alignment.ty == pytest.approx(220 - 2.0 * 150)

    aligned, _ = align_track(source, driving, (512, 512))
    first = aligned[0]
    # The driving neck lands on the source neck (frame 0 is at the median position).
    np.testing.assert_allclose(first.body[1] * 512, [300 + 2 * (200 - median_neck_x), 220], atol=1e-9)
    # Shoulder width now matches the source.
    width = np.linalg.norm((first.body[2] - first.body[5]) * 512)
    assert width == pytest.approx(160.0)
    # Hidden hand/face points stay hidden, visible ones moved consistently.
    assert (first.hands[1] == -1).all() and (first.face[34:] == -1).all()
    np.testing.assert_allclose(first.hands[0] * 512, alignment.map_normalised(driving[0].hands[0]) * 512)
    # Scores and visibility are untouched.
    np.testing.assert_array_equal(first.body_score, driving[0].body_score)


def test_alignment_is_one_transform_for_the_whole_video():
    source = _person()
    driving = [_person(neck=(150 + 10 * i, 180), jitter=1.5, seed=i) for i in range(12)]
    aligned, alignment = align_track(source, driving, (512, 512))
    # Relative motion between frames is kept exactly, only scaled.
    d_in = (driving[7].body[1] - driving[2].body[1]) * 512
    d_out = (aligned[7].body[1] - aligned[2].body[1]) * 512
    np.testing.assert_allclose(d_out, alignment.scale * d_in, atol=1e-9)


def test_alignment_in_output_space_with_different_canvases():
    # Source on a wide canvas, driving on a square one; both are stretched to a 512x512 output.
    source = _person(neck=(448, 200), shoulder_half=60, head=70, canvas=(512, 896))
    driving = [_person(neck=(256, 200), shoulder_half=60, head=70, canvas=(512, 512))]
    alignment = estimate_alignment(source, driving, (512, 512))
    # In output pixels the source neck sits at 448/896*512 = 256, as the driving one: no shift in x.
    assert alignment.tx + alignment.scale * 256 == pytest.approx(256.0)


def test_alignment_falls_back_when_joints_are_missing(caplog):
    source = _person()
    nobody = PoseFrame.empty((512, 512))
    alignment = estimate_alignment(nobody, [source], (512, 512))
    assert alignment.is_identity
    assert "no shoulders or head" in caplog.text
    # Only a nose in both: translation from the nose, scale 1.
    only_nose = _person()
    only_nose.body_score[:] = 0
    only_nose.body_score[0] = 0.9
    a = estimate_alignment(only_nose, [_person(neck=(100, 100))], (512, 512))
    assert a.scale == 1.0 and a.tx == pytest.approx(156.0)
    # None frames (failed extraction) are skipped and passed through.
    aligned, _ = align_track(source, [None, _person(neck=(200, 200))], (512, 512))
    assert aligned[0] is None and aligned[1] is not None


def test_extreme_scales_are_clipped():
    source = _person(shoulder_half=200, head=200)
    driving = [_person(shoulder_half=2, head=2)]
    assert estimate_alignment(source, driving, (512, 512)).scale == 5.0
    assert Alignment().is_identity
