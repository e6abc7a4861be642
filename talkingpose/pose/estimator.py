"""RTMPose (DWPose whole-body, 133 COCO-WholeBody points) on person crops, SimCC decoding, OpenPose-18 order.

Each person box is grown by 1.25, widened or heightened to the model's aspect ratio, cut out with an affine warp
to the model input (288×384 for `dw-ll_ucoco_384`), normalised with the ImageNet mean/std in 0–255 units and
passed as float32. The SimCC outputs are decoded with a plain argmax (split ratio 2) and mapped back to canvas
pixels. Everything on the CPU side is vectorised over the crops; only the warp itself runs per crop.
"""
from __future__ import annotations

import cv2
import numpy as np

INPUT_WH = (288, 384)
BOX_PADDING = 1.25
SIMCC_SPLIT_RATIO = 2.0
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])
# (v - mean) / std for every byte value and channel, computed in float64 then rounded to float32 — the values the
# reference feeds the model (it normalises in float64 and onnxruntime converts its list input to float32).
_NORM_LUT = np.ascontiguousarray(((np.arange(256)[:, None] - MEAN) / STD).astype(np.float32).T)

# Position in the 134-point list (133 COCO-WholeBody points with the neck inserted at 17) of every OpenPose-18
# body joint: nose, neck, right shoulder/elbow/wrist, left shoulder/elbow/wrist, right hip/knee/ankle,
# left hip/knee/ankle, right eye, left eye, right ear, left ear.
_OPENPOSE_FROM_WHOLEBODY = np.array([0, 17, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3])
NECK_SCORE_THRESHOLD = 0.3

# Slices of the reordered 134-point list.
BODY = slice(0, 18)
FEET = slice(18, 24)
FACE = slice(24, 92)
LEFT_HAND = slice(92, 113)
RIGHT_HAND = slice(113, 134)


def box_center_scale(boxes: np.ndarray, padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """[N,4] x1,y1,x2,y2 -> centres [N,2] and padded sizes [N,2] (float64)."""
    boxes = np.asarray(boxes)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    center = np.stack([x1 + x2, y1 + y2], axis=1) * 0.5
    scale = np.stack([x2 - x1, y2 - y1], axis=1) * padding
    return center, scale


def fit_aspect(scale: np.ndarray, aspect: float) -> np.ndarray:
    """Grow each (w, h) so that w/h equals `aspect`, keeping the larger side."""
    w, h = scale[:, :1], scale[:, 1:]
    return np.where(w > h * aspect, np.concatenate([w, w / aspect], 1), np.concatenate([h * aspect, h], 1))


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=d.dtype)


def crop_matrix(center: np.ndarray, scale: np.ndarray, out_wh: tuple[int, int]) -> np.ndarray:
    """2×3 affine matrix taking the (center, scale) box to an `out_wh` image, via three float32 point pairs."""
    out_w, out_h = out_wh
    src = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = center + np.array([0.0, scale[0] * -0.5])
    src[2] = _third_point(src[0], src[1])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0] = [out_w * 0.5, out_h * 0.5]
    dst[1] = np.array([out_w * 0.5, out_h * 0.5]) + np.array([0.0, out_w * -0.5])
    dst[2] = _third_point(dst[0], dst[1])
    return cv2.getAffineTransform(src, dst)


def make_crops(image_bgr: np.ndarray, boxes: np.ndarray, input_wh: tuple[int, int] = INPUT_WH):
    """Model input [N,3,H,W] float32 for every box, with the centres and aspect-fixed scales used to map back."""
    center, scale = box_center_scale(boxes)
    scale = fit_aspect(scale, input_wh[0] / input_wh[1])
    crops = np.stack(
        [
            cv2.warpAffine(image_bgr, crop_matrix(c, s, input_wh), (int(input_wh[0]), int(input_wh[1])),
                           flags=cv2.INTER_LINEAR)
            for c, s in zip(center, scale)
        ]
    )
    blob = np.empty((crops.shape[0], 3, crops.shape[1], crops.shape[2]), dtype=np.float32)
    for c in range(3):
        np.take(_NORM_LUT[c], crops[..., c], out=blob[:, c])
    return blob, center, scale


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = SIMCC_SPLIT_RATIO):
    """Argmax SimCC decode: locations [N,K,2] in model-input pixels (float32) and scores [N,K] (float32).

    The score is the smaller of the two axis maxima; points whose score is not positive get location -1
    (before the division by the split ratio, so -0.5 in input pixels).
    """
    locs = np.stack([simcc_x.argmax(-1), simcc_y.argmax(-1)], axis=-1).astype(np.float32)
    max_x, max_y = simcc_x.max(-1), simcc_y.max(-1)
    scores = np.where(max_x > max_y, max_y, max_x)
    locs[scores <= 0.0] = -1
    locs /= np.float32(split_ratio)
    return locs, scores


