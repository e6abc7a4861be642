"""Hostile or broken keypoint JSON: every case is refused with a sentence, never a raw Python/OpenCV error, a huge
allocation, or the file's own content echoed back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from talkingpose.errors import TalkingPoseError
from talkingpose.pose import draw_pose, from_pose_keypoints, load_pose_keypoints
from talkingpose.pose.keypoints import MAX_CANVAS_SIDE


def _frame(body=None, width=512, height=512):
    body = body if body is not None else [256.0, 100.0, 1.0] * 18
    return {"people": [{"pose_keypoints_2d": body}], "canvas_width": width, "canvas_height": height}


def _write(tmp_path, text: str, name="track.json"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("value", ["1e18", "1e308", "-1e18", "1" + "0" * 400, "-" + "1" * 400],
                         ids=["1e18", "1e308", "-1e18", "10^400", "-1..1 (400 digits)"])
def test_huge_coordinates_are_refused_with_a_sentence(tmp_path, value):
    body = json.dumps(_frame()).replace("256.0", value, 1)
    path = _write(tmp_path, "[" + body + "]")
    with pytest.raises(TalkingPoseError, match=r"frame 0.*pose_keypoints_2d.*outside"):
        load_pose_keypoints(path)


def test_huge_coordinates_in_a_pose_keypoint_object_are_refused_before_drawing():
    # Node inputs arrive as Python objects (another pack's POSE_KEYPOINT), not as files.
    frame = _frame([1e18, 5.0, 1.0] + [256.0, 100.0, 1.0] * 17)
    with pytest.raises(TalkingPoseError, match="outside"):
        from_pose_keypoints([frame])
    frame = _frame([10 ** 400, 5.0, 1.0] + [256.0, 100.0, 1.0] * 17)
    with pytest.raises(TalkingPoseError, match="outside"):
        from_pose_keypoints([frame])


def test_coordinates_just_outside_the_canvas_are_kept_and_drawable():
    # DWPose places cut-off limbs a little beyond the picture; that is a valid pose.
    frame = _frame([-200.0, 700.0, 1.0] + [256.0, 100.0, 1.0] * 17)
    pose = from_pose_keypoints([frame])[0]
    assert pose.body[0, 0] * 512 == pytest.approx(-200.0)
    assert draw_pose(pose).shape == (512, 512, 3)


@pytest.mark.parametrize("canvas", [10 ** 9, 100000, MAX_CANVAS_SIDE + 1, "1e400", 10 ** 400],
                         ids=["1e9", "100000", "max+1", "1e400", "10^400"])
def test_oversized_canvas_is_refused_before_any_allocation(tmp_path, canvas):
    text = json.dumps([_frame(width=512)]).replace('"canvas_width": 512', f'"canvas_width": {canvas}')
    path = _write(tmp_path, text)
    with pytest.raises(TalkingPoseError, match=rf"canvas_width.*from 1 to {MAX_CANVAS_SIDE}"):
        load_pose_keypoints(path)


def test_bad_canvas_message_does_not_echo_the_file_content(tmp_path):
    secret = "root:x:0:0:SECRET-LINE"
    path = _write(tmp_path, json.dumps([{"people": [], "canvas_width": secret, "canvas_height": 512}]))
    with pytest.raises(TalkingPoseError) as info:
        load_pose_keypoints(path)
    assert "SECRET" not in str(info.value) and "canvas_width" in str(info.value)
    with pytest.raises(TalkingPoseError) as info:
        from_pose_keypoints([{"people": [], "canvas_width": 512, "canvas_height": [secret]}])
    assert "SECRET" not in str(info.value) and "canvas_height" in str(info.value)


def test_deeply_nested_json_is_refused_with_a_sentence(tmp_path):
    depth = 100_000
    path = _write(tmp_path, "[" * depth + "]" * depth)
    with pytest.raises(TalkingPoseError, match="nested too deeply"):
        load_pose_keypoints(path)


def test_a_valid_track_still_loads(tmp_path):
    path = _write(tmp_path, json.dumps([_frame(), _frame(width=MAX_CANVAS_SIDE, height=64)]))
    frames = load_pose_keypoints(path)
    assert len(frames) == 2
    poses = from_pose_keypoints(frames)
    np.testing.assert_allclose(poses[0].body[0] * 512, [256.0, 100.0])
