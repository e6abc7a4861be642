"""One frame's pose (`PoseFrame`), its conversion to and from ComfyUI's POSE_KEYPOINT, and keypoint JSON files.

`PoseFrame` holds the selected person exactly as the reference code holds it just before drawing: coordinates
normalised by the detection canvas width and height; body joints keep their coordinates even when hidden (the
score decides), hand and face points that are hidden are -1.

POSE_KEYPOINT is the list of OpenPose-style dicts that comfyui_controlnet_aux produces and reads, one per frame:
``{"people": [{"pose_keypoints_2d": [x, y, c] * 18, "face_keypoints_2d": [x, y, c] * 70,
"hand_left_keypoints_2d": [x, y, c] * 21, "hand_right_keypoints_2d": [x, y, c] * 21}],
"canvas_height": H, "canvas_width": W}`` with x, y in canvas pixels, c = 1.0 for a visible point and
``0, 0, 0`` for a hidden one (controlnet_aux treats c < 1 as missing). A part that was switched off or has no
visible point is ``None`` (a body is then 18 hidden points). Only one person per frame is written. Faces carry 70 points like OpenPose's: the 68 DWPose landmarks plus the two body
eyes, as controlnet_aux writes them; 68-point faces are read too. An empty ``people`` list means nobody.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import TalkingPoseError

log = logging.getLogger("TalkingPose")

BODY_POINTS, HAND_POINTS, FACE_POINTS = 18, 21, 68
OPENPOSE_FACE_POINTS = 70
VISIBILITY = 0.3
# Largest canvas side accepted (also the detection-canvas limit): a drawn 8192² canvas is 200 MB, larger ones are
# refused before anything is allocated.
MAX_CANVAS_SIDE = 8192
# Points may lie beyond the picture (DWPose places cut-off limbs there) but not further than one canvas size.
_COORDINATE_REACH = 1.0
_EYES = (14, 15)  # OpenPose-18 right eye, left eye: appended to the face as controlnet_aux does


@dataclass
class PoseFrame:
    """The one person drawn for a frame. Shapes: body [18,2], body_score [18], hands [2,21,2] (left, right),
    hand_score [2,21], face [68,2], face_score [68]; all float64, coordinates normalised to `canvas_hw`."""

    canvas_hw: tuple[int, int]
    body: np.ndarray
    body_score: np.ndarray
    hands: np.ndarray
    hand_score: np.ndarray
    face: np.ndarray
    face_score: np.ndarray

    @property
    def body_visible(self) -> np.ndarray:
        return self.body_score > VISIBILITY

    @property
    def body_subset(self) -> np.ndarray:
        """The reference's `subset` row: the joint's index when drawn, else -1."""
        return np.where(self.body_visible, np.arange(BODY_POINTS), -1).astype(np.float64)

    @property
    def hands_visible(self) -> np.ndarray:
        return ~np.all(self.hands == -1, axis=-1)

    @property
    def face_visible(self) -> np.ndarray:
        return ~np.all(self.face == -1, axis=-1)

    @property
    def is_empty(self) -> bool:
        return not (self.body_visible.any() or self.hands_visible.any() or self.face_visible.any())

    @classmethod
    def empty(cls, canvas_hw) -> "PoseFrame":
        """Nobody: every point hidden."""
        return cls(
            canvas_hw=(int(canvas_hw[0]), int(canvas_hw[1])),
            body=np.full((BODY_POINTS, 2), -1.0), body_score=np.zeros(BODY_POINTS),
            hands=np.full((2, HAND_POINTS, 2), -1.0), hand_score=np.zeros((2, HAND_POINTS)),
            face=np.full((FACE_POINTS, 2), -1.0), face_score=np.zeros(FACE_POINTS),
        )

    @classmethod
    def from_wholebody(cls, keypoints: np.ndarray, scores: np.ndarray, canvas_hw) -> "PoseFrame":
        """One person's 134 OpenPose-ordered points in canvas pixels -> normalised frame, hidden hand/face points
        (score below 0.3) set to -1."""
        height, width = int(canvas_hw[0]), int(canvas_hw[1])
        kp = np.array(keypoints, dtype=np.float64)
        kp[:, 0] /= float(width)
        kp[:, 1] /= float(height)
        scores = np.asarray(scores, dtype=np.float64)
        body = kp[:18].copy()
        kp[scores < VISIBILITY] = -1
        return cls(
            canvas_hw=(height, width),
            body=body, body_score=scores[:18].copy(),
            hands=np.stack([kp[92:113], kp[113:134]]), hand_score=np.stack([scores[92:113], scores[113:134]]),
            face=kp[24:92].copy(), face_score=scores[24:92].copy(),
        )

    def transformed(self, fn) -> "PoseFrame":
        """A copy with `fn` ([K,2] normalised -> [K,2] normalised) applied to every body point and to the visible
        hand and face points; hidden points stay -1."""
        body = fn(self.body)
        hands = self.hands.copy()
        hvis = self.hands_visible
        if hvis.any():
            hands[hvis] = fn(self.hands[hvis])
        face = self.face.copy()
        fvis = self.face_visible
        if fvis.any():
            face[fvis] = fn(self.face[fvis])
        return replace(self, body=body, hands=hands, face=face)


# --------------------------------------------------------------------------------------------- POSE_KEYPOINT


def _flatten(points: np.ndarray, visible: np.ndarray, width: int, height: int) -> list[float] | None:
    if not visible.any():
        return None
    out: list[float] = []
    for (x, y), vis in zip(points, visible):
        out.extend((float(x * width), float(y * height), 1.0) if vis else (0.0, 0.0, 0.0))
    return out


def to_pose_keypoint(frame: PoseFrame | None, canvas_hw=None, *, body=True, hands=True, face=True) -> dict:
    """One POSE_KEYPOINT frame dict (see module doc). `frame` None (or empty) gives ``people: []``."""
    if canvas_hw is None:
        if frame is None:
            raise ValueError("canvas_hw is needed for an empty frame")
        canvas_hw = frame.canvas_hw
    height, width = int(canvas_hw[0]), int(canvas_hw[1])
    people = []
    if frame is not None and not frame.is_empty:
        body_vis = frame.body_visible
        # Like controlnet_aux: a body switched off or not seen is 18 hidden points rather than None.
        body_list = (_flatten(frame.body, body_vis, width, height) if body else None) or [0.0] * (3 * BODY_POINTS)
        face_list = None
        if face and frame.face_visible.any():
            eyes = frame.body[list(_EYES)]
            points = np.concatenate([frame.face, eyes])
            vis = np.concatenate([frame.face_visible, body_vis[list(_EYES)]])
            face_list = _flatten(points, vis, width, height)
        hand_lists = [
            _flatten(frame.hands[i], frame.hands_visible[i], width, height) if hands else None for i in (0, 1)
        ]
        people.append({
            "pose_keypoints_2d": body_list,
            "face_keypoints_2d": face_list,
            "hand_left_keypoints_2d": hand_lists[0],
            "hand_right_keypoints_2d": hand_lists[1],
        })
    return {"people": people, "canvas_height": height, "canvas_width": width}


def _points(values, count: tuple[int, ...], what: str, where: str, canvas_wh: tuple[int, int]):
    """Validated [K,3] array from a flat OpenPose list, or None. Coordinates must lie within one canvas size of the
    canvas (anything further is a broken file, and would overflow the drawing code's integer pixels)."""
    if values is None:
        return None
    if not isinstance(values, (list, tuple)):
        raise TalkingPoseError(f"{where}: '{what}' must be a list of numbers, got {type(values).__name__}.")
    if len(values) == 0:
        return None
    if len(values) % 3 or len(values) // 3 not in count:
        expected = " or ".join(str(3 * c) for c in count)
        raise TalkingPoseError(
            f"{where}: '{what}' has {len(values)} numbers; expected {expected} (x, y, confidence per point)."
        )
    width, height = canvas_wh
    far = (f"{where}: '{what}' has a point far outside its {width}x{height} canvas (x must lie between "
           f"{-width} and {2 * width}, y between {-height} and {2 * height}). The file is damaged; extract the "
           "poses again.")
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1, 3)
    except OverflowError:  # integers beyond float range, e.g. 10**400
        raise TalkingPoseError(far) from None
    except (TypeError, ValueError):
        raise TalkingPoseError(f"{where}: '{what}' must contain only numbers.") from None
    if not np.isfinite(arr).all():
        raise TalkingPoseError(f"{where}: '{what}' contains NaN or infinite values.")
    reach = _COORDINATE_REACH
    if ((arr[:, 0] < -reach * width) | (arr[:, 0] > (1 + reach) * width)
            | (arr[:, 1] < -reach * height) | (arr[:, 1] > (1 + reach) * height)).any():
        raise TalkingPoseError(far)
    return arr


