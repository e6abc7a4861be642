"""DWPose extraction and drawing against the official TalkingPose code (golden cases), plus the engine's own
behaviour: frame preparation, detection fallbacks, person choice, batching, keypoint formats, alignment."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from talkingpose.errors import TalkingPoseError
from talkingpose.pose import (
    PoseExtractionError,
    PoseExtractor,
    PoseFrame,
    draw_pose,
    fill_failed_frames,
    from_pose_keypoints,
    prepare_frame,
    to_pose_keypoints,
)
from talkingpose.pose import detector as det_mod
from talkingpose.pose import estimator as est_mod

PACK_ROOT = Path(__file__).resolve().parent.parent


def _golden_dir() -> Path:
    env = os.environ.get("TALKINGPOSE_POSE_GOLDEN_DIR")
    return Path(env) if env else PACK_ROOT.parent / "shared" / "golden" / "dwpose-a"


def _golden_cases() -> list:
    cases_file = _golden_dir() / "cases.json"
    if not cases_file.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no golden DWPose cases at {cases_file}"))]
    records = json.loads(cases_file.read_text())
    return [pytest.param(r, id=Path(r["input"]).stem) for r in records]


def _read_rgb(path: Path) -> np.ndarray:
    """PNG -> RGB uint8 (gray and alpha images come out as the 3-channel RGB the reference was fed)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    if img.dtype != np.uint8:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _extractor(models: Path) -> PoseExtractor:
    return PoseExtractor(models / "yolox_l.onnx", models / "dw-ll_ucoco_384.onnx", providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("case", _golden_cases())
def test_golden_dwpose(case):
    folder = _golden_dir()
    extractor = _extractor(folder / case["models"])
    pose = extractor(_read_rgb(folder / case["input"]))

    assert list(pose.canvas_hw) == list(case["canvas_hw"])
    np.testing.assert_allclose(pose.body, np.asarray(case["body_candidate"]), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(pose.body_subset, np.asarray(case["body_subset"])[0])
    np.testing.assert_allclose(pose.body_score, np.asarray(case["body_score"])[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(pose.hands, np.asarray(case["hands"]), atol=1e-5, rtol=0)
    np.testing.assert_allclose(pose.face[None], np.asarray(case["faces"]), atol=1e-5, rtol=0)

    render = draw_pose(pose)
    expected = _read_rgb(folder / case["render"])
    assert render.shape == expected.shape
    mismatched = int(np.any(render != expected, axis=-1).sum())
    assert mismatched == 0, f"{mismatched} pixels differ from the official render"


# ------------------------------------------------------------------------------------- synthetic ONNX models


def _save_model(path: Path, graph) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _constant_detector(path: Path, rows: np.ndarray) -> Path:
    """A YOLOX-shaped model whose [1,8400,85] output is `rows` (pixel-independent)."""
    from onnx import TensorProto, helper, numpy_helper

    out = np.zeros((1, 8400, 85), dtype=np.float32)
    out[0, : rows.shape[0]] = rows
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
            helper.make_node("Mul", ["m", "zero"], ["z"]),
            helper.make_node("Add", ["const", "z"], ["output"]),
        ],
        "det",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8400, 85])],
        [numpy_helper.from_array(out, "const"), numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    return _save_model(path, graph)


def _brightness_pose_model(path: Path, base_x: np.ndarray, base_y: np.ndarray, batch="batch") -> Path:
    """A pose model whose SimCC maps are fixed shapes times (per crop) mean(input) + 3: brighter crops score
    higher, so the chosen person depends on the pixels. `batch` may be fixed (an int) or dynamic (a name)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=1),  # [N,1,1,1]
            helper.make_node("Add", ["m", "three"], ["g4"]),
            helper.make_node("Squeeze", ["g4", "sq_axes"], ["g"]),  # [N]
            helper.make_node("Unsqueeze", ["g", "uq_axes"], ["g3"]),  # [N,1,1]
            helper.make_node("Mul", ["g3", "bx"], ["simcc_x"]),
            helper.make_node("Mul", ["g3", "by"], ["simcc_y"]),
        ],
        "pose",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 384, 288])],
        [
            helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [batch, 133, 576]),
            helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [batch, 133, 768]),
        ],
        [
            numpy_helper.from_array(base_x.astype(np.float32)[None], "bx"),
            numpy_helper.from_array(base_y.astype(np.float32)[None], "by"),
            numpy_helper.from_array(np.array(3.0, np.float32), "three"),
            numpy_helper.from_array(np.array([1, 2, 3], np.int64), "sq_axes"),
            numpy_helper.from_array(np.array([1, 2], np.int64), "uq_axes"),
        ],
    )
    return _save_model(path, graph)


def _peaked_simcc(seed: int = 0, low_score: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """SimCC maps with one peak per keypoint; peak heights 0.5 (visible for any crop gain >= 0.6) or `low_score`."""
    rng = np.random.default_rng(seed)
    bx = np.zeros((133, 576), np.float32)
    by = np.zeros((133, 768), np.float32)
    xs = rng.integers(150, 426, 133)
    ys = rng.integers(150, 618, 133)
    heights = np.where(rng.random(133) < 0.8, 0.5, low_score).astype(np.float32)
    bx[np.arange(133), xs] = heights
    by[np.arange(133), ys] = heights
    return bx, by


def _yolox_row(cell: int, stride: int, grid_w: int, box_wh_px, obj: float, person: float, offset=(0.5, 0.5)):
    """One raw YOLOX prediction row at grid cell `cell` of the given stride level."""
    row = np.zeros(85, np.float32)
    row[0:2] = offset
    row[2:4] = np.log(np.asarray(box_wh_px, np.float64) / stride)
    row[4] = obj
    row[5] = person
    return row


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Synthetic models: detectors with nobody / two people, brightness-dependent pose models."""
    root = tmp_path_factory.mktemp("synth")
    bx, by = _peaked_simcc()
    _brightness_pose_model(root / "pose_dynamic.onnx", bx, by)
    _brightness_pose_model(root / "pose_fixed1.onnx", bx, by, batch=1)
    _constant_detector(root / "det_nobody.onnx", np.zeros((1, 85), np.float32))
    # Two well separated people on the 640 letterbox: stride-32 cells (grid 20×20), one left, one right.
    left = _yolox_row(8 * 20 + 3, 32, 20, (150, 400), 0.9, 0.95)
    right = _yolox_row(8 * 20 + 15, 32, 20, (150, 400), 0.9, 0.95)
    rows = np.zeros((8400, 85), np.float32)
    first32 = 80 * 80 + 40 * 40
    rows[first32 + 8 * 20 + 3] = left
    rows[first32 + 8 * 20 + 15] = right
    _constant_detector(root / "det_two.onnx", rows)
    return root, bx, by


def _synth_extractor(root: Path, det: str, pose: str = "pose_dynamic.onnx") -> PoseExtractor:
    return PoseExtractor(root / det, root / pose, providers=["CPUExecutionProvider"])


def _expected_whole_image(bx, by, gain, canvas_hw):
    """Keypoints the whole-image box must give, computed independently of the engine's helpers."""
    h, w = canvas_hw
    cx, cy = w / 2.0, h / 2.0
    sw, sh = w * 1.25, h * 1.25
    if sw > sh * 0.75:
        sh = sw / 0.75
    else:
        sw = sh * 0.75
    x = (bx * gain).argmax(1) / 2.0
    y = (by * gain).argmax(1) / 2.0
    score = np.minimum((bx * gain).max(1), (by * gain).max(1))
    px = x / 288 * sw + cx - sw / 2
    py = y / 384 * sh + cy - sh / 2
    return px, py, score


def test_nobody_detected_uses_the_whole_image(synth):
    root, bx, by = synth
    ex = _synth_extractor(root, "det_nobody.onnx")
    frame = np.full((300, 400, 3), 0, np.uint8)  # black: crop mean is known exactly
    canvas = ex.prepare(frame)
    assert ex.detect(canvas).shape == (0, 4)
    pose = ex(frame)
    h, w = pose.canvas_hw
    assert (h, w) == (512, 704)
    # Black canvas -> the normalised crop mean is a fixed value; the gain is mean + 3.
    crop_mean = float(np.mean((0 - est_mod.MEAN) / est_mod.STD).astype(np.float32))
    gain = np.float32(crop_mean) + np.float32(3.0)
    px, py, score = _expected_whole_image(bx, by, gain, (h, w))
    assert pose.body_visible.sum() >= 8  # the fixture makes ~80 % of the points visible
    np.testing.assert_array_equal(pose.body_visible[[0, 5]], score[[0, 5]] > 0.3)
    left_shoulder_wb = 5  # COCO index of the left shoulder = OpenPose index 5 as well
    np.testing.assert_allclose(pose.body[5], [px[left_shoulder_wb] / w, py[left_shoulder_wb] / h], atol=1e-6)
    np.testing.assert_allclose(pose.body[0], [px[0] / w, py[0] / h], atol=1e-6)
    # Face points come from COCO 23..90 -> face[0] is COCO 23.
    if score[23] >= 0.3:
        np.testing.assert_allclose(pose.face[0], [px[23] / w, py[23] / h], atol=1e-6)
    else:
        np.testing.assert_array_equal(pose.face[0], [-1, -1])


def test_several_people_keep_the_best_scoring_one(synth):
    root, _, _ = synth
    ex = _synth_extractor(root, "det_two.onnx")
    frame = np.zeros((512, 512, 3), np.uint8)
    boxes = ex.detect(ex.prepare(frame))
    assert boxes.shape == (2, 4)
    left_box, right_box = sorted(boxes.tolist())
    # Make the right person's crop bright: the model then scores it higher.
    frame[:, 300:] = 255
    pose = ex(frame)
    right_centre = (right_box[0] + right_box[2]) / 2 / 512
    left_centre = (left_box[0] + left_box[2]) / 2 / 512
    neck_x = pose.body[1, 0]
    assert abs(neck_x - right_centre) < abs(neck_x - left_centre)
    # And the other way round.
    frame2 = np.zeros((512, 512, 3), np.uint8)
    frame2[:, :200] = 255
    pose2 = ex(frame2)
    assert abs(pose2.body[1, 0] - left_centre) < abs(pose2.body[1, 0] - right_centre)
    # The kept person is the one whose mean body score is highest.
    canvas = ex.prepare(frame)
    _, scores = est_mod.estimate(ex.pose_session, canvas, ex.detect(canvas))
    means = scores[:, :18].mean(1)
    assert means.shape == (2,) and means.max() > means.min()
    np.testing.assert_allclose(pose.body_score, scores[int(means.argmax()), :18])


def test_tiny_and_huge_frames_run_through(synth):
    root, _, _ = synth
    ex = _synth_extractor(root, "det_nobody.onnx")
    tiny = ex(np.full((1, 1, 3), 200, np.uint8))
    assert tiny.canvas_hw == (512, 512)
    huge = ex(np.zeros((3000, 4000), np.uint8))  # gray, 12 megapixels
    assert huge.canvas_hw == (512, 704)
    assert draw_pose(huge).shape == (512, 704, 3)


def test_batched_and_single_pose_runs_agree(synth):
    root, _, _ = synth
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (360, 480, 3), dtype=np.uint8) for _ in range(5)]
    dyn = _synth_extractor(root, "det_two.onnx", "pose_dynamic.onnx")
    fixed = _synth_extractor(root, "det_two.onnx", "pose_fixed1.onnx")
    assert dyn.pose_batch_is_dynamic and not fixed.pose_batch_is_dynamic
    batched = list(dyn.iter_extract(frames, frames_per_batch=5))
    single = [fixed(f) for f in frames]
    assert len(batched) == 5
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.body, b.body, atol=1e-9)
        np.testing.assert_allclose(a.body_score, b.body_score, atol=1e-6)
        np.testing.assert_array_equal(draw_pose(a), draw_pose(b))


