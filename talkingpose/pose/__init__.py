"""DWPose pose extraction and drawing as in the official TalkingPose pipeline (numpy, OpenCV, onnxruntime only).

Typical use::

    from .pose import PoseExtractor, draw_pose, to_pose_keypoints
    extractor = PoseExtractor.from_folders([models_dir / "dwpose"], device_index=0)
    for pose in extractor.iter_extract(rgb_frames):      # one PoseFrame per frame, as soon as it is ready
        render = draw_pose(pose)                          # RGB uint8 at the detection canvas size

onnxruntime is imported only when a session is created, so importing this package is cheap and works without it.
"""
from .align import Alignment, align_track, estimate_alignment
from .draw import draw_body, draw_faces, draw_hands, draw_pose, render_pose, resize_render
from .extractor import (
    DETECT_RESOLUTION,
    PoseExtractionError,
    PoseExtractor,
    canvas_size,
    extract_frames,
    fill_failed_frames,
    prepare_frame,
    to_rgb_uint8,
)
from .keypoints import (
    PoseFrame,
    from_pose_keypoint,
    from_pose_keypoints,
    load_pose_keypoints,
    save_pose_keypoints,
    to_pose_keypoint,
    to_pose_keypoints,
    validate_frame_dict,
)
from .onnx_models import (
    DETECTOR_FILE,
    HF_REPO,
    POSE_FILE,
    DWPoseWeights,
    candidate_folders,
    choose_providers,
    clear_sessions,
    download_dwpose_weights,
    download_hint,
    find_dwpose_weights,
    load_session,
)
from .retarget import Retarget, estimate_retarget, retarget_track
from .smoothing import DEFAULT_STRENGTH, PoseSmoother, SmootherState, smooth_track
from .track import MODES, PoseTrackState, process_track

__all__ = [
    "Alignment",
    "DEFAULT_STRENGTH",
    "DETECTOR_FILE",
    "DETECT_RESOLUTION",
    "DWPoseWeights",
    "HF_REPO",
    "MODES",
    "POSE_FILE",
    "PoseExtractionError",
    "PoseExtractor",
    "PoseFrame",
    "PoseSmoother",
    "PoseTrackState",
    "Retarget",
    "SmootherState",
    "align_track",
    "candidate_folders",
    "canvas_size",
    "choose_providers",
    "clear_sessions",
    "download_dwpose_weights",
    "download_hint",
    "draw_body",
    "draw_faces",
    "draw_hands",
    "draw_pose",
    "estimate_alignment",
    "estimate_retarget",
    "extract_frames",
    "fill_failed_frames",
    "find_dwpose_weights",
    "from_pose_keypoint",
    "from_pose_keypoints",
    "load_pose_keypoints",
    "load_session",
    "prepare_frame",
    "process_track",
    "render_pose",
    "resize_render",
    "retarget_track",
    "save_pose_keypoints",
    "smooth_track",
    "to_pose_keypoint",
    "to_pose_keypoints",
    "to_rgb_uint8",
    "validate_frame_dict",
]
