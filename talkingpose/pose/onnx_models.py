"""The DWPose ONNX models: finding the two files (`yolox_l.onnx`, `dw-ll_ucoco_384.onnx`) or downloading them on
request, and loading them as onnxruntime sessions on the best execution provider, cached and checked.

onnxruntime is imported only when a session is created.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import TalkingPoseError
from ..runtime import PACK_ROOT

log = logging.getLogger("TalkingPose")

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


def check_signatures(det_session, pose_session, det_path: Path, pose_path: Path) -> None:
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
        custom_nodes_dirs = [PACK_ROOT.parent] if PACK_ROOT.parent.name == "custom_nodes" else []
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
