"""Bone-length retargeting on synthetic people whose every bone length and direction is known."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from pose_tracks import DRIVER_LENGTHS, SOURCE_LENGTHS, driving_track, person, pixels
from talkingpose.errors import TalkingPoseError
from talkingpose.pose import PoseFrame, from_pose_keypoints, to_pose_keypoints
from talkingpose.pose.draw import LIMBS
from talkingpose.pose.retarget import Retarget, estimate_retarget, retarget_track

SOURCE = dict(lengths=SOURCE_LENGTHS, neck=(300.0, 180.0), hand_size=15.0, face_size=45.0)


def _bone_errors(out: list[PoseFrame], driving: list[PoseFrame]):
    """Per visible bone of every frame: relative length error against the source, angle to the driver's bone."""
    length_errors, angle_errors = [], []
    for frame, drv in zip(out, driving):
        o, d = pixels(frame, frame.body), pixels(drv, drv.body)
        for bone in LIMBS:
            a, b = bone
            if not (frame.body_visible[a] and frame.body_visible[b]):
                continue
            vo, vd = o[b] - o[a], d[b] - d[a]
            length_errors.append(abs(np.linalg.norm(vo) - SOURCE_LENGTHS[bone]) / SOURCE_LENGTHS[bone])
            angle_errors.append(abs(np.degrees(np.arctan2(vo[0] * vd[1] - vo[1] * vd[0], vo @ vd))))
    return np.array(length_errors), np.array(angle_errors)


def test_every_bone_takes_the_source_length_and_the_driver_direction():
    source = person(**SOURCE)
    driving = driving_track(60)
    out, transform = retarget_track(source, driving)
    lengths, angles = _bone_errors(out, driving)
    assert lengths.size == 60 * len(LIMBS)
    assert lengths.max() <= 0.01, lengths.max()  # measured: 1.6e-15
    assert angles.max() <= 0.5, angles.max()  # measured: 8e-14 degrees
    assert transform.notes == ()


def test_the_first_neck_lands_on_the_source_neck_and_the_root_follows_the_driver_scaled():
    source = person(**SOURCE)
    driving = driving_track(30)
    out, transform = retarget_track(source, driving)
    np.testing.assert_allclose(pixels(out[0], out[0].body)[1], (300.0, 180.0), atol=1e-9)
    # The neck's path is the driver's, scaled by the body-size ratio (geometric mean of the trunk bones' ratios).
    trunk = [(1, 2), (1, 5), (1, 0), (1, 8), (1, 11)]
    expected_ratio = np.exp(np.mean([np.log(SOURCE_LENGTHS[b] / DRIVER_LENGTHS[b]) for b in trunk]))
    assert transform.body_ratio == pytest.approx(expected_ratio, rel=1e-12)
    for k in (7, 29):
        moved_out = pixels(out[k], out[k].body)[1] - pixels(out[0], out[0].body)[1]
        moved_drv = pixels(driving[k], driving[k].body)[1] - pixels(driving[0], driving[0].body)[1]
        np.testing.assert_allclose(moved_out, expected_ratio * moved_drv, atol=1e-9)


def test_the_first_neck_is_the_first_frame_that_shows_one():
    source = person(**SOURCE)
    driving = [PoseFrame.empty((512, 512)), person(hidden_joints=(1,), neck=(100.0, 100.0))] + driving_track(5)
    out, _ = retarget_track(source, driving)
    assert out[0].is_empty
    np.testing.assert_allclose(pixels(out[2], out[2].body)[1], (300.0, 180.0), atol=1e-9)


def test_hidden_joints_stay_hidden_and_visible_ones_keep_their_source_lengths():
    source = person(**SOURCE)
    driving = driving_track(20)
    for k, frame in enumerate(driving):
        if k % 3 == 0:
            frame.body_score[[3, 9, 10, 12, 13, 16]] = 0.0  # right elbow, legs, right ear hidden
        if k % 4 == 0:
            frame.hands[1] = -1.0
            frame.face[48:] = -1.0
    out, _ = retarget_track(source, driving)
    for frame, drv in zip(out, driving):
        np.testing.assert_array_equal(frame.body_visible, drv.body_visible)
        np.testing.assert_array_equal(frame.hands_visible, drv.hands_visible)
        np.testing.assert_array_equal(frame.face_visible, drv.face_visible)
        assert (frame.hands[~frame.hands_visible] == -1).all() and (frame.face[~frame.face_visible] == -1).all()
    lengths, angles = _bone_errors(out, driving)
    assert lengths.max() <= 0.01 and angles.max() <= 0.5
    # A wrist whose elbow is hidden hangs from the shoulder, not from the root map: it stays near its neighbours.
    hidden_elbow = out[0]
    shoulder, wrist = pixels(hidden_elbow, hidden_elbow.body)[[2, 4]]
    assert np.linalg.norm(wrist - shoulder) <= SOURCE_LENGTHS[(2, 3)] + SOURCE_LENGTHS[(3, 4)] + 1e-6


