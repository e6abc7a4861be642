"""The DWPose pipeline: frame preparation and per-frame extraction (the ONNX models themselves: `onnx_models`).

`PoseExtractor` turns RGB frames into `PoseFrame`s the way TalkingPose's training data was made:

1. the frame (RGB, RGBA, grayscale HxW or HxWx1; uint8, or float in 0..1) becomes 3-channel BGR uint8 — alpha is
   dropped, gray is repeated;
2. it is resized so the short side is 512 with both sides rounded to multiples of 64 (Lanczos when enlarging,
   area when shrinking) — the *detection canvas*; detection, pose and drawing all happen at that size;
3. YOLOX finds people; when nobody passes the thresholds the whole canvas is used as the person box, so a pose
   is still estimated (with real weights its scores are usually low, so little or nothing is drawn);
4. RTMPose estimates 133 whole-body points per box (all boxes of a batch of frames in one run where the model's
   batch dimension is dynamic), the neck is inserted and the body reordered to OpenPose-18;
5. of several people, the one with the highest mean body score is kept.

`iter_extract` is a generator: every finished frame is handed out before the next one is started, so a failure
at frame 900 never loses frames 0–899; the failing frame is named in the raised `PoseExtractionError`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from ..errors import TalkingPoseError
from . import detector as _det
from . import estimator as _est
from .keypoints import BODY_POINTS, MAX_CANVAS_SIDE, PoseFrame
from .onnx_models import check_signatures, choose_providers, find_dwpose_weights, load_session

log = logging.getLogger("TalkingPose")

DETECT_RESOLUTION = 512


class PoseExtractionError(TalkingPoseError):
    """Extraction failed at one frame; `frame_index` says which (frames before it were already handed out)."""

    def __init__(self, frame_index: int, cause: BaseException):
        self.frame_index = frame_index
        self.cause = cause
        detail = str(cause) or type(cause).__name__
        super().__init__(f"Pose extraction failed at frame {frame_index}: {detail}")


# ------------------------------------------------------------------------------------------- frame handling


def to_rgb_uint8(image) -> np.ndarray:
    """Any supported frame -> HxWx3 RGB uint8 (alpha dropped, gray repeated, floats in 0..1 scaled and rounded)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise TalkingPoseError(
            f"Expected an image of shape HxW, HxWx1, HxWx3 or HxWx4, got {tuple(arr.shape)}."
        )
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise TalkingPoseError(f"The frame is empty ({arr.shape[1]}x{arr.shape[0]} pixels).")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr.astype(np.uint8) * 255)
    if np.issubdtype(arr.dtype, np.floating):
        # ComfyUI images are uint8/255; rounding (not truncating) gets the original bytes back exactly.
        return np.rint(np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    raise TalkingPoseError(f"Unsupported image data type {arr.dtype}; use uint8 or floats in 0..1.")


def canvas_size(height: int, width: int, resolution: int = DETECT_RESOLUTION) -> tuple[int, int, float]:
    """Detection canvas (height, width) for a frame, and the scale factor k that picks the interpolation."""
    h, w = float(height), float(width)
    k = float(resolution) / min(h, w)
    out_h = int(np.round(h * k / 64.0)) * 64
    out_w = int(np.round(w * k / 64.0)) * 64
    return out_h, out_w, k


def prepare_frame(image, resolution: int = DETECT_RESOLUTION) -> np.ndarray:
    """Frame -> BGR uint8 detection canvas (short side `resolution`, sides multiples of 64)."""
    rgb = to_rgb_uint8(image)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    out_h, out_w, k = canvas_size(*bgr.shape[:2], resolution)
    if max(out_h, out_w) > MAX_CANVAS_SIDE or min(out_h, out_w) < 64:
        raise TalkingPoseError(
            f"A {rgb.shape[1]}x{rgb.shape[0]} frame would need a {out_w}x{out_h} detection canvas; frames with an "
            f"aspect ratio beyond {MAX_CANVAS_SIDE // resolution}:1 are not supported. Crop the video first."
        )
    interp = cv2.INTER_LANCZOS4 if k > 1 else cv2.INTER_AREA
    return cv2.resize(bgr, (out_w, out_h), interpolation=interp)


# ----------------------------------------------------------------------------------------------- extractor


def select_person(keypoints: np.ndarray, scores: np.ndarray) -> int:
    """Index of the person with the highest mean body (OpenPose-18) score; the first on ties."""
    return int(np.mean(scores[:, :BODY_POINTS], axis=-1).argmax(axis=0))


@dataclass
class _Pending:
    index: int
    canvas: np.ndarray | None = None
    boxes: np.ndarray | None = None
    blob: np.ndarray | None = None
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    error: BaseException | None = None


class PoseExtractor:
    """DWPose on onnxruntime. Construct with the two ONNX paths (see `find_dwpose_weights`)."""

    def __init__(self, detector_path, pose_path, *, device_index: int = 0, providers=None,
                 detect_resolution: int = DETECT_RESOLUTION, max_pose_batch: int = 16):
        self.detector_path = Path(detector_path)
        self.pose_path = Path(pose_path)
        if providers is None:
            providers = choose_providers(device_index)
        self.providers = providers
        self.det_session = load_session(self.detector_path, providers)
        self.pose_session = load_session(self.pose_path, providers)
        check_signatures(self.det_session, self.pose_session, self.detector_path, self.pose_path)
        self.detect_resolution = int(detect_resolution)
        self.max_pose_batch = max(1, int(max_pose_batch))
        self.pose_input_wh = _est.session_input_wh(self.pose_session)
        self.pose_batch_is_dynamic = _est.session_batch_size(self.pose_session) is None

    @classmethod
    def from_folders(cls, folders: Iterable, *, custom_nodes_dirs: Iterable[Path] | None = None,
                     **kwargs) -> "PoseExtractor":
        """The one way the pack builds DWPose: the weights found in `folders` (then comfyui_controlnet_aux's
        downloads and the Hugging Face cache, see `find_dwpose_weights`); `kwargs` as for the constructor."""
        weights = find_dwpose_weights(folders, custom_nodes_dirs=custom_nodes_dirs)
        return cls(weights.detector, weights.pose, **kwargs)

    @property
    def active_providers(self) -> list[str]:
        return list(self.pose_session.get_providers())

    # --- stages -----------------------------------------------------------------------------------------

    def prepare(self, image) -> np.ndarray:
        return prepare_frame(image, self.detect_resolution)

    def detect(self, canvas_bgr: np.ndarray) -> np.ndarray:
        """People boxes [N,4] on the canvas (N may be 0)."""
        return _det.run_detector(self.det_session, canvas_bgr)

    def _stage_one(self, item: _Pending, image) -> None:
        item.canvas = self.prepare(image)
        boxes = self.detect(item.canvas)
        if boxes.shape[0] == 0:
            h, w = item.canvas.shape[:2]
            boxes = np.array([[0, 0, w, h]])
        item.boxes = boxes
        item.blob, item.center, item.scale = _est.make_crops(item.canvas, boxes, self.pose_input_wh)

    def _finish(self, item: _Pending, simcc_x: np.ndarray, simcc_y: np.ndarray) -> PoseFrame:
        locs, scores = _est.decode_simcc(simcc_x, simcc_y)
        coords = _est.to_image_coords(locs, item.center, item.scale, self.pose_input_wh)
        keypoints, scores = _est.to_openpose_order(coords, scores)
        best = select_person(keypoints, scores)
        return PoseFrame.from_wholebody(keypoints[best], scores[best], item.canvas.shape[:2])

    def __call__(self, image) -> PoseFrame:
        """Extract one frame."""
        item = _Pending(0)
        self._stage_one(item, image)
        sx, sy = _est.run_pose_model(self.pose_session, item.blob, self.max_pose_batch)
        return self._finish(item, sx, sy)

    extract = __call__

    def iter_extract(self, frames: Iterable, *, frames_per_batch: int | None = None, start_index: int = 0,
                     on_error: Callable[[int, BaseException], None] | None = None) -> Iterator[PoseFrame | None]:
        """Yield one PoseFrame per input frame, in order, each as soon as its batch is done.

        Frames are prepared and detected one by one; the crops of up to `frames_per_batch` frames go through the
        pose model together (default: 4 when the model's batch dimension is dynamic, else 1). When a frame fails,
        every frame before it has already been yielded; then `PoseExtractionError` (naming the frame, counted from
        `start_index`) is raised — or, with `on_error`, `on_error(index, exc)` is called, None is yielded for that
        frame and extraction goes on.
        """
        if frames_per_batch is None:
            frames_per_batch = 4 if self.pose_batch_is_dynamic else 1
        frames_per_batch = max(1, int(frames_per_batch))
        pending: list[_Pending] = []
        index = start_index
        for image in frames:
            item = _Pending(index)
            try:
                self._stage_one(item, image)
            except Exception as exc:  # noqa: BLE001 - reported per frame below
                item.error = exc
            pending.append(item)
            index += 1
            if len(pending) >= frames_per_batch or item.error is not None:
                yield from self._flush(pending, on_error)
                pending = []
        if pending:
            yield from self._flush(pending, on_error)

    def _flush(self, pending: list[_Pending], on_error) -> Iterator[PoseFrame | None]:
        ready = [p for p in pending if p.error is None]
        results: dict[int, PoseFrame] = {}
        if len(ready) > 1:
            try:
                sx, sy = _est.run_pose_model(
                    self.pose_session, np.concatenate([p.blob for p in ready]), self.max_pose_batch
                )
                offset = 0
                for p in ready:
                    n = p.blob.shape[0]
                    results[p.index] = self._finish(p, sx[offset:offset + n], sy[offset:offset + n])
                    offset += n
            except Exception:  # noqa: BLE001 - redo frame by frame to find the one at fault
                results = {}
        for p in pending:
            if p.error is None and p.index not in results:
                try:
                    sx, sy = _est.run_pose_model(self.pose_session, p.blob, self.max_pose_batch)
                    results[p.index] = self._finish(p, sx, sy)
                except Exception as exc:  # noqa: BLE001
                    p.error = exc
            if p.error is not None:
                if on_error is None:
                    if isinstance(p.error, PoseExtractionError):
                        raise p.error
                    raise PoseExtractionError(p.index, p.error) from p.error
                on_error(p.index, p.error)
                yield None
                continue
            p.blob = None
            yield results[p.index]


def extract_frames(extractor: PoseExtractor, frames: Iterable, **kwargs) -> list[PoseFrame | None]:
    """Convenience: the whole track as a list (see `PoseExtractor.iter_extract`)."""
    return list(extractor.iter_extract(frames, **kwargs))


def fill_failed_frames(poses: list[PoseFrame | None], frame_hw: tuple[int, int], *,
                       repeat_previous: bool) -> tuple[list[PoseFrame], tuple[int, int]]:
    """A track whose failed frames (None, from `iter_extract` with `on_error`) are filled in, and its detection
    canvas (height, width): with the previous frame's pose when `repeat_previous` (an empty pose before the first
    frame that worked), else with an empty pose. Without any frame that worked, the canvas is that of frames
    `frame_hw` (height, width) in size."""
    canvas_hw = next((p.canvas_hw for p in poses if p is not None), None)
    if canvas_hw is None:
        canvas_hw = canvas_size(*frame_hw)[:2]
    filled = list(poses)
    if repeat_previous:
        previous = None
        for i, pose in enumerate(filled):
            filled[i] = pose if pose is not None else previous
            previous = filled[i]
    return [p if p is not None else PoseFrame.empty(canvas_hw) for p in filled], canvas_hw
