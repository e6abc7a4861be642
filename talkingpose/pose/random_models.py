"""Random DWPose models with the real files' signatures, for smoke runs and tests without the real weights.

`write_random_dwpose(folder)` writes `yolox_l.onnx` (`images` [1,3,640,640] -> `output` [1,8400,85], the YOLOX
layout: strides 8, 16 and 32, rows then columns) and `dw-ll_ucoco_384.onnx` (`input` [N,3,384,288] ->
`simcc_x` [N,133,576], `simcc_y` [N,133,768], dynamic N). Both are small random networks whose outputs depend on
the pixels. The detector has a fixed prior that makes exactly one anchor near the canvas centre a confident
person, so every frame goes through crops, pose estimation and drawing; where the random pose model puts the
points is noise.

The files are written with a minimal ONNX protobuf encoder (below) instead of the `onnx` package: a normal
install has onnxruntime but not `onnx`, and the six message types these graphs use are a few lines of the
protobuf wire format. The tests check the files with `onnx.checker` and load them with onnxruntime.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from .onnx_models import DETECTOR_FILE, POSE_FILE, DWPoseWeights

log = logging.getLogger("TalkingPose")

IR_VERSION = 8
OPSET = 13
# ONNX TensorProto.DataType and AttributeProto.AttributeType values used here.
FLOAT, INT64 = 1, 7
ATTR_INT, ATTR_INTS = 2, 7

DETECTOR_INPUT = (1, 3, 640, 640)
DETECTOR_STRIDES = (8, 16, 32)
DETECTOR_CHANNELS = 85  # box (4), objectness (1), 80 COCO classes
POSE_INPUT_HW = (384, 288)
KEYPOINTS = 133
# The planted person: one stride-32 anchor (column 10, row 8 of the 20×20 grid), a 256×448 box around
# (336, 272) on the 640×640 letterbox.
PERSON_CELL = (10, 8)
PERSON_BOX_CELLS = (8.0, 14.0)


# ------------------------------------------------------------------------------------------- protobuf encoding
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 values are written as their 64-bit two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes_field(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian)."""
    array = np.ascontiguousarray(array)
    data_type = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}[array.dtype]
    dims = b"".join(_int_field(1, d) for d in array.shape)
    return dims + _int_field(2, data_type) + _bytes_field(8, name) + _bytes_field(9, array.astype(array.dtype.newbyteorder("<")).tobytes())


def _attribute(name: str, value) -> bytes:
    """AttributeProto: name (1), i (3), ints (8), type (20)."""
    if isinstance(value, int):
        return _bytes_field(1, name) + _int_field(3, value) + _int_field(20, ATTR_INT)
    return _bytes_field(1, name) + b"".join(_int_field(8, v) for v in value) + _int_field(20, ATTR_INTS)


def _node(op_type: str, inputs, outputs, **attributes) -> bytes:
    """NodeProto: input (1), output (2), name (3), op_type (4), attribute (5)."""
    return (b"".join(_bytes_field(1, i) for i in inputs) + b"".join(_bytes_field(2, o) for o in outputs)
            + _bytes_field(3, f"{op_type}_{outputs[0]}") + _bytes_field(4, op_type)
            + b"".join(_bytes_field(5, _attribute(k, v)) for k, v in attributes.items()))


def _value_info(name: str, shape) -> bytes:
    """ValueInfoProto of a float tensor; an int dimension is fixed, a str one is named (dynamic)."""
    dims = b"".join(_bytes_field(1, _int_field(1, d) if isinstance(d, int) else _bytes_field(2, d)) for d in shape)
    tensor_type = _int_field(1, FLOAT) + _bytes_field(2, dims)
    return _bytes_field(1, name) + _bytes_field(2, _bytes_field(1, tensor_type))


def model_bytes(name: str, nodes: list[bytes], inputs: dict, outputs: dict, initializers: dict) -> bytes:
    """A serialized ModelProto: one graph, the default opset domain."""
    graph = (b"".join(_bytes_field(1, n) for n in nodes) + _bytes_field(2, name)
             + b"".join(_bytes_field(5, _tensor(k, v)) for k, v in initializers.items())
             + b"".join(_bytes_field(11, _value_info(k, s)) for k, s in inputs.items())
             + b"".join(_bytes_field(12, _value_info(k, s)) for k, s in outputs.items()))
    opset = _bytes_field(1, "") + _int_field(2, OPSET)
    return (_int_field(1, IR_VERSION) + _bytes_field(2, "talkingpose.random_models") + _bytes_field(7, graph)
            + _bytes_field(8, opset))


