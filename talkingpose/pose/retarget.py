"""Bone-length retargeting: the driving person's motion drawn with the source person's proportions.

Every bone of the OpenPose-18 tree (rooted at the neck; the limbs the renderer draws) keeps its direction in each
driving frame and takes its length from the source image's pose:

    out[child] = out[parent] + r_bone · (drv[child] - drv[parent]),   r_bone = source length / driver length

with one ratio per bone for the whole video, so retargeting adds no jitter and keeps the driver's foreshortening
(a forearm pointing at the camera stays short). The driver's length of a bone is the 90th percentile of its
per-frame lengths over the frames that show it, not the median: a limb is at its true length only when it lies
in the picture plane, and a talking person's forearms often point forward; the top tenth is left out as
detection outliers. On a driver whose bones keep their length, every retargeted bone has exactly the source's
length.

- The root follows the driver's neck, scaled by the body-size ratio `body_ratio` (geometric mean of the trunk
  bones' ratios: shoulders, neck–nose, hips) and offset so that the first driving neck lands on the source's neck.
  The same map, ``p -> source_neck + body_ratio · (p - first_driving_neck)``, places any visible joint whose
  parent the driver hides in that frame.
- Hands (21 points) move rigidly with the wrist and are scaled by the source's hand size when the source shows a
  hand (wrist to finger-base distances), else by the source/driver forearm ratio.
- The face (68 points) moves rigidly with the nose, scaled by the source's face size (jaw width, outer eye
  corners, nose bridge to chin), else by the neck–nose ratio.
- A bone the source hides takes the driver's length times `body_ratio`; a joint the driver hides stays hidden.
- The output lives in the source's canvas: coordinates are measured in each canvas' own pixels and the result is
  normalised by the source canvas, ready to draw at the sampler's size.

Every fallback is listed in `Retarget.notes` (and logged once), so a skeleton is never silently wrong.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from ..errors import TalkingPoseError
from .draw import LIMBS
from .keypoints import PoseFrame

log = logging.getLogger("TalkingPose")

NOSE, NECK = 0, 1
LENGTH_QUANTILE = 90
# Trunk bones (neck->shoulders, neck->nose, neck->hips) give the body-size ratio: they bend least.
TRUNK_BONES = ((1, 2), (1, 5), (1, 0), (1, 8), (1, 11))
# Hands: index 0 is the left hand (body wrist 7, forearm 6->7), index 1 the right (wrist 4, forearm 3->4).
HAND_WRIST = (7, 4)
HAND_FOREARM = ((6, 7), (3, 4))
HAND_SIZE_SEGMENTS = ((0, 5), (0, 9), (0, 13), (0, 17))  # hand wrist to index, middle, ring, little finger bases
FACE_SIZE_SEGMENTS = ((0, 16), (36, 45), (27, 8))  # jaw width, outer eye corners, nose bridge to chin
# A single bone ratio further than this factor from the body ratio is a detection error, not a proportion.
BONE_RATIO_SPREAD = 2.5
BODY_RATIO_LIMITS = (0.2, 5.0)
_BONE_NAMES = {
    (1, 2): "right shoulder", (1, 5): "left shoulder", (2, 3): "right upper arm", (3, 4): "right forearm",
    (5, 6): "left upper arm", (6, 7): "left forearm", (1, 8): "right side of the trunk", (8, 9): "right thigh",
    (9, 10): "right shin", (1, 11): "left side of the trunk", (11, 12): "left thigh", (12, 13): "left shin",
    (1, 0): "neck to nose", (0, 14): "right eye", (14, 16): "right ear", (0, 15): "left eye", (15, 17): "left ear",
}
_HAND_NAMES = ("left hand", "right hand")


def _ancestry() -> dict[int, tuple[tuple[int, int], ...]]:
    """For each joint below the neck, in drawing (parent-first) order: its ancestors nearest first, each with the
    index in LIMBS of the bone leading down from it."""
    parents = {child: (parent, k) for k, (parent, child) in enumerate(LIMBS)}
    out = {}
    for _, child in LIMBS:
        path, joint = [], child
        while joint in parents:
            parent, k = parents[joint]
            path.append((parent, k))
            joint = parent
        out[child] = tuple(path)
    return out


_ANCESTRY = _ancestry()


def _pixels(frame: PoseFrame, points: np.ndarray) -> np.ndarray:
    height, width = frame.canvas_hw
    return np.asarray(points, dtype=np.float64) * (float(width), float(height))


def _segment_lengths(points: np.ndarray, visible: np.ndarray, segments) -> np.ndarray:
    """Length of each (a, b) segment, NaN where either end is hidden."""
    a, b = np.array(segments).T
    lengths = np.linalg.norm(points[b] - points[a], axis=-1)
    return np.where(visible[a] & visible[b], lengths, np.nan)


def _driver_lengths(samples: list[np.ndarray]) -> np.ndarray:
    """Per segment, the LENGTH_QUANTILE-th percentile over the frames that show it (NaN where none does)."""
    stacked = np.stack(samples) if samples else np.empty((0, 0))
    out = np.full(stacked.shape[1] if stacked.size else 0, np.nan)
    for k in range(out.size):
        seen = stacked[:, k][np.isfinite(stacked[:, k]) & (stacked[:, k] > 1e-6)]
        if seen.size:
            out[k] = np.percentile(seen, LENGTH_QUANTILE)
    return out


def _ratio(source: np.ndarray, driver: np.ndarray) -> np.ndarray:
    ok = np.isfinite(source) & np.isfinite(driver) & (source > 1e-6) & (driver > 1e-6)
    return np.where(ok, source / np.where(ok, driver, 1.0), np.nan)


def _geometric_mean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(np.exp(np.mean(np.log(values)))) if values.size else None


def check_one_canvas(frames: Sequence[PoseFrame | None], what: str = "driving track") -> tuple[int, int] | None:
    """The one canvas (height, width) of a track's frames; refuses a track that mixes canvas sizes."""
    canvas = None
    for i, frame in enumerate(frames):
        if frame is None:
            continue
        if canvas is None:
            canvas, first = frame.canvas_hw, i
        elif frame.canvas_hw != canvas:
            raise TalkingPoseError(
                f"The {what} mixes canvas sizes: frame {first} is {canvas[1]}x{canvas[0]}, frame {i} is "
                f"{frame.canvas_hw[1]}x{frame.canvas_hw[0]}. Give one video's track at a time (extract it again "
                "from one video)."
            )
    return canvas