def test_hands_take_the_source_hand_size_and_the_face_the_source_face_size():
    source = person(**SOURCE)
    driving = driving_track(20)
    out, transform = retarget_track(source, driving)
    assert transform.hand_ratios == pytest.approx((15.0 / 22.0, 15.0 / 22.0), rel=1e-9)
    assert transform.face_ratio == pytest.approx(45.0 / 60.0, rel=1e-9)
    for frame, drv in zip(out, driving):
        body = pixels(frame, frame.body)
        for i, wrist in ((0, 7), (1, 4)):
            hand = pixels(frame, frame.hands[i])
            palm = np.linalg.norm(hand[[5, 9, 13, 17]] - hand[0], axis=-1)
            np.testing.assert_allclose(palm, 15.0, rtol=1e-9)
            np.testing.assert_allclose(hand[0], body[wrist], atol=1e-9)  # the hand hangs on the retargeted wrist
        face = pixels(frame, frame.face)
        assert np.linalg.norm(face[16] - face[0]) == pytest.approx(45.0, rel=1e-9)
        np.testing.assert_allclose(face[30], body[0], atol=1e-9)  # attached at the nose
        # Rigid: the face's shape is the driver's, scaled.
        drv_face = pixels(drv, drv.face)
        np.testing.assert_allclose(face - face[30], 0.75 * (drv_face - drv_face[30]), atol=1e-9)


def test_a_source_without_hands_or_face_falls_back_and_says_so(caplog):
    source = person(**SOURCE, hidden_hands=(0, 1), face=False)
    caplog.set_level(logging.WARNING)
    _, transform = retarget_track(source, driving_track(10))
    forearm = SOURCE_LENGTHS[(6, 7)] / DRIVER_LENGTHS[(6, 7)]
    assert transform.hand_ratios == pytest.approx((forearm, forearm), rel=1e-9)
    assert transform.face_ratio == pytest.approx(SOURCE_LENGTHS[(1, 0)] / DRIVER_LENGTHS[(1, 0)], rel=1e-9)
    assert "scaled by the forearm ratio" in caplog.text and "neck-to-nose ratio" in caplog.text
    # One hand visible in the source sizes both.
    one_hand = person(**SOURCE, hidden_hands=(1,))
    _, transform = retarget_track(one_hand, driving_track(10))
    assert transform.hand_ratios == pytest.approx((15.0 / 22.0, 15.0 / 22.0), rel=1e-9)
    assert any("sized like its left hand" in note for note in transform.notes)


def test_a_bone_the_source_hides_takes_the_driver_length_times_the_body_ratio(caplog):
    source = person(**SOURCE, hidden_joints=(9, 10, 12, 13))  # a portrait: no knees, no ankles
    driving = driving_track(10)
    caplog.set_level(logging.WARNING)
    out, transform = retarget_track(source, driving)
    thigh = LIMBS.index((8, 9))
    assert transform.bone_ratios[thigh] == pytest.approx(transform.body_ratio)
    knee = pixels(out[3], out[3].body)
    assert np.linalg.norm(knee[9] - knee[8]) == pytest.approx(DRIVER_LENGTHS[(8, 9)] * transform.body_ratio, rel=1e-9)
    assert "the source hides the right thigh" in caplog.text


def test_a_source_without_shoulders_still_retargets_and_says_what_it_guessed(caplog):
    # Shoulders hidden in the photo (arms crossed behind a desk): the shoulder bones and the upper arms hanging from
    # them take the driver's lengths times the body ratio (measured on the head and hips here).
    source = person(**SOURCE, hidden_joints=(2, 5))
    caplog.set_level(logging.WARNING)
    out, transform = retarget_track(source, driving_track(10))
    for bone in ((1, 2), (1, 5), (2, 3), (5, 6)):
        assert transform.bone_ratios[LIMBS.index(bone)] == pytest.approx(transform.body_ratio)
    trunk = [(1, 0), (1, 8), (1, 11)]
    assert transform.body_ratio == pytest.approx(
        np.exp(np.mean([np.log(SOURCE_LENGTHS[b] / DRIVER_LENGTHS[b]) for b in trunk])), rel=1e-12)
    body = pixels(out[4], out[4].body)
    assert np.linalg.norm(body[2] - body[1]) == pytest.approx(DRIVER_LENGTHS[(1, 2)] * transform.body_ratio, rel=1e-9)
    assert "the source hides the right shoulder" in caplog.text and "the source hides the left upper arm" in caplog.text


def test_the_driver_length_is_its_in_plane_length_despite_foreshortening():
    # The driver's left forearm points at the camera (drawn at 40% of its length) in 60% of the frames: the
    # frames where it lies in the picture plane still give the source's forearm length. A median would not.
    source = person(**SOURCE)
    driving = []
    for t in range(50):
        lengths = dict(DRIVER_LENGTHS)
        if t % 5 < 3:
            lengths[(6, 7)] = 0.4 * DRIVER_LENGTHS[(6, 7)]
        driving.append(person(lengths=lengths, angles={(6, 7): 100.0 + t}))
    out, _ = retarget_track(source, driving)
    for t in (3, 4, 8, 49):
        body = pixels(out[t], out[t].body)
        assert np.linalg.norm(body[7] - body[6]) == pytest.approx(SOURCE_LENGTHS[(6, 7)], rel=0.01)