def to_image_coords(locs: np.ndarray, center: np.ndarray, scale: np.ndarray, input_wh=INPUT_WH) -> np.ndarray:
    """Model-input pixel locations [N,K,2] -> canvas pixels (float64)."""
    size = np.asarray(tuple(int(v) for v in input_wh))
    return locs / size * scale[:, None, :] + center[:, None, :] - scale[:, None, :] / 2


def to_openpose_order(keypoints: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """133 COCO-WholeBody points -> 134 points: neck inserted, the 18 body joints in OpenPose order.

    The neck is the shoulders' midpoint; its score is 1 when both shoulders score above 0.3, else 0. Returns
    coordinates [N,134,2] float64 and scores [N,134] float64.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    scores = np.asarray(scores).astype(np.float64)
    neck = (keypoints[:, 5] + keypoints[:, 6]) / 2
    neck_score = ((scores[:, 5] > NECK_SCORE_THRESHOLD) & (scores[:, 6] > NECK_SCORE_THRESHOLD)).astype(np.float64)
    kp = np.concatenate([keypoints[:, :17], neck[:, None], keypoints[:, 17:]], axis=1)
    sc = np.concatenate([scores[:, :17], neck_score[:, None], scores[:, 17:]], axis=1)
    order = np.arange(kp.shape[1])
    order[:18] = _OPENPOSE_FROM_WHOLEBODY
    return kp[:, order], sc[:, order]


def session_input_wh(session) -> tuple[int, int]:
    shape = session.get_inputs()[0].shape
    if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[2:4]):
        return int(shape[3]), int(shape[2])
    return INPUT_WH


def session_batch_size(session) -> int | None:
    """The model's fixed batch size, or None when the batch dimension is dynamic."""
    dim = session.get_inputs()[0].shape[0]
    return int(dim) if isinstance(dim, int) and dim > 0 else None


def run_pose_model(session, blob: np.ndarray, max_batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Run the pose model on [N,3,H,W] crops: several at once where the batch dimension is dynamic, otherwise in
    groups of the fixed batch size (the last group padded). Returns simcc_x [N,K,Wx] and simcc_y [N,K,Wy]."""
    name = session.get_inputs()[0].name
    out_names = [o.name for o in session.get_outputs()]
    wanted = ["simcc_x", "simcc_y"] if {"simcc_x", "simcc_y"} <= set(out_names) else out_names[:2]
    fixed = session_batch_size(session)
    step = fixed or max(1, int(max_batch))
    xs, ys = [], []
    for start in range(0, blob.shape[0], step):
        part = blob[start:start + step]
        n = part.shape[0]
        if fixed and n < fixed:
            part = np.concatenate([part, np.zeros((fixed - n,) + part.shape[1:], dtype=part.dtype)])
        sx, sy = session.run(wanted, {name: part})
        xs.append(sx[:n])
        ys.append(sy[:n])
    return np.concatenate(xs), np.concatenate(ys)


def estimate(session, image_bgr: np.ndarray, boxes: np.ndarray, max_batch: int = 16):
    """Whole-body keypoints of every box: canvas-pixel coordinates [N,134,2] and scores [N,134] (OpenPose order).

    With no boxes the whole image is the box.
    """
    boxes = np.asarray(boxes)
    if boxes.shape[0] == 0:
        h, w = image_bgr.shape[:2]
        boxes = np.array([[0, 0, w, h]])
    input_wh = session_input_wh(session)
    blob, center, scale = make_crops(image_bgr, boxes, input_wh)
    simcc_x, simcc_y = run_pose_model(session, blob, max_batch)
    locs, scores = decode_simcc(simcc_x, simcc_y)
    return to_openpose_order(to_image_coords(locs, center, scale, input_wh), scores)
