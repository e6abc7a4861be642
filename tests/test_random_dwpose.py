"""Random DWPose models with the real files' signatures (issue 13 §4): written without the `onnx` package, valid
ONNX, and enough for `animate --random-weights` without `--poses` to run extraction, sampling, decoding and encoding."""
from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from talkingpose.pose import PoseExtractor, draw_pose, prepare_frame
from talkingpose.pose.detector import run_detector
from talkingpose.pose.random_models import write_random_dwpose

from helpers import PACK_ROOT, SHARED
from test_cli import _probe, _with_audio

DRIVING = SHARED / "samples" / "driving" / "vid3.mp4"


def _session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_models_have_the_real_files_names_and_shapes(tmp_path):
    weights = write_random_dwpose(tmp_path)
    assert (weights.detector.name, weights.pose.name) == ("yolox_l.onnx", "dw-ll_ucoco_384.onnx")
    detector, pose = _session(weights.detector), _session(weights.pose)
    assert [(i.name, i.shape) for i in detector.get_inputs()] == [("images", [1, 3, 640, 640])]
    assert [(o.name, o.shape) for o in detector.get_outputs()] == [("output", [1, 8400, 85])]
    assert [(i.name, i.shape) for i in pose.get_inputs()] == [("input", ["batch", 3, 384, 288])]
    assert [(o.name, o.shape) for o in pose.get_outputs()] == [("simcc_x", ["batch", 133, 576]),
                                                              ("simcc_y", ["batch", 133, 768])]
    x, y = pose.run(None, {"input": np.zeros((3, 3, 384, 288), np.float32)})
    assert x.shape == (3, 133, 576) and y.shape == (3, 133, 768)


def test_models_pass_the_onnx_checker(tmp_path):
    onnx = pytest.importorskip("onnx")  # a development requirement only; the writer itself does not use it
    weights = write_random_dwpose(tmp_path)
    for path in (weights.detector, weights.pose):
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
    detector = onnx.load(str(weights.detector))
    attributes = {(n.op_type, a.name): onnx.helper.get_attribute_value(a) for n in detector.graph.node for a in n.attribute}
    assert attributes[("Transpose", "perm")] == [0, 2, 1]
    assert attributes[("AveragePool", "kernel_shape")] in ([8, 8], [16, 16], [32, 32])
    flat = next(t for t in detector.graph.initializer if t.name == "flat_shape")
    assert onnx.numpy_helper.to_array(flat).tolist() == [1, 85, -1]  # a negative int64, two's complement


def test_same_seed_same_files_other_seed_other_weights(tmp_path):
    a, b, c = (write_random_dwpose(tmp_path / name, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert a.pose.read_bytes() == b.pose.read_bytes() and a.detector.read_bytes() == b.detector.read_bytes()
    assert a.pose.read_bytes() != c.pose.read_bytes()


def test_extraction_finds_one_person_and_follows_the_pixels(tmp_path):
    weights = write_random_dwpose(tmp_path)
    extractor = PoseExtractor(weights.detector, weights.pose, providers=["CPUExecutionProvider"])
    detector_session = _session(weights.detector)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(2)]
    for frame in frames:
        assert run_detector(detector_session, prepare_frame(frame)).shape == (1, 4)
    poses = [extractor(f) for f in frames]
    assert not np.allclose(poses[0].body, poses[1].body)  # the random network reads the pixels
    render = draw_pose(poses[0])
    assert render.shape[:2] == tuple(poses[0].canvas_hw) and render.any()


@pytest.mark.skipif(not DRIVING.is_file(), reason="shared sample clip not found")
def test_random_weights_smoke_run_extracts_poses_and_keeps_fps_and_audio(tmp_path):
    """The issue's command, without --poses, on a copy of the sample clip with a sound track added."""
    with av.open(str(DRIVING)) as container:
        assert [s.type for s in container.streams] == ["video"]  # the sample itself has no audio
    driving = _with_audio(DRIVING, tmp_path / "vid3_with_audio.mp4", frames=10)
    out = tmp_path / "out" / "x.mp4"
    result = subprocess.run([sys.executable, "cli.py", "animate", "--driving", str(driving), "--frames", "6",
                             "--size", "128x128", "--steps", "2", "--random-weights", "--out", str(out)],
                            cwd=PACK_ROOT, capture_output=True, text=True,
                            env={**os.environ, "TALKINGPOSE_MODELS": str(tmp_path / "no-models")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "random DWPose models too" in result.stderr
    frames, fps, streams = _probe(out)
    assert (frames, fps, streams) == (6, Fraction(23), ["video", "audio"])