@dataclass(frozen=True)
class Retarget:
    """The per-video transform from the driving person onto the source person (see module doc)."""

    bone_ratios: tuple[float, ...]  # one per LIMBS bone
    body_ratio: float
    hand_ratios: tuple[float, float]  # left, right
    face_ratio: float
    driver_origin: tuple[float, float]  # first visible driving neck, driver canvas pixels
    source_origin: tuple[float, float]  # source neck, source canvas pixels
    driver_canvas_hw: tuple[int, int]
    source_canvas_hw: tuple[int, int]
    notes: tuple[str, ...] = field(default=())

    # ------------------------------------------------------------------------------------------------ apply
    def _root_map(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(self.source_origin) + self.body_ratio * (points - np.asarray(self.driver_origin))

    def _group(self, points: np.ndarray, visible: np.ndarray, anchor_drv, anchor_out, scale: float) -> np.ndarray:
        """A rigid group (hand, face) scaled about its anchor: driver pixels -> source pixels, hidden left alone."""
        out = points.copy()
        if anchor_drv is None:  # the driver hides the joint it hangs from: carry the group by the root map
            anchor_drv = points[visible][0]
            anchor_out = self._root_map(anchor_drv)
        out[visible] = anchor_out + scale * (points[visible] - anchor_drv)
        return out

    def apply(self, frame: PoseFrame | None) -> PoseFrame:
        """One driving frame -> the retargeted frame on the source canvas (nobody stays nobody)."""
        src_h, src_w = self.source_canvas_hw
        if frame is None or frame.is_empty:
            return PoseFrame.empty(self.source_canvas_hw)
        if frame.canvas_hw != tuple(self.driver_canvas_hw):
            raise TalkingPoseError(
                f"A driving frame has a {frame.canvas_hw[1]}x{frame.canvas_hw[0]} canvas, but the retarget was "
                f"measured on {self.driver_canvas_hw[1]}x{self.driver_canvas_hw[0]}. Give one video's track at a time."
            )
        drv = _pixels(frame, frame.body)
        visible = frame.body_visible
        out = self._root_map(drv)  # hidden joints too: they are not drawn, but stay finite and near the body
        for child, path in _ANCESTRY.items():
            if not visible[child]:
                continue
            # Hang the joint from its nearest visible ancestor; a hidden elbow leaves the wrist on the shoulder,
            # scaled by the mean ratio of the bones in between, instead of jumping to the root map.
            hops = 0
            while hops < len(path) and not visible[path[hops][0]]:
                hops += 1
            if hops == len(path):
                continue  # nothing above it is visible: the root map places it
            ancestor = path[hops][0]
            ratio = float(np.mean([self.bone_ratios[k] for _, k in path[:hops + 1]]))
            out[child] = out[ancestor] + ratio * (drv[child] - drv[ancestor])

        hands = frame.hands.copy()
        for i in range(2):
            seen = frame.hands_visible[i]
            if not seen.any():
                continue
            wrist = HAND_WRIST[i]
            anchor = (drv[wrist], out[wrist]) if visible[wrist] else (None, None)
            moved = self._group(_pixels(frame, frame.hands[i]), seen, *anchor, self.hand_ratios[i])
            hands[i][seen] = moved[seen] / (src_w, src_h)
        face = frame.face.copy()
        seen = frame.face_visible
        if seen.any():
            anchor = (drv[NOSE], out[NOSE]) if visible[NOSE] else (None, None)
            moved = self._group(_pixels(frame, frame.face), seen, *anchor, self.face_ratio)
            face[seen] = moved[seen] / (src_w, src_h)
        return replace(frame, canvas_hw=tuple(self.source_canvas_hw), body=out / (src_w, src_h), hands=hands,
                       face=face, body_score=frame.body_score.copy(), hand_score=frame.hand_score.copy(),
                       face_score=frame.face_score.copy())

    # ------------------------------------------------------------------------------------------------ state
    def to_dict(self) -> dict:
        """Plain JSON types: carried across meta-batch chunks and saved with a render's state."""
        return {
            "bone_ratios": list(self.bone_ratios), "body_ratio": self.body_ratio,
            "hand_ratios": list(self.hand_ratios), "face_ratio": self.face_ratio,
            "driver_origin": list(self.driver_origin), "source_origin": list(self.source_origin),
            "driver_canvas_hw": list(self.driver_canvas_hw), "source_canvas_hw": list(self.source_canvas_hw),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Retarget":
        try:
            made = cls(
                bone_ratios=tuple(float(v) for v in data["bone_ratios"]), body_ratio=float(data["body_ratio"]),
                hand_ratios=tuple(float(v) for v in data["hand_ratios"]), face_ratio=float(data["face_ratio"]),
                driver_origin=tuple(float(v) for v in data["driver_origin"]),
                source_origin=tuple(float(v) for v in data["source_origin"]),
                driver_canvas_hw=tuple(int(v) for v in data["driver_canvas_hw"]),
                source_canvas_hw=tuple(int(v) for v in data["source_canvas_hw"]),
                notes=tuple(str(v) for v in data.get("notes", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TalkingPoseError(f"The saved retarget transform is damaged ({type(exc).__name__}); "
                                   "start the render again from its first frame.") from None
        numbers = np.array(made.bone_ratios + made.hand_ratios + (made.body_ratio, made.face_ratio)
                           + made.driver_origin + made.source_origin)
        if len(made.bone_ratios) != len(LIMBS) or len(made.hand_ratios) != 2 or not np.isfinite(numbers).all():
            raise TalkingPoseError("The saved retarget transform is damaged; start the render again from its "
                                   "first frame.")
        return made


def estimate_retarget(source: PoseFrame, driving: Sequence[PoseFrame | None]) -> Retarget:
    """Measure the per-video transform from the source's pose and the driving frames (all of them, or the leading
    frames a chunked render has seen; see `retarget_track`)."""
    if source is None or source.is_empty or not source.body_visible.any():
        raise TalkingPoseError("The source shows no person (no body point was found), so there is nothing to "
                               "retarget onto. Use a photo of the person with head and shoulders in view, or turn "
                               "retargeting off.")
    if not source.body_visible[NECK]:
        raise TalkingPoseError("The source's neck is not visible, so the driving skeleton cannot be attached to it. "
                               "Use a photo showing head and shoulders, or the similarity alignment instead.")
    canvas = check_one_canvas(driving)
    frames = [f for f in driving if f is not None and not f.is_empty]
    if not frames:
        raise TalkingPoseError("The driving track shows nobody in any frame, so there is no motion to retarget. "
                               "Check that the right video or keypoint file was given.")
    first_neck = next((f for f in frames if f.body_visible[NECK]), None)
    if first_neck is None:
        raise TalkingPoseError("The driving person's neck is never visible, so the skeleton has no root to follow. "
                               "Use the similarity alignment for this video.")
    notes: list[str] = []
    src_px = _pixels(source, source.body)
    src_bones = _segment_lengths(src_px, source.body_visible, LIMBS)
    drv_bones = _driver_lengths([_segment_lengths(_pixels(f, f.body), f.body_visible, LIMBS) for f in frames])
    ratios = _ratio(src_bones, drv_bones)

    trunk = [LIMBS.index(b) for b in TRUNK_BONES]
    body_ratio = _geometric_mean(ratios[trunk])
    if body_ratio is None:
        body_ratio = _geometric_mean(ratios)
        if body_ratio is None:
            raise TalkingPoseError("The source and the driving person share no visible bone (the source shows "
                                   "only its neck, or the driver never shows a bone the source shows), so their "
                                   "sizes cannot be compared. Use a photo showing head and shoulders.")
        notes.append("neither shoulders, head nor hips are visible in both: body size from the limbs")
    clipped = float(np.clip(body_ratio, *BODY_RATIO_LIMITS))
    if clipped != body_ratio:
        notes.append(f"body size ratio {body_ratio:.3f} clipped to {clipped:.3f}")
        body_ratio = clipped

    bone_ratios = []
    for k, bone in enumerate(LIMBS):
        name, r = _BONE_NAMES[bone], ratios[k]
        if not np.isfinite(r):
            if np.isfinite(drv_bones[k]) and not np.isfinite(src_bones[k]):
                notes.append(f"the source hides the {name}: it takes the driver's length × {body_ratio:.3f}")
            r = body_ratio
        elif not body_ratio / BONE_RATIO_SPREAD <= r <= body_ratio * BONE_RATIO_SPREAD:
            kept = float(np.clip(r, body_ratio / BONE_RATIO_SPREAD, body_ratio * BONE_RATIO_SPREAD))
            notes.append(f"the {name} ratio {r:.3f} is implausible next to the body's {body_ratio:.3f}: "
                         f"limited to {kept:.3f}")
            r = kept
        bone_ratios.append(float(r))

    hand_ratios = []
    src_hands = [_segment_lengths(_pixels(source, source.hands[i]), source.hands_visible[i], HAND_SIZE_SEGMENTS)
                 for i in range(2)]
    for i in range(2):
        driver = _driver_lengths([_segment_lengths(_pixels(f, f.hands[i]), f.hands_visible[i], HAND_SIZE_SEGMENTS)
                                  for f in frames])
        ratio = _geometric_mean(_ratio(src_hands[i], driver))
        if ratio is None:
            ratio = _geometric_mean(_ratio(src_hands[1 - i], driver))  # hands are the same size
            if ratio is not None:
                notes.append(f"the source hides its {_HAND_NAMES[i]}: sized like its {_HAND_NAMES[1 - i]}")
        if ratio is None:
            ratio = bone_ratios[LIMBS.index(HAND_FOREARM[i])]
            if np.isfinite(driver).any():
                notes.append(f"the source shows no hand: the {_HAND_NAMES[i]} is scaled by the forearm ratio "
                             f"{ratio:.3f}")
        hand_ratios.append(float(np.clip(ratio, body_ratio / BONE_RATIO_SPREAD, body_ratio * BONE_RATIO_SPREAD)))

    src_face = _segment_lengths(_pixels(source, source.face), source.face_visible, FACE_SIZE_SEGMENTS)
    drv_face = _driver_lengths([_segment_lengths(_pixels(f, f.face), f.face_visible, FACE_SIZE_SEGMENTS)
                                for f in frames])
    face_ratio = _geometric_mean(_ratio(src_face, drv_face))
    if face_ratio is None:
        face_ratio = bone_ratios[LIMBS.index((1, 0))]
        if np.isfinite(drv_face).any():
            notes.append(f"the source shows no face: the face is scaled by the neck-to-nose ratio {face_ratio:.3f}")
    face_ratio = float(np.clip(face_ratio, body_ratio / BONE_RATIO_SPREAD, body_ratio * BONE_RATIO_SPREAD))

    transform = Retarget(
        bone_ratios=tuple(bone_ratios), body_ratio=float(body_ratio), hand_ratios=tuple(hand_ratios),
        face_ratio=face_ratio, driver_origin=tuple(_pixels(first_neck, first_neck.body)[NECK]),
        source_origin=tuple(src_px[NECK]), driver_canvas_hw=tuple(canvas), source_canvas_hw=tuple(source.canvas_hw),
        notes=tuple(notes),
    )
    for note in notes:
        log.warning("TalkingPose retarget: %s.", note)
    return transform


def retarget_track(source: PoseFrame, driving: Sequence[PoseFrame | None], *, calibration_frames: int = 0,
                   transform: Retarget | None = None) -> tuple[list[PoseFrame], Retarget]:
    """Retarget a whole driving track onto `source`.

    The transform is measured on the first `calibration_frames` frames (0: all of them) unless a `transform`
    carried from earlier frames of the same video is given; a render split into chunks passes the first chunk's
    transform on, so the chunks together equal one run with `calibration_frames` = the first chunk's length.
    """
    if not driving:
        raise TalkingPoseError("The driving track is empty: give at least one frame.")
    if transform is None:
        window = driving[:calibration_frames] if calibration_frames and calibration_frames > 0 else driving
        transform = estimate_retarget(source, window)
    return [transform.apply(f) for f in driving], transform