def test_failure_keeps_earlier_frames_and_names_the_frame(synth):
    root, _, _ = synth
    ex = _synth_extractor(root, "det_nobody.onnx")
    good = np.zeros((64, 64, 3), np.uint8)
    bad = np.zeros((10, 10, 2), np.uint8)  # two channels: not an image
    frames = [good, good, good, bad, good]
    got = []
    with pytest.raises(PoseExtractionError) as info:
        for pose in ex.iter_extract(frames, frames_per_batch=2):
            got.append(pose)
    assert len(got) == 3
    assert info.value.frame_index == 3
    assert "frame 3" in str(info.value)
    assert isinstance(info.value, TalkingPoseError)
    # With a handler, the bad frame is reported and skipped.
    seen = []
    out = list(ex.iter_extract(frames, frames_per_batch=2, on_error=lambda i, e: seen.append(i)))
    assert seen == [3] and out[3] is None and len(out) == 5 and all(p is not None for i, p in enumerate(out) if i != 3)


def test_failed_frames_are_filled_with_the_previous_pose_or_an_empty_one():
    person = PoseFrame.empty((640, 512))
    person.body[1] = (200.0, 100.0)
    person.body_score[1] = 0.9
    track = [None, person, None]
    repeated, canvas = fill_failed_frames(track, (720, 576), repeat_previous=True)
    assert canvas == (640, 512)  # the canvas of the frames that worked, not one computed from the frame size
    assert repeated[0].is_empty and repeated[1] is person and repeated[2] is person
    emptied, _ = fill_failed_frames(track, (720, 576), repeat_previous=False)
    assert emptied[0].is_empty and emptied[1] is person and emptied[2].is_empty and emptied[2].canvas_hw == (640, 512)
    nobody, canvas = fill_failed_frames([None, None], (720, 1280), repeat_previous=True)
    assert canvas == (512, 896) and all(p.is_empty and p.canvas_hw == canvas for p in nobody)


