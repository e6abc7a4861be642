"""Pose alignment: move and scale the driving person onto the person of the source image.

One similarity transform without rotation (a uniform scale s and a translation t) is computed for the whole
video, so the driving motion is kept and nothing jitters:

- scale: the source's shoulder width over the median shoulder width of the driving frames, and likewise for the
  neck–nose distance (head size); where both are available their geometric mean is used, else the one that is;
- translation: the median driving neck (else nose) is mapped onto the source neck (else nose).

Everything is measured in the pixels of one common `space` (width, height) — normally the output size the renders
are stretched to — because source and driving canvases generally differ in aspect ratio and both end up
stretched to that size. The transform is applied to every body point and to every visible hand and face point.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .keypoints import PoseFrame

log = logging.getLogger("TalkingPose")

NOSE, NECK, R_SHOULDER, L_SHOULDER = 0, 1, 2, 5
SCALE_LIMITS = (0.2, 5.0)


@dataclass(frozen=True)
class Alignment:
    """p' = scale · p + (tx, ty), in pixels of `space` (width, height)."""

    scale: float = 1.0
    tx: float = 0.0
    ty: float = 0.0
    space: tuple[int, int] = (512, 512)

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and self.tx == 0.0 and self.ty == 0.0

    def map_normalised(self, points: np.ndarray) -> np.ndarray:
        """Apply to [K,2] coordinates normalised to a canvas (returns normalised coordinates)."""
        w, h = float(self.space[0]), float(self.space[1])
        px = np.asarray(points, dtype=np.float64) * (w, h)
        px = px * self.scale + (self.tx, self.ty)
        return px / (w, h)

    def apply(self, frame: PoseFrame | None) -> PoseFrame | None:
        if frame is None or self.is_identity:
            return frame
        return frame.transformed(self.map_normalised)


def _geometry(frame: PoseFrame, space: tuple[int, int]) -> dict:
    """Anchor points and sizes (in space pixels) of one frame, only for the joints that are visible."""
    vis = frame.body_visible
    pts = frame.body * (float(space[0]), float(space[1]))
    out = {}
    if vis[NECK]:
        out["neck"] = pts[NECK]
    if vis[NOSE]:
        out["nose"] = pts[NOSE]
    if vis[R_SHOULDER] and vis[L_SHOULDER]:
        out["shoulders"] = float(np.linalg.norm(pts[R_SHOULDER] - pts[L_SHOULDER]))
    if vis[NECK] and vis[NOSE]:
        out["head"] = float(np.linalg.norm(pts[NECK] - pts[NOSE]))
    return out


def estimate_alignment(source: PoseFrame, driving: Sequence[PoseFrame | None], space: tuple[int, int],
                       *, reference: str = "median") -> Alignment:
    """The one transform mapping the driving person onto `source` (see module doc).

    `reference="median"` summarises the driving geometry over all frames (robust to a few bad frames);
    `"first"` uses the first frame where each measure is available. Falls back to the identity (with a log line)
    when the source or the driving video lacks the needed joints.
    """
    space = (int(space[0]), int(space[1]))
    src = _geometry(source, space) if source is not None else {}
    drv = [_geometry(f, space) for f in driving if f is not None]

    def summary(key):
        values = [g[key] for g in drv if key in g]
        if not values:
            return None
        if reference == "first":
            return values[0]
        return np.median(np.asarray(values, dtype=np.float64), axis=0)

    ratios = []
    for key in ("shoulders", "head"):
        d = summary(key)
        if key in src and d is not None and d > 1e-6 and src[key] > 1e-6:
            ratios.append(src[key] / float(d))
    if ratios:
        scale = float(np.exp(np.mean(np.log(ratios))))
        clipped = float(np.clip(scale, *SCALE_LIMITS))
        if clipped != scale:
            log.warning("TalkingPose: pose alignment scale %.3f clipped to %.3f", scale, clipped)
        scale = clipped
    else:
        scale = 1.0
        log.warning("TalkingPose: pose alignment found no shoulders or head in both the source and the driving "
                    "poses; the size is left unchanged.")

    for key in ("neck", "nose"):
        d = summary(key)
        if key in src and d is not None:
            t = np.asarray(src[key]) - scale * np.asarray(d)
            return Alignment(scale, float(t[0]), float(t[1]), space)
    log.warning("TalkingPose: pose alignment found no neck or nose in both the source and the driving poses; "
                "the position is left unchanged.")
    centre = np.array([space[0] / 2.0, space[1] / 2.0])
    t = centre - scale * centre  # scale about the middle of the picture
    return Alignment(scale, float(t[0]), float(t[1]), space)


def align_track(source: PoseFrame, driving: Sequence[PoseFrame | None], space: tuple[int, int],
                **kwargs) -> tuple[list[PoseFrame | None], Alignment]:
    """Estimate the alignment and apply it to every driving frame."""
    alignment = estimate_alignment(source, driving, space, **kwargs)
    return [alignment.apply(f) for f in driving], alignment