def _canvas_side(frame: dict, key: str, where: str) -> int:
    """A canvas side in 1..MAX_CANVAS_SIDE. The message never repeats the value: a crafted file could carry text
    read from elsewhere."""
    value = frame.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "missing" if value is None else f"a {type(value).__name__}"
        raise TalkingPoseError(f"{where}: '{key}' must be a whole number of pixels from 1 to {MAX_CANVAS_SIDE}; "
                               f"it is {kind}.")
    if not (isinstance(value, int) or math.isfinite(value)) or not 1 <= value <= MAX_CANVAS_SIDE \
            or value != int(value):
        raise TalkingPoseError(f"{where}: '{key}' must be a whole number of pixels from 1 to {MAX_CANVAS_SIDE}; "
                               "the value given is not.")
    return int(value)


_PARTS = (
    ("pose_keypoints_2d", (BODY_POINTS,)),
    ("face_keypoints_2d", (FACE_POINTS, OPENPOSE_FACE_POINTS)),
    ("hand_left_keypoints_2d", (HAND_POINTS,)),
    ("hand_right_keypoints_2d", (HAND_POINTS,)),
)


def validate_frame_dict(frame: dict, where: str = "frame") -> None:
    """Raise TalkingPoseError unless `frame` is a well-formed POSE_KEYPOINT frame dict."""
    if not isinstance(frame, dict):
        raise TalkingPoseError(f"{where}: expected an object with 'people', 'canvas_width', 'canvas_height', "
                               f"got {type(frame).__name__}.")
    canvas_wh = _canvas_side(frame, "canvas_width", where), _canvas_side(frame, "canvas_height", where)
    people = frame.get("people", [])
    if not isinstance(people, list):
        raise TalkingPoseError(f"{where}: 'people' must be a list.")
    for p, person in enumerate(people):
        pwhere = f"{where}, person {p}"
        if not isinstance(person, dict):
            raise TalkingPoseError(f"{pwhere}: expected an object, got {type(person).__name__}.")
        for key, count in _PARTS:
            _points(person.get(key), count, key, pwhere, canvas_wh)