# ------------------------------------------------------------------------------------------------- the models
def detector_bytes(rng: np.random.Generator) -> bytes:
    """YOLOX-shaped detector: per stride, the letterbox averaged over stride×stride cells, one shared 1×1 conv
    to the 85 channels; box channels raw, scores through a sigmoid after the person prior."""
    weight = (rng.standard_normal((DETECTOR_CHANNELS, 3, 1, 1)) * 0.002).astype(np.float32)  # raw 0-255 pixels
    bias = np.full(DETECTOR_CHANNELS, -4.0, np.float32)  # other classes unlikely
    bias[:4] = 0.5, 0.5, np.log(PERSON_BOX_CELLS[0]), np.log(PERSON_BOX_CELLS[1])  # cell centre, box size
    bias[4:6] = 0.0  # objectness and person: decided by the prior
    anchors = sum((DETECTOR_INPUT[2] // s) * (DETECTOR_INPUT[3] // s) for s in DETECTOR_STRIDES)
    prior = np.full((1, anchors, 1), -12.0, np.float32)
    first_stride32 = anchors - (DETECTOR_INPUT[2] // 32) * (DETECTOR_INPUT[3] // 32)
    prior[0, first_stride32 + PERSON_CELL[1] * (DETECTOR_INPUT[3] // 32) + PERSON_CELL[0]] = 4.0
    nodes = []
    for s in DETECTOR_STRIDES:
        nodes += [
            _node("AveragePool", ["images"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]),
            _node("Conv", [f"pool{s}", "head_w", "head_b"], [f"head{s}"]),
            _node("Reshape", [f"head{s}", "flat_shape"], [f"flat{s}"]),
        ]
    nodes += [
        _node("Concat", [f"flat{s}" for s in DETECTOR_STRIDES], ["all"], axis=2),
        _node("Transpose", ["all"], ["raw"], perm=[0, 2, 1]),
        _node("Slice", ["raw", "box_start", "box_end", "last_axis"], ["box"]),
        _node("Slice", ["raw", "box_end", "channels_end", "last_axis"], ["logits"]),
        _node("Add", ["logits", "prior"], ["prior_logits"]),
        _node("Sigmoid", ["prior_logits"], ["scores"]),
        _node("Concat", ["box", "scores"], ["output"], axis=2),
    ]
    initializers = {
        "head_w": weight, "head_b": bias, "prior": prior,
        "flat_shape": np.array([1, DETECTOR_CHANNELS, -1], np.int64),
        "box_start": np.array([0], np.int64), "box_end": np.array([4], np.int64),
        "channels_end": np.array([DETECTOR_CHANNELS], np.int64), "last_axis": np.array([2], np.int64),
    }
    return model_bytes("random_yolox", nodes, {"images": DETECTOR_INPUT}, {"output": (1, anchors, DETECTOR_CHANNELS)},
                       initializers)


def pose_bytes(rng: np.random.Generator) -> bytes:
    """RTMPose-shaped model: the crop's column (row) profile, a random transposed conv of stride 2 to the
    133 keypoints' SimCC x (y) logits — twice the input width (height), as SimCC's split ratio 2."""
    height, width = POSE_INPUT_HW
    nodes = [
        _node("ReduceMean", ["input"], ["columns"], axes=[2], keepdims=0),  # [N,3,288]
        _node("ConvTranspose", ["columns", "x_w", "x_b"], ["simcc_x"], strides=[2]),  # [N,133,576]
        _node("ReduceMean", ["input"], ["rows"], axes=[3], keepdims=0),  # [N,3,384]
        _node("ConvTranspose", ["rows", "y_w", "y_b"], ["simcc_y"], strides=[2]),  # [N,133,768]
    ]
    initializers = {
        "x_w": (rng.standard_normal((3, KEYPOINTS, 2)) * 0.5).astype(np.float32),
        "x_b": np.zeros(KEYPOINTS, np.float32),
        "y_w": (rng.standard_normal((3, KEYPOINTS, 2)) * 0.5).astype(np.float32),
        "y_b": np.zeros(KEYPOINTS, np.float32),
    }
    return model_bytes("random_rtmpose", nodes, {"input": ("batch", 3, height, width)},
                       {"simcc_x": ("batch", KEYPOINTS, 2 * width), "simcc_y": ("batch", KEYPOINTS, 2 * height)},
                       initializers)


def write_random_dwpose(folder: Path, seed: int = 0) -> DWPoseWeights:
    """Write the two random models into `folder` under the real files' names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (folder / DETECTOR_FILE).write_bytes(detector_bytes(rng))
    (folder / POSE_FILE).write_bytes(pose_bytes(rng))
    return DWPoseWeights(folder / DETECTOR_FILE, folder / POSE_FILE)


_process_folder: tempfile.TemporaryDirectory | None = None


def random_models_root() -> Path:
    """A models root whose `dwpose/` holds the random models: written once per process into a temporary folder
    that is removed when the process ends."""
    global _process_folder
    if _process_folder is None:
        _process_folder = tempfile.TemporaryDirectory(prefix="talkingpose-random-dwpose-")
        write_random_dwpose(Path(_process_folder.name) / "dwpose")
        log.warning("SMOKE RUN: random DWPose models too (the real files' inputs and outputs); the poses are noise.")
    return Path(_process_folder.name)
