"""YOLOX person detection on the detection canvas (numpy + OpenCV; the ONNX session is passed in).

Behaviour follows the DWPose code used by TalkingPose: a 640×640 letterbox (image in the top-left corner, the
rest filled with 114, raw 0–255 values, no normalisation), the YOLOX anchor-free grid decode, class-aware NMS at
IoU 0.45 over candidates scoring above 0.1, then only class 0 (person) with a score above 0.3 is kept.

Numerics are kept in the same precision as the reference (float32 for the network output and the boxes) so that
thresholds and the NMS ordering decide exactly as it did.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

INPUT_HW = (640, 640)
PAD_VALUE = 114
STRIDES = (8, 16, 32)
NMS_IOU = 0.45
CANDIDATE_SCORE = 0.1
PERSON_SCORE = 0.3
PERSON_CLASS = 0


def letterbox(image_bgr: np.ndarray, input_hw: tuple[int, int] = INPUT_HW) -> tuple[np.ndarray, float]:
    """Resize (bilinear, aspect kept) into a padded `input_hw` canvas; returns the [1,3,H,W] float32 blob and
    the resize ratio that maps network pixels back to image pixels."""
    in_h, in_w = input_hw
    h, w = image_bgr.shape[:2]
    ratio = min(in_h / h, in_w / w)
    new_w, new_h = int(w * ratio), int(h * ratio)
    if new_w < 1 or new_h < 1:
        raise ValueError(f"frame of {w}x{h} pixels is too elongated for the {in_w}x{in_h} detector input")
    canvas = np.full((in_h, in_w, 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    blob = np.empty((1, 3, in_h, in_w), dtype=np.float32)
    for c in range(3):  # planar copy: faster than a strided transpose-and-convert
        blob[0, c] = canvas[:, :, c]
    return blob, ratio


@lru_cache(maxsize=8)
def _grid(input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets (x, y) and stride of every YOLOX prediction, strides 8/16/32 in turn, rows then columns."""
    cells, strides = [], []
    for stride in STRIDES:
        gh, gw = input_hw[0] // stride, input_hw[1] // stride
        ys, xs = np.divmod(np.arange(gh * gw), gw)
        cells.append(np.stack([xs, ys], axis=1))
        strides.append(np.full(gh * gw, stride))
    grid = np.concatenate(cells).astype(np.float32)
    stride = np.concatenate(strides).astype(np.float32)[:, None]
    grid.setflags(write=False)
    stride.setflags(write=False)
    return grid, stride


def decode(raw: np.ndarray, input_hw: tuple[int, int] = INPUT_HW, rows: np.ndarray | None = None):
    """Raw [1,A,5+C] output -> centre-size boxes [R,4] in network pixels for the chosen `rows` (all by default).

    Sums are exact in float32 here (cell offsets are small integers, strides powers of two), which gives the same
    values the reference obtains through float64 intermediates stored back into float32.
    """
    pred = _predictions(raw, input_hw)
    grid, stride = _grid(tuple(input_hw))
    if rows is not None:
        pred, grid, stride = pred[rows], grid[rows], stride[rows]
    centres = (pred[:, :2] + grid) * stride
    sizes = np.exp(pred[:, 2:4]) * stride
    return np.concatenate([centres, sizes], axis=1)


def class_scores(raw: np.ndarray, cls: int = PERSON_CLASS) -> np.ndarray:
    """Objectness × class probability of one class for every prediction (float32)."""
    pred = np.asarray(raw, dtype=np.float32).reshape(-1, raw.shape[-1])
    return pred[:, 4] * pred[:, 5 + cls]


def _predictions(raw: np.ndarray, input_hw) -> np.ndarray:
    pred = np.asarray(raw, dtype=np.float32).reshape(-1, raw.shape[-1])
    expected = _grid(tuple(input_hw))[0].shape[0]
    if pred.shape[0] != expected or pred.shape[1] < 6:
        raise ValueError(
            f"detector returned predictions of shape {tuple(pred.shape)}; a YOLOX model for "
            f"{input_hw[1]}x{input_hw[0]} input gives [{expected}, 5 + classes]"
        )
    return pred


def to_corners(boxes_cxcywh: np.ndarray, ratio: float) -> np.ndarray:
    """Centre-size network boxes -> x1,y1,x2,y2 in image pixels (float32 like the reference)."""
    cx, cy, w, h = boxes_cxcywh.T
    half_w, half_h = w / np.float32(2.0), h / np.float32(2.0)
    corners = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    return corners / np.float32(ratio)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU) -> list[int]:
    """Greedy NMS, highest score first, on the +1-pixel box convention of the reference; returns kept indices."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    one = np.float32(1.0) if boxes.dtype == np.float32 else 1.0
    areas = (x2 - x1 + one) * (y2 - y1 + one)
    order = scores.argsort()[::-1]
    threshold = boxes.dtype.type(iou_threshold)
    kept: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        inter_w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + one)
        inter_h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + one)
        inter = (inter_w * inter_h).astype(boxes.dtype, copy=False)
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= threshold]
    return kept


def select_people(boxes_xyxy: np.ndarray, person_scores: np.ndarray) -> np.ndarray:
    """Boxes that survive NMS and score above the person threshold, best first, as float64 [N,4].

    `boxes_xyxy` [A,4] and `person_scores` [A] are the class-0 candidates. Only class 0 is ever kept, and NMS is
    per class, so the other classes need not be decoded at all.
    """
    candidates = person_scores > CANDIDATE_SCORE
    if not candidates.any():
        return np.zeros((0, 4), dtype=np.float64)
    cand_boxes, cand_scores = boxes_xyxy[candidates], person_scores[candidates]
    kept = nms(cand_boxes, cand_scores)
    kept_boxes, kept_scores = cand_boxes[kept], cand_scores[kept]
    return kept_boxes[kept_scores > PERSON_SCORE].astype(np.float64)


def run_detector(session, image_bgr: np.ndarray) -> np.ndarray:
    """People boxes [N,4] (x1,y1,x2,y2, float64, image pixels) in `image_bgr`; N may be 0."""
    input_hw = _session_input_hw(session)
    blob, ratio = letterbox(image_bgr, input_hw)
    raw = session.run(None, {session.get_inputs()[0].name: blob})[0]
    _predictions(raw, input_hw)  # shape check
    scores = class_scores(raw)
    rows = np.flatnonzero(scores > CANDIDATE_SCORE)
    boxes = to_corners(decode(raw, input_hw, rows), ratio)
    return select_people(boxes, scores[rows])


def _session_input_hw(session) -> tuple[int, int]:
    shape = session.get_inputs()[0].shape
    dims = shape[2:4] if len(shape) == 4 else ()
    if len(dims) == 2 and all(isinstance(d, int) and d > 0 for d in dims):
        return int(dims[0]), int(dims[1])
    return INPUT_HW