def test_output_lives_in_the_source_canvas():
    source = person(**dict(SOURCE, canvas_hw=(768, 512), neck=(256.0, 300.0)))
    driving = driving_track(12, canvas_hw=(512, 896))
    out, _ = retarget_track(source, driving)
    assert all(f.canvas_hw == (768, 512) for f in out)
    lengths, angles = _bone_errors(out, driving)  # lengths in source pixels, directions in driver pixels
    assert lengths.max() <= 0.01 and angles.max() <= 0.5
    np.testing.assert_allclose(pixels(out[0], out[0].body)[1], (256.0, 300.0), atol=1e-9)
    kps = to_pose_keypoints(out)
    assert kps[0]["canvas_width"] == 512 and kps[0]["canvas_height"] == 768


def test_a_stretch_without_the_person_stays_empty_and_the_motion_continues_after_it():
    source = person(**SOURCE)
    driving = driving_track(30)
    gapped = driving[:10] + [PoseFrame.empty((512, 512))] * 5 + [None] * 3 + driving[18:]
    out, _ = retarget_track(source, gapped)
    full, _ = retarget_track(source, driving[:10] + driving[18:])
    assert all(f.is_empty for f in out[10:18])
    for k in range(18, 30):  # same transform (it is measured on the visible frames only)
        np.testing.assert_allclose(out[k].body, full[k - 8].body, atol=1e-12)


def test_chunked_retarget_equals_one_shot_with_the_same_calibration_frames():
    source = person(**SOURCE)
    driving = driving_track(40)
    one_shot, _ = retarget_track(source, driving, calibration_frames=16)
    transform = None
    chunked = []
    for start in range(0, 40, 16):
        carried = None if transform is None else Retarget.from_dict(json.loads(json.dumps(transform.to_dict())))
        piece, transform = retarget_track(source, driving[start:start + 16], transform=carried)
        chunked += piece
    for a, b in zip(chunked, one_shot):
        np.testing.assert_array_equal(a.body, b.body)
        np.testing.assert_array_equal(a.hands, b.hands)
        np.testing.assert_array_equal(a.face, b.face)


def test_bad_sources_and_tracks_are_refused_with_sentences():
    driving = driving_track(5)
    with pytest.raises(TalkingPoseError, match="source shows no person"):
        retarget_track(PoseFrame.empty((512, 512)), driving)
    with pytest.raises(TalkingPoseError, match="source's neck is not visible"):
        retarget_track(person(**SOURCE, hidden_joints=(1,)), driving)
    only_neck = person(**SOURCE, hidden_joints=tuple(j for j in range(18) if j != 1), hidden_hands=(0, 1), face=False)
    with pytest.raises(TalkingPoseError, match="share no visible bone"):
        retarget_track(only_neck, driving)
    with pytest.raises(TalkingPoseError, match="driving track is empty"):
        retarget_track(person(**SOURCE), [])
    with pytest.raises(TalkingPoseError, match="shows nobody in any frame"):
        retarget_track(person(**SOURCE), [PoseFrame.empty((512, 512)), None])
    with pytest.raises(TalkingPoseError, match="neck is never visible"):
        retarget_track(person(**SOURCE), [person(hidden_joints=(1,))])
    with pytest.raises(TalkingPoseError, match=r"mixes canvas sizes: frame 0 is 512x512, frame 1 is 896x512"):
        retarget_track(person(**SOURCE), [person(), person(canvas_hw=(512, 896))])
    with pytest.raises(TalkingPoseError, match="measured on 512x512"):
        estimate_retarget(person(**SOURCE), [person()]).apply(person(canvas_hw=(512, 896)))
    with pytest.raises(TalkingPoseError, match="retarget transform is damaged"):
        Retarget.from_dict({"bone_ratios": [1.0]})


def test_several_people_use_the_most_confident_one_and_say_so(caplog):
    caplog.set_level(logging.INFO)
    wanted = to_pose_keypoints([person(neck=(200.0, 200.0))])[0]
    weak = to_pose_keypoints([person(neck=(400.0, 100.0), hidden_joints=range(2, 18))])[0]
    frame = {"people": [weak["people"][0], wanted["people"][0]], "canvas_width": 512, "canvas_height": 512}
    (pose,) = from_pose_keypoints([frame])
    np.testing.assert_allclose(pixels(pose, pose.body)[1], (200.0, 200.0))
    assert "1 frame(s) hold several people" in caplog.text and "most confident" in caplog.text


def test_nan_coordinates_in_a_driving_track_are_refused():
    frame = to_pose_keypoints([person()])[0]
    frame["people"][0]["pose_keypoints_2d"][3] = float("nan")
    with pytest.raises(TalkingPoseError, match="NaN"):
        from_pose_keypoints([frame])
