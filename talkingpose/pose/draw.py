"""Drawing of DWPose keypoints in the exact style the TalkingPose networks were trained on.

Coordinates come in normalised to the canvas (x by width, y by height; -1 marks a hidden hand or face point) and
are turned into pixels with the same float products and truncations as the reference renderer, so renders are
pixel-identical:

- body: 17 limbs as filled ellipses (half-length × 4 px, angle truncated to whole degrees), then everything drawn
  so far is dimmed to 60 %, then 18 joints as radius-4 discs;
- hands: 20 edges per hand, 2 px lines coloured around the HSV hue circle, then radius-4 blue joints;
- face: 68 radius-3 white points.

Hand and face points at pixel x or y <= 0 are not drawn (the reference tests `> 0.01` after truncation).
Colours are RGB: the canvas is an RGB image.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

STICK_WIDTH = 4
JOINT_RADIUS = 4
HAND_JOINT_RADIUS = 4
FACE_RADIUS = 3
HAND_LINE_THICKNESS = 2
DIM_FACTOR = 0.6
_EPS = 0.01

# Limbs as pairs of OpenPose-18 joint indices (0-based); only the first 17 are drawn.
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
# One colour per limb and per joint, stepping round the hue circle.
BODY_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
# Hand skeleton: wrist (0) to each finger base, then along each finger.
HAND_EDGES = tuple(
    pair for finger in range(5) for pair in ((0, 4 * finger + 1),) + tuple(
        (4 * finger + k, 4 * finger + k + 1) for k in range(1, 4)
    )
)
HAND_JOINT_COLOR = (0, 0, 255)
FACE_COLOR = (255, 255, 255)


def _hue_color(hue: float) -> tuple[float, float, float]:
    """Full-saturation, full-value HSV -> RGB in 0–255 floats, with the same sextant arithmetic as matplotlib's
    `hsv_to_rgb` (OpenCV then rounds each channel to the nearest integer, ties to even)."""
    sector = int(hue * 6.0)
    frac = hue * 6.0 - sector
    v, p = 1.0, 0.0
    q = 1.0 * (1.0 - 1.0 * frac)
    t = 1.0 * (1.0 - 1.0 * (1.0 - frac))
    rgb = {0: (v, t, p), 1: (q, v, p), 2: (p, v, t), 3: (p, q, v), 4: (t, p, v), 5: (v, p, q)}[sector % 6]
    return tuple(float(np.float64(c) * 255) for c in rgb)


HAND_EDGE_COLORS = tuple(_hue_color(i / float(len(HAND_EDGES))) for i in range(len(HAND_EDGES)))


def draw_body(canvas: np.ndarray, body: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Limbs, dimming and joints of one person. `body` [18,2] normalised, `visible` [18] bool.

    Returns a new array: the dimming step makes a copy, as in the reference.
    """
    height, width = canvas.shape[:2]
    body = np.asarray(body, dtype=np.float64)
    for (a, b), color in zip(LIMBS, BODY_COLORS):
        if not (visible[a] and visible[b]):
            continue
        xs = body[[a, b], 0] * float(width)
        ys = body[[a, b], 1] * float(height)
        mean_x, mean_y = np.mean(xs), np.mean(ys)
        length = ((ys[0] - ys[1]) ** 2 + (xs[0] - xs[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
        polygon = cv2.ellipse2Poly(
            (int(mean_x), int(mean_y)), (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1
        )
        cv2.fillConvexPoly(canvas, polygon, color)
    canvas = (canvas * DIM_FACTOR).astype(np.uint8)
    for j in np.flatnonzero(visible):
        x, y = body[j]
        cv2.circle(canvas, (int(x * width), int(y * height)), JOINT_RADIUS, BODY_COLORS[j], thickness=-1)
    return canvas


def _pixels(points: np.ndarray, width: int, height: int) -> list[tuple[int, int]]:
    return [(int(x * width), int(y * height)) for x, y in np.asarray(points, dtype=np.float64)]


def draw_hands(canvas: np.ndarray, hands: np.ndarray) -> np.ndarray:
    """Each hand [21,2] in `hands` (normalised, -1 hidden): edges first, then joints. Draws in place."""
    height, width = canvas.shape[:2]
    for hand in hands:
        pts = _pixels(hand, width, height)
        for (a, b), color in zip(HAND_EDGES, HAND_EDGE_COLORS):
            (x1, y1), (x2, y2) = pts[a], pts[b]
            if x1 > _EPS and y1 > _EPS and x2 > _EPS and y2 > _EPS:
                cv2.line(canvas, (x1, y1), (x2, y2), color, thickness=HAND_LINE_THICKNESS)
        for x, y in pts:
            if x > _EPS and y > _EPS:
                cv2.circle(canvas, (x, y), HAND_JOINT_RADIUS, HAND_JOINT_COLOR, thickness=-1)
    return canvas


def draw_faces(canvas: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Each face [68,2] in `faces` (normalised, -1 hidden) as white dots. Draws in place."""
    height, width = canvas.shape[:2]
    for face in faces:
        for x, y in _pixels(face, width, height):
            if x > _EPS and y > _EPS:
                cv2.circle(canvas, (x, y), FACE_RADIUS, FACE_COLOR, thickness=-1)
    return canvas


def draw_pose(pose, canvas_hw=None, *, body: bool = True, hands: bool = True, face: bool = True) -> np.ndarray:
    """Render one `PoseFrame` (or None: an empty canvas) as an RGB uint8 image [H,W,3].

    `canvas_hw` defaults to the pose's own detection canvas; body, hands and face can be switched off.
    """
    if canvas_hw is None:
        if pose is None:
            raise ValueError("canvas_hw is needed to draw an empty pose")
        canvas_hw = pose.canvas_hw
    height, width = int(canvas_hw[0]), int(canvas_hw[1])
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    if pose is None:
        return canvas
    if body:
        canvas = draw_body(canvas, pose.body, pose.body_visible)
    if hands:
        canvas = draw_hands(canvas, pose.hands)
    if face:
        canvas = draw_faces(canvas, pose.face[None])
    return canvas


def resize_render(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Stretch a render to `width`×`height`: area averaging when the result is smaller (sum of the sides), Lanczos
    when it is larger; unchanged when the size already matches."""
    h, w = image.shape[:2]
    width, height = int(width), int(height)
    if (w, h) == (width, height):
        return image
    shrink = (width + height) / float(w + h) < 1
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)


def render_pose(pose, width: int, height: int, canvas_hw=None, **switches) -> np.ndarray:
    """What Pose Extract outputs for one frame: `draw_pose` at the pose's canvas (or `canvas_hw`), stretched to
    `width`×`height` by `resize_render`. RGB uint8 [height, width, 3]."""
    return resize_render(draw_pose(pose, canvas_hw, **switches), width, height)