def _body_confidence(person: dict) -> float:
    body = person.get("pose_keypoints_2d")
    return float(np.mean(np.asarray(body, dtype=np.float64).reshape(-1, 3)[:, 2])) if body else 0.0


def from_pose_keypoint(frame: dict, where: str = "frame") -> PoseFrame:
    """A POSE_KEYPOINT frame dict -> PoseFrame (an empty PoseFrame when nobody).

    Of several people the one with the highest mean body confidence is taken (the first on ties), as DWPose
    picks its person. A point counts as visible when its confidence is above 0.3 (controlnet_aux writes 1.0/0.0).
    """
    validate_frame_dict(frame, where)
    height, width = int(frame["canvas_height"]), int(frame["canvas_width"])
    pose = PoseFrame.empty((height, width))
    people = frame.get("people") or []
    if not people:
        return pose
    person = people[int(np.argmax([_body_confidence(p) for p in people]))]

    def normalised(arr):
        xy = arr[:, :2] / np.array([float(width), float(height)])
        return xy, arr[:, 2]

    canvas_wh = (width, height)
    body = _points(person.get("pose_keypoints_2d"), (BODY_POINTS,), "", where, canvas_wh)
    if body is not None:
        pose.body, pose.body_score = normalised(body)
    for i, key in enumerate(("hand_left_keypoints_2d", "hand_right_keypoints_2d")):
        hand = _points(person.get(key), (HAND_POINTS,), key, where, canvas_wh)
        if hand is not None:
            xy, score = normalised(hand)
            xy[score < VISIBILITY] = -1
            pose.hands[i], pose.hand_score[i] = xy, score
    face = _points(person.get("face_keypoints_2d"), (FACE_POINTS, OPENPOSE_FACE_POINTS), "face", where, canvas_wh)
    if face is not None:
        xy, score = normalised(face[:FACE_POINTS])
        xy[score < VISIBILITY] = -1
        pose.face, pose.face_score = xy, score
    return pose


