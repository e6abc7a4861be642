"""The pose nodes run end to end through the standalone host path ($TALKINGPOSE_MODELS), on the synthetic golden
models, on golden inputs and on a real video frame."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from talkingpose.errors import TalkingPoseError
from nodes import pose_nodes

from helpers import COMFYUI_STYLE_LOAD, PACK_ROOT

GOLDEN = PACK_ROOT.parent / "shared" / "golden" / "dwpose-a"


def _rgb(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _image_batch(*arrays: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).float() / 255.0


def test_node_registration_and_quick_import():
    assert pose_nodes.NODE_DISPLAY_NAME_MAPPINGS["TalkingPoseExtract"] == "TalkingPose Pose Extract"
    for name, cls in pose_nodes.NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY == "TalkingPose"
        assert callable(getattr(cls, cls.FUNCTION))
        assert name in pose_nodes.NODE_DISPLAY_NAME_MAPPINGS
        cls.INPUT_TYPES()
    spec = pose_nodes.TalkingPoseExtract.INPUT_TYPES()
    assert spec["required"]["images"][0] == "IMAGE" and "source_image" in spec["optional"]
    # Saved workflows link outputs by slot: the first two stay where they were, the pose state comes after them.
    assert pose_nodes.TalkingPoseExtract.RETURN_TYPES == ("IMAGE", "POSE_KEYPOINT", "TALKINGPOSE_POSE_STATE")

    # Importing the pack must not import onnxruntime or the pose engine, and must work without onnxruntime.
    code = (
        "import sys\n"
        "sys.modules['onnxruntime'] = None\n"  # any 'import onnxruntime' now fails
        + COMFYUI_STYLE_LOAD.format(name="tp", init=str(PACK_ROOT / "__init__.py"))
        + "assert 'TalkingPoseExtract' in pack.NODE_CLASS_MAPPINGS\n"
        "assert 'talkingpose.pose' not in sys.modules, 'pose engine imported at start-up'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_extract_node_reproduces_the_official_render(models_env):
    case = json.loads((GOLDEN / "cases.json").read_text())[0]
    assert case["input"].startswith("det_512x512")
    frame = _rgb(GOLDEN / case["input"])
    node = pose_nodes.TalkingPoseExtract()
    images, kps, _ = node.extract(_image_batch(frame, frame), 512, 512, True, True, True)
    assert images.shape == (2, 512, 512, 3) and images.dtype == torch.float32
    expected = _rgb(GOLDEN / case["render"])
    got = (images[0].numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(images[0].numpy(), images[1].numpy())
    assert len(kps) == 2 and kps[0]["canvas_width"] == 512 and kps[0]["canvas_height"] == 512
    body = np.asarray(kps[0]["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    cand = np.asarray(case["body_candidate"])
    visible = np.asarray(case["body_subset"])[0] >= 0
    np.testing.assert_allclose(body[visible, :2], cand[visible] * 512, atol=1e-4)

    # Other output size and switched-off parts.
    small, kps2, _ = node.extract(_image_batch(frame), 256, 384, True, False, False)
    assert small.shape == (1, 384, 256, 3)
    person = kps2[0]["people"][0]
    assert person["hand_left_keypoints_2d"] is None and person["face_keypoints_2d"] is None
    # 0 keeps the detection canvas (here 1280x720 -> 896x512).
    wide = _rgb(GOLDEN / "det_1280x720_input.png")
    out, kps3, _ = node.extract(_image_batch(wide), 0, 0, True, True, True)
    assert out.shape == (1, 512, 896, 3) and kps3[0]["canvas_width"] == 896


def test_extract_node_accepts_rgba_and_gray_batches(models_env):
    frame = _rgb(GOLDEN / "det_400x300_input.png")
    node = pose_nodes.TalkingPoseExtract()
    rgb_out, rgb_kps, _ = node.extract(_image_batch(frame), 0, 0, True, True, True)
    rgba = np.concatenate([frame, np.full(frame.shape[:2] + (1,), 7, np.uint8)], axis=2)
    rgba_out, rgba_kps, _ = node.extract(_image_batch(rgba), 0, 0, True, True, True)
    np.testing.assert_array_equal(rgba_out.numpy(), rgb_out.numpy())  # alpha dropped, not blended
    gray = frame[:, :, 1:2]
    gray_out, _, _ = node.extract(_image_batch(gray), 0, 0, True, True, True)
    assert gray_out.shape == rgb_out.shape and gray_out.any()


def test_extract_node_on_a_real_video_frame(models_env, shared_dir):
    av = pytest.importorskip("av")
    with av.open(str(shared_dir / "samples" / "driving" / "vid1.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (512, 512, 3)
    images, kps, _ = pose_nodes.TalkingPoseExtract().extract(_image_batch(frame), 512, 512, True, True, True)
    render = (images[0].numpy() * 255).round().astype(np.uint8)
    assert render.any(), "nothing drawn"
    # The synthetic models ignore pixels: on a real frame the detector still finds its one person box, and the
    # drawing is the same as on the golden 512x512 input.
    expected = _rgb(GOLDEN / "det_512x512_render.png")
    np.testing.assert_array_equal(render, expected)
    assert len(kps[0]["people"]) == 1


def test_extract_node_frame_failures(models_env, monkeypatch):
    from talkingpose.pose import extractor as extractor_mod

    frame = _rgb(GOLDEN / "det_512x512_input.png")
    marked = frame.copy()
    marked[0, 0] = (1, 2, 3)
    batch = _image_batch(frame, frame, marked, frame)
    original = extractor_mod.PoseExtractor.prepare

    def failing_prepare(self, image):
        rgb = extractor_mod.to_rgb_uint8(image)
        if tuple(rgb[0, 0]) == (1, 2, 3):
            raise RuntimeError("simulated onnxruntime failure")
        return original(self, image)

    monkeypatch.setattr(extractor_mod.PoseExtractor, "prepare", failing_prepare)
    node = pose_nodes.TalkingPoseExtract()
    with pytest.raises(TalkingPoseError, match=r"frame 2 of 4.*simulated.*frames 0-1 had been extracted"):
        node.extract(batch, 512, 512, True, True, True, on_error="stop")

    images, kps, _ = node.extract(batch, 512, 512, True, True, True, on_error="empty pose")
    assert images.shape[0] == 4
    assert not images[2].any() and kps[2]["people"] == []
    assert images[3].any() and kps[3]["people"]

    images, kps, _ = node.extract(batch, 512, 512, True, True, True, on_error="repeat previous pose")
    np.testing.assert_array_equal(images[2].numpy(), images[1].numpy())
    assert kps[2] == kps[1]


def test_extract_node_alignment_with_a_source_image(models_env):
    frame = _rgb(GOLDEN / "det_512x512_input.png")
    node = pose_nodes.TalkingPoseExtract()
    plain, kps_plain, _ = node.extract(_image_batch(frame), 512, 512, True, True, True)
    # Same person in source and driving video: the alignment is the identity.
    same, kps_same, _ = node.extract(_image_batch(frame), 512, 512, True, True, True, source_image=_image_batch(frame))
    np.testing.assert_array_equal(same.numpy(), plain.numpy())
    # A source at another aspect ratio (different detection canvas, same normalised pose from these synthetic
    # models up to the box) gives a valid, different but bounded result.
    wide = _rgb(GOLDEN / "det_400x300_input.png")
    moved, kps_moved, _ = node.extract(_image_batch(frame), 512, 512, True, True, True, source_image=_image_batch(wide))
    assert moved.shape == plain.shape and moved.any()
    a = np.asarray(kps_plain[0]["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    b = np.asarray(kps_moved[0]["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    assert (a[:, 2] == b[:, 2]).all()
    assert not np.allclose(a[:, :2], b[:, :2])


def test_missing_and_corrupt_weights_raise_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKINGPOSE_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("AUX_ANNOTATOR_CKPTS_PATH", raising=False)
    frame = _image_batch(np.zeros((64, 64, 3), np.uint8))
    node = pose_nodes.TalkingPoseExtract()
    with pytest.raises(TalkingPoseError, match=r"yzd-v/DWPose.*yolox_l\.onnx|yolox_l\.onnx.*yzd-v/DWPose"):
        node.extract(frame, 512, 512, True, True, True)
    dwpose = tmp_path / "models" / "dwpose"
    dwpose.mkdir(parents=True)
    (dwpose / "yolox_l.onnx").write_bytes(b"this is not an onnx file")
    shutil.copy(GOLDEN / "models" / "det" / "dw-ll_ucoco_384.onnx", dwpose / "dw-ll_ucoco_384.onnx")
    with pytest.raises(TalkingPoseError, match=r"corrupt.*download"):
        node.extract(frame, 512, 512, True, True, True)
    # A truncated download of a real-looking file.
    data = (GOLDEN / "models" / "det" / "yolox_l.onnx").read_bytes()
    (dwpose / "yolox_l.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(TalkingPoseError, match="corrupt"):
        node.extract(frame, 512, 512, True, True, True)


def test_draw_save_load_nodes_roundtrip(models_env, tmp_path):
    frame = _rgb(GOLDEN / "det_512x512_input.png")
    images, kps, _ = pose_nodes.TalkingPoseExtract().extract(_image_batch(frame), 512, 512, True, True, True)

    # Names are relative to the output folder ($TALKINGPOSE_MODELS/../output standalone).
    saved = pose_nodes.TalkingPoseSaveKeypoints().save(kps, "out/track")
    path = Path(saved["result"][0])
    assert path == tmp_path / "output" / "out" / "track_00001.json" and path.is_file()
    second = Path(pose_nodes.TalkingPoseSaveKeypoints().save(kps, "out/track")["result"][0])
    assert second.name == "track_00002.json"
    assert "out/track_00002.json" in pose_nodes.TalkingPoseLoadKeypoints.INPUT_TYPES()["required"]["path"][0]

    (loaded,) = pose_nodes.TalkingPoseLoadKeypoints().load("out/track_00001.json")
    assert loaded == json.loads(json.dumps(kps))
    (drawn,) = pose_nodes.TalkingPoseDrawKeypoints().draw(loaded, 512, 512, True, True, True)
    np.testing.assert_array_equal(drawn.numpy(), images.numpy())
    # Aligning a track onto itself changes nothing.
    (self_aligned,) = pose_nodes.TalkingPoseDrawKeypoints().draw(loaded, 512, 512, True, True, True,
                                                                 source_pose_keypoint=loaded)
    np.testing.assert_array_equal(self_aligned.numpy(), images.numpy())

    bad = tmp_path / "output" / "bad.json"
    bad.write_text(json.dumps([{"people": [{"pose_keypoints_2d": [1, 2]}], "canvas_width": 8,
                                "canvas_height": 8}]))
    with pytest.raises(TalkingPoseError, match="pose_keypoints_2d"):
        pose_nodes.TalkingPoseLoadKeypoints().load("bad.json")