# ------------------------------------------------------------------------------------------ frame handling


def test_prepare_frame_sizes_and_interpolation():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    canvas = prepare_frame(img)
    assert canvas.shape == (512, 896, 3)
    expected = cv2.resize(img[:, :, ::-1], (896, 512), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(canvas, expected)
    small = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    canvas = prepare_frame(small)
    assert canvas.shape == (512, 704, 3)
    np.testing.assert_array_equal(
        canvas, cv2.resize(small[:, :, ::-1], (704, 512), interpolation=cv2.INTER_LANCZOS4)
    )
    assert prepare_frame(np.zeros((2, 3, 3), np.uint8)).shape == (512, 768, 3)  # tiny
    assert prepare_frame(np.zeros((4000, 3000, 3), np.uint8)).shape == (704, 512, 3)  # huge


def test_prepare_frame_channel_variants():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    base = prepare_frame(rgb)
    rgba = np.concatenate([rgb, np.zeros((64, 64, 1), np.uint8)], axis=2)  # fully transparent: alpha dropped
    np.testing.assert_array_equal(prepare_frame(rgba), base)
    np.testing.assert_array_equal(prepare_frame(rgb.astype(np.float32) / 255.0), base)  # ComfyUI floats
    gray = rgb[:, :, 0]
    np.testing.assert_array_equal(prepare_frame(gray), prepare_frame(np.repeat(gray[:, :, None], 3, 2)))
    np.testing.assert_array_equal(prepare_frame(gray[:, :, None]), prepare_frame(gray))
    with pytest.raises(TalkingPoseError):
        prepare_frame(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(TalkingPoseError):
        prepare_frame(np.zeros((1, 1000, 3), np.uint8))  # 1:1000 would need a 512000-pixel-wide canvas
    with pytest.raises(TalkingPoseError):
        prepare_frame(np.zeros((0, 10, 3), np.uint8))


def test_nms_suppresses_overlaps_and_keeps_separate_boxes():
    boxes = np.array([[0, 0, 100, 100], [5, 5, 105, 105], [200, 200, 300, 300]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert det_mod.nms(boxes, scores) == [0, 2]
    people = det_mod.select_people(boxes, scores)
    np.testing.assert_array_equal(people, boxes[[0, 2]].astype(np.float64))
    low = det_mod.select_people(boxes, scores * np.float32(0.3))
    assert low.shape == (0, 4)


def test_openpose_reorder_and_neck():
    kp = np.stack([np.arange(133, dtype=np.float64), np.zeros(133)], axis=1)[None]
    scores = np.full((1, 133), 0.9, np.float32)
    out, sc = est_mod.to_openpose_order(kp, scores)
    assert out.shape == (1, 134, 2) and sc.shape == (1, 134)
    # nose, neck (mean of COCO 5 and 6), R shoulder=6, R elbow=8, R wrist=10, L shoulder=5, ..., L ear=3
    assert out[0, :18, 0].tolist() == [0, 5.5, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
    assert sc[0, 1] == 1.0
    scores[0, 6] = 0.2
    assert est_mod.to_openpose_order(kp, scores)[1][0, 1] == 0.0
    # Face starts at COCO 23, hands at 91 / 112 (one later after the neck insertion).
    assert out[0, 24, 0] == 23 and out[0, 92, 0] == 91 and out[0, 113, 0] == 112


# ------------------------------------------------------------------------------------------ drawing, format


def _golden_pose(index: int = 0) -> tuple[PoseFrame, dict]:
    folder = _golden_dir()
    if not (folder / "cases.json").is_file():
        pytest.skip("no golden DWPose cases")
    case = json.loads((folder / "cases.json").read_text())[index]
    return _extractor(folder / case["models"])(_read_rgb(folder / case["input"])), case


def test_draw_switches_draw_only_the_enabled_parts():
    pose, _ = _golden_pose()
    full = draw_pose(pose)
    nothing = draw_pose(pose, body=False, hands=False, face=False)
    assert not nothing.any()
    face_only = draw_pose(pose, body=False, hands=False)
    colours = {tuple(c) for c in face_only.reshape(-1, 3)}
    assert colours == {(0, 0, 0), (255, 255, 255)}
    hands_only = draw_pose(pose, body=False, face=False)
    assert (hands_only == [0, 0, 255]).all(-1).any() and not (hands_only == [255, 255, 255]).all(-1).any()
    body_only = draw_pose(pose, hands=False, face=False)
    assert (body_only == [255, 0, 0]).all(-1).any()  # nose joint colour
    # Each part appears in the full render where it was drawn alone (drawn last: face dots unchanged).
    face_px = (face_only == 255).all(-1)
    assert (full[face_px] == 255).all()


def test_pose_keypoint_roundtrip_matches_controlnet_aux_format(tmp_path):
    pose, case = _golden_pose()
    h, w = pose.canvas_hw
    kps = to_pose_keypoints([pose, None], canvas_hw=(h, w))
    frame = kps[0]
    assert frame["canvas_height"] == h and frame["canvas_width"] == w
    person = frame["people"][0]
    assert len(person["pose_keypoints_2d"]) == 18 * 3
    assert len(person["face_keypoints_2d"]) == 70 * 3
    assert len(person["hand_left_keypoints_2d"]) == 21 * 3
    body = np.asarray(person["pose_keypoints_2d"]).reshape(18, 3)
    vis = pose.body_visible
    np.testing.assert_allclose(body[vis, :2], pose.body[vis] * (w, h))
    assert (body[vis, 2] == 1.0).all() and (body[~vis] == 0).all()
    assert kps[1]["people"] == []
    json.dumps(kps)  # plain JSON types only

    back = from_pose_keypoints(kps)
    np.testing.assert_array_equal(back[0].body_visible, vis)
    np.testing.assert_allclose(back[0].body[vis], pose.body[vis], atol=1e-12)
    np.testing.assert_allclose(back[0].hands, pose.hands, atol=1e-12)
    np.testing.assert_allclose(back[0].face, pose.face, atol=1e-12)
    assert back[1].is_empty
    np.testing.assert_array_equal(draw_pose(back[0]), draw_pose(pose))

    # Of several people (e.g. from controlnet_aux), the most confident body is read.
    weak = {"pose_keypoints_2d": [10.0, 10.0, 1.0] + [0.0] * 51}
    two = {"people": [weak, frame["people"][0]], "canvas_width": w, "canvas_height": h}
    np.testing.assert_array_equal(from_pose_keypoints(two)[0].body_visible, vis)

    # Switches leave out the disabled parts like controlnet_aux does.
    only_body = to_pose_keypoints([pose], hands=False, face=False)[0]["people"][0]
    assert only_body["hand_left_keypoints_2d"] is None and only_body["face_keypoints_2d"] is None


def test_keypoint_json_save_load_and_validation(tmp_path):
    from talkingpose.pose import load_pose_keypoints, save_pose_keypoints

    pose, _ = _golden_pose()
    kps = to_pose_keypoints([pose, pose])
    path = save_pose_keypoints(tmp_path / "sub" / "track.json", kps)
    assert load_pose_keypoints(path) == json.loads(json.dumps(kps))

    bad = json.loads(json.dumps(kps))
    bad[1]["people"][0]["hand_left_keypoints_2d"] = [1.0] * 60
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(TalkingPoseError, match=r"frame 1.*hand_left_keypoints_2d.*60"):
        load_pose_keypoints(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(TalkingPoseError, match="not valid JSON"):
        load_pose_keypoints(tmp_path / "broken.json")
    (tmp_path / "nocanvas.json").write_text(json.dumps([{"people": []}]))
    with pytest.raises(TalkingPoseError, match="canvas_width"):
        load_pose_keypoints(tmp_path / "nocanvas.json")
    with pytest.raises(TalkingPoseError, match="not found"):
        load_pose_keypoints(tmp_path / "missing.json")
    with pytest.raises(TalkingPoseError):
        save_pose_keypoints(tmp_path / "x.json", [{"people": [{"pose_keypoints_2d": [0.0] * 5}],
                                                   "canvas_width": 4, "canvas_height": 4}])


def test_hand_edge_colours_round_like_the_reference():
    """The hue colours are floats such as 76.50000000000001 or 229.49999999999997 that OpenCV rounds; the values
    below are what matplotlib's hsv_to_rgb arithmetic + cv2.line give (checked against matplotlib 3.11)."""
    hand = np.full((21, 2), -1.0)
    # Put the 21 joints on a big zig-zag so that every edge is long and its middle is not covered by a joint dot.
    for k in range(21):
        hand[k] = (0.05 + 0.045 * k, 0.2 if k % 2 else 0.8)
    pose = PoseFrame.empty((512, 512))
    pose.hands[0] = hand
    canvas = draw_pose(pose, body=False, face=False)
    from talkingpose.pose.draw import HAND_EDGES

    expected = {1: (255, 77, 0), 3: (255, 229, 0), 5: (128, 255, 0), 9: (0, 255, 179), 11: (0, 178, 255),
                13: (0, 25, 255), 19: (255, 0, 77)}
    for edge, colour in expected.items():
        a, b = HAND_EDGES[edge]
        mid = ((hand[a] + hand[b]) / 2 * 512).astype(int)
        patch = canvas[mid[1] - 2:mid[1] + 3, mid[0] - 2:mid[0] + 3].reshape(-1, 3)
        assert colour in {tuple(int(v) for v in c) for c in patch}, (edge, colour)