def to_pose_keypoints(frames, canvas_hw=None, **switches) -> list[dict]:
    """A whole track (PoseFrame or None per frame) -> POSE_KEYPOINT list."""
    return [to_pose_keypoint(f, canvas_hw, **switches) for f in frames]


def from_pose_keypoints(pose_kps) -> list[PoseFrame]:
    """A POSE_KEYPOINT list (or one frame dict) -> one PoseFrame per frame."""
    if isinstance(pose_kps, dict):
        pose_kps = [pose_kps]
    if not isinstance(pose_kps, (list, tuple)):
        raise TalkingPoseError(f"pose keypoints must be a list of frame objects, got {type(pose_kps).__name__}.")
    poses = [from_pose_keypoint(f, f"frame {i}") for i, f in enumerate(pose_kps)]
    crowded = [i for i, f in enumerate(pose_kps) if len(f.get("people") or []) > 1]
    if crowded:
        log.info("TalkingPose: %d frame(s) hold several people (first: frame %d); in each the most confident person "
                 "(highest mean body confidence) is used, as Pose Extract and the sampler's renders do.",
                 len(crowded), crowded[0])
    return poses


# --------------------------------------------------------------------------------------------------- files


def save_pose_keypoints(path, pose_kps) -> Path:
    """Write a POSE_KEYPOINT list as JSON (the format controlnet_aux's Save Pose Keypoints writes)."""
    if isinstance(pose_kps, dict):
        pose_kps = [pose_kps]
    for i, frame in enumerate(pose_kps):
        validate_frame_dict(frame, f"frame {i}")
    from .. import durable

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return durable.write_text(path, json.dumps(list(pose_kps), allow_nan=False))


def load_pose_keypoints(path) -> list[dict]:
    """Read and validate a POSE_KEYPOINT JSON file: a list of frame dicts, or a single frame dict."""
    path = Path(path)
    if not path.is_file():
        raise TalkingPoseError(f"Pose keypoint file not found: {path}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise TalkingPoseError(f"{path} is not UTF-8 text. Expected JSON: a list of OpenPose-style frames as "
                               "written by Save Pose Keypoints.") from None
    except json.JSONDecodeError as exc:  # its message gives only the position, never the text
        raise TalkingPoseError(f"{path} is not valid JSON ({exc}). Expected a list of OpenPose-style frames "
                               "as written by Save Pose Keypoints.") from None
    except RecursionError:
        raise TalkingPoseError(f"{path} is nested too deeply to be a keypoint file. Expected a list of "
                               "OpenPose-style frames as written by Save Pose Keypoints.") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise TalkingPoseError(f"{path}: expected a non-empty list of frames, got {type(data).__name__}.")
    for i, frame in enumerate(data):
        validate_frame_dict(frame, f"{path.name}, frame {i}")
    return data
