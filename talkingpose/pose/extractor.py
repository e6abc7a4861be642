"""The DWPose pipeline: frame preparation, onnxruntime sessions, weight discovery, per-frame extraction.

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

onnxruntime is imported only when a session is created.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from ..errors import TalkingPoseError
from . import detector as _det
from . import estimator as _est
from .keypoints import BODY_POINTS, MAX_CANVAS_SIDE, PoseFrame

log = logging.getLogger("TalkingPose")

DETECT_RESOLUTION = 512
DETECTOR_FILE = "yolox_l.onnx"
POSE_FILE = "dw-ll_ucoco_384.onnx"
HF_REPO = "yzd-v/DWPose"

# Execution providers in order of preference; CPU is always last.
PROVIDER_PRIORITY = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "CPUExecutionProvider",
)
_DEVICE_ID_PROVIDERS = {"CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider"}

_PACK_ROOT = Path(__file__).resolve().parents[2]


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


# ------------------------------------------------------------------------------------------------ sessions

_sessions: dict = {}
_sessions_lock = threading.Lock()
_warned: set = set()


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise TalkingPoseError(
            "onnxruntime is not installed, so DWPose cannot run. Install exactly one variant into ComfyUI's Python: "
            "'python -m pip install onnxruntime-gpu' for NVIDIA GPUs, 'onnxruntime-directml' on Windows with "
            "AMD/Intel GPUs, otherwise 'onnxruntime' (or run this pack's install.py)."
        ) from exc
    return onnxruntime


def choose_providers(device_index: int = 0, available: Sequence[str] | None = None) -> list:
    """onnxruntime providers to request, best first: CUDA, ROCm, DirectML, CoreML, then CPU.

    GPU providers get `device_id=device_index`. Only the best accelerator is requested (plus CPU) so that a
    failure to start it is noticed instead of silently landing on another one.
    """
    if available is None:
        available = _ort().get_available_providers()
    available = set(available)
    chosen: list = []
    for name in PROVIDER_PRIORITY[:-1]:
        if name in available:
            chosen.append((name, {"device_id": int(device_index)}) if name in _DEVICE_ID_PROVIDERS else name)
            break
    chosen.append("CPUExecutionProvider")
    return chosen


def _provider_key(providers) -> tuple:
    key = []
    for p in providers:
        if isinstance(p, (tuple, list)):
            key.append((p[0], tuple(sorted((str(k), str(v)) for k, v in dict(p[1]).items()))))
        else:
            key.append((p, ()))
    return tuple(key)


def _provider_names(providers) -> list[str]:
    return [p[0] if isinstance(p, (tuple, list)) else p for p in providers]


_FALLBACK_HINTS = {
    "CUDAExecutionProvider": (
        "onnxruntime-gpu is installed but could not load the CUDA/cuDNN libraries it was built for, so DWPose "
        "runs on the CPU (much slower). Install the onnxruntime-gpu build that matches your CUDA major version "
        "(onnxruntime-gpu 1.19+ wants CUDA 12 and cuDNN 9; see https://onnxruntime.ai/docs/execution-providers/"
        "CUDA-ExecutionProvider.html#requirements), e.g. 'python -m pip install -U onnxruntime-gpu', or the "
        "matching 'nvidia-cudnn-cu12'/'nvidia-cublas-cu12' wheels; keep only one onnxruntime variant installed."
    ),
    "ROCMExecutionProvider": (
        "onnxruntime-rocm could not start its ROCm provider, so DWPose runs on the CPU. Install the onnxruntime-rocm "
        "wheel that matches your ROCm version (https://onnxruntime.ai/docs/execution-providers/ROCm-ExecutionProvider.html)."
    ),
    "DmlExecutionProvider": (
        "onnxruntime-directml could not start DirectML, so DWPose runs on the CPU. Update your GPU driver and "
        "'python -m pip install -U onnxruntime-directml' (with no other onnxruntime variant installed)."
    ),
    "CoreMLExecutionProvider": "onnxruntime could not start CoreML, so DWPose runs on the CPU.",
}


def _warn_if_fell_back(session, requested, path: Path) -> None:
    wanted = [p for p in _provider_names(requested) if p != "CPUExecutionProvider"]
    active = set(session.get_providers())
    for name in wanted:
        if name not in active and name not in _warned:
            _warned.add(name)
            log.warning("TalkingPose: %s (model %s)", _FALLBACK_HINTS.get(name, f"{name} did not start."), path.name)


def download_hint(folder: Path | str | None = None) -> str:
    where = f"'{folder}'" if folder else "ComfyUI's 'models/dwpose/' folder"
    return (
        f"Get '{DETECTOR_FILE}' and '{POSE_FILE}' into {where}: in the pack's folder run `python cli.py download "
        f"--what dwpose` (into the models folder's dwpose/; add --models DIR for another models folder), or download "
        f"them by hand from the Hugging Face repository '{HF_REPO}' (https://huggingface.co/{HF_REPO}/tree/main)."
    )


def load_session(path, providers=None, *, device_index: int = 0):
    """Cached onnxruntime session for `path` (keyed by the file, its size/mtime and the providers)."""
    path = Path(path)
    if not path.is_file():
        raise TalkingPoseError(f"DWPose model file not found: {path}. {download_hint(path.parent)}")
    if providers is None:
        providers = choose_providers(device_index)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, _provider_key(providers))
    with _sessions_lock:
        session = _sessions.get(key)
        if session is not None:
            return session
        ort = _ort()
        options = ort.SessionOptions()
        if "DmlExecutionProvider" in _provider_names(providers):
            options.enable_mem_pattern = False
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own exception classes for bad files
            raise TalkingPoseError(
                f"Could not load the DWPose model {path} ({stat.st_size:,} bytes): {exc}. The file is probably "
                f"corrupt or an unfinished download; delete it and download it again. {download_hint(path.parent)}"
            ) from None
        _warn_if_fell_back(session, providers, path)
        _sessions[key] = session
        return session


def clear_sessions() -> None:
    with _sessions_lock:
        _sessions.clear()


def _check_signatures(det_session, pose_session, det_path: Path, pose_path: Path) -> None:
    det_in, det_out = det_session.get_inputs(), det_session.get_outputs()
    if len(det_in) != 1 or len(det_in[0].shape) != 4 or len(det_out) != 1 or len(det_out[0].shape) != 3:
        raise TalkingPoseError(
            f"{det_path} does not look like the YOLOX detector (expected one [1,3,640,640] input and a "
            f"[1,8400,85] output). {download_hint(det_path.parent)}"
        )
    pose_in, pose_out = pose_session.get_inputs(), pose_session.get_outputs()
    if len(pose_in) != 1 or len(pose_in[0].shape) != 4 or len(pose_out) < 2:
        raise TalkingPoseError(
            f"{pose_path} does not look like the DWPose estimator (expected input [N,3,384,288] and outputs "
            f"simcc_x, simcc_y). {download_hint(pose_path.parent)}"
        )


# ------------------------------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class DWPoseWeights:
    detector: Path
    pose: Path


def _controlnet_aux_ckpt_roots(custom_nodes_dirs: Iterable[Path] | None) -> list[Path]:
    """Where comfyui_controlnet_aux keeps its downloads: `$AUX_ANNOTATOR_CKPTS_PATH`, the `annotator_ckpts_path`
    of its config.yaml, or its own `ckpts/` folder."""
    roots: list[Path] = []
    env = os.environ.get("AUX_ANNOTATOR_CKPTS_PATH")
    if env:
        roots.append(Path(env).expanduser())
    if custom_nodes_dirs is None:
        custom_nodes_dirs = [_PACK_ROOT.parent] if _PACK_ROOT.parent.name == "custom_nodes" else []
    for base in custom_nodes_dirs:
        base = Path(base)
        try:
            packs = sorted(p for p in base.iterdir() if p.is_dir() and "controlnet_aux" in p.name.lower())
        except OSError:
            continue
        for pack in packs:
            config = pack / "config.yaml"
            if config.is_file():
                try:
                    match = re.search(r"^\s*annotator_ckpts_path\s*:\s*['\"]?([^'\"#\n]+?)['\"]?\s*(#.*)?$",
                                      config.read_text(encoding="utf-8", errors="replace"), re.MULTILINE)
                except OSError:
                    match = None
                if match:
                    custom = Path(match.group(1).strip()).expanduser()
                    roots.append(custom if custom.is_absolute() else pack / custom)
            roots.append(pack / "ckpts")
    return roots


def _hf_cache_snapshots(repo_id: str) -> list[Path]:
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(Path.home(), ".cache", "huggingface"), "hub"
    )
    snapshots = Path(cache) / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    try:
        return sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []


def candidate_folders(folders: Iterable, *, custom_nodes_dirs: Iterable[Path] | None = None,
                      include_shared_caches: bool = True) -> tuple[list[Path], list[Path]]:
    """Folders searched for the detector and for the pose model, in priority order.

    First the given folders (and their `DWPose/` and `yzd-v/DWPose/` subfolders), then comfyui_controlnet_aux's
    download folders (`ckpts/yzd-v/DWPose/`, with `hr16/yolox-onnx/` and `hr16/UnJIT-DWPose/` as the hr16
    mirrors it uses), then the Hugging Face cache of `yzd-v/DWPose`.
    """
    base: list[Path] = []
    for folder in folders:
        folder = Path(folder).expanduser()
        base += [folder, folder / "DWPose", folder / "yzd-v" / "DWPose"]
    det, pose = list(base), list(base)
    if include_shared_caches:
        for root in _controlnet_aux_ckpt_roots(custom_nodes_dirs):
            det += [root / "yzd-v" / "DWPose", root / "hr16" / "yolox-onnx"]
            pose += [root / "yzd-v" / "DWPose", root / "hr16" / "UnJIT-DWPose"]
        snaps = _hf_cache_snapshots(HF_REPO)
        det += snaps
        pose += snaps
    return det, pose


def find_dwpose_weights(folders: Iterable, *, custom_nodes_dirs: Iterable[Path] | None = None,
                        include_shared_caches: bool = True) -> DWPoseWeights:
    """Locate `yolox_l.onnx` and `dw-ll_ucoco_384.onnx`; TalkingPoseError with download instructions if absent."""
    folders = [Path(f) for f in folders]
    det_dirs, pose_dirs = candidate_folders(
        folders, custom_nodes_dirs=custom_nodes_dirs, include_shared_caches=include_shared_caches
    )
    det = next((d / DETECTOR_FILE for d in det_dirs if (d / DETECTOR_FILE).is_file()), None)
    pose = next((d / POSE_FILE for d in pose_dirs if (d / POSE_FILE).is_file()), None)
    if det is None or pose is None:
        missing = " and ".join(n for n, p in ((DETECTOR_FILE, det), (POSE_FILE, pose)) if p is None)
        searched = ", ".join(str(f) for f in folders) or "(no folders given)"
        raise TalkingPoseError(
            f"DWPose weights not found: {missing} is missing (searched {searched}, comfyui_controlnet_aux's ckpts "
            f"folder and the Hugging Face cache). {download_hint(folders[0] if folders else None)}"
        )
    return DWPoseWeights(detector=det, pose=pose)


def download_dwpose_weights(target_dir, *, repo_id: str = HF_REPO) -> DWPoseWeights:
    """Download both ONNX files from Hugging Face into `target_dir` (explicit opt-in; never called implicitly)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise TalkingPoseError("huggingface_hub is needed to download DWPose: pip install huggingface_hub") from exc
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in (DETECTOR_FILE, POSE_FILE):
        if (target / name).is_file():
            paths[name] = target / name
            continue
        try:
            paths[name] = Path(hf_hub_download(repo_id=repo_id, filename=name, local_dir=str(target)))
        except Exception as exc:
            raise TalkingPoseError(f"Downloading {name} from {repo_id} failed: {exc}. {download_hint(target)}") from exc
    return DWPoseWeights(detector=paths[DETECTOR_FILE], pose=paths[POSE_FILE])


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
        _check_signatures(self.det_session, self.pose_session, self.detector_path, self.pose_path)
        self.detect_resolution = int(detect_resolution)
        self.max_pose_batch = max(1, int(max_pose_batch))
        self.pose_input_wh = _est.session_input_wh(self.pose_session)
        self.pose_batch_is_dynamic = _est.session_batch_size(self.pose_session) is None

    @classmethod
    def from_folders(cls, folders: Iterable, **kwargs) -> "PoseExtractor":
        weights = find_dwpose_weights(folders)
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
