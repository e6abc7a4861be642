"""Retarget Pose Keypoints and Smooth Pose Keypoints: POSE_KEYPOINT in, POSE_KEYPOINT out, so they compose with
Pose Extract, Draw Pose Keypoints and the POSE_KEYPOINT of other packs (comfyui_controlnet_aux's DWPose, pose
editors). Pose Extract uses the same `fit_and_smooth` for its `alignment` and `smoothing` options.

The per-video alignment and the smoothing filter are a TALKINGPOSE_POSE_STATE: carried from chunk to chunk on a
VideoHelperSuite Meta Batch Manager as the Closed-Loop Sampler carries its loop, and saved with Save TalkingPose
State, so a long render in chunks or over several queue runs equals one run over the whole video (the alignment
is measured on the first chunk).
"""
from __future__ import annotations

from .backend import host
from .meta_batch import ChunkCarry, chunk_number

CATEGORY = "TalkingPose"
POSE_STATE = "TALKINGPOSE_POSE_STATE"
# The `alignment` widget of Retarget Pose Keypoints and Pose Extract: the values of the engine's alignment
# (talkingpose.pose.track.MODES) that need a source person; "off" is leaving the node out / the source unconnected.
ALIGNMENT_CHOICES = ("similarity", "retarget")
STRENGTH_TOOLTIP = (
    "Smoothing of the keypoints (causal, so that chunked renders equal one-shot ones): 0 is off (the input "
    "unchanged); 0.5 removes most jitter of a still speaker and about half of it on fast gestures without lagging "
    "behind them, and keeps the lips moving; higher smooths more but starts to flatten quick motion. The command "
    "line's pose smooth looks ahead and smooths gestures further."
)
POSE_CARRY = ChunkCarry(
    "talkingpose_pose_states",
    missing="Meta batch chunk {chunk} arrived, but the pose alignment and smoothing have no state from chunk {previous} "
            "(ComfyUI was restarted, or the earlier chunks ran without this node). Queue the workflow again from "
            "the start, or connect Load TalkingPose State's pose_state.",
    made="the poses of {frames} frames were made",
)


def fit_and_smooth(poses, *, source, mode: str, strength: float, space, calibration_frames: int = 0,
                   pose_state=None, meta_batch=None, prompt=None, unique_id=None):
    """`talkingpose.pose.process_track` with the state taken from (and left on) the meta-batch manager, or from
    `pose_state` when the render starts or continues from a saved state. Returns (poses, state)."""
    from talkingpose.pose import process_track

    chunk = None
    if meta_batch is not None:
        chunk = chunk_number(meta_batch, prompt, unique_id)
        pose_state = POSE_CARRY.carried(meta_batch, unique_id, chunk, pose_state)
    # Any node run may be one chunk of a longer render (a meta batch, a render continued from a saved state), and
    # a chunk has no frames after it to look at: the nodes always use the causal filter, so that a chunked render
    # equals the one-shot render of the same workflow. The look-ahead smoother is the command line's.
    poses, state = process_track(poses, source=source, mode=mode, strength=strength, space=space,
                                 calibration_frames=calibration_frames, state=pose_state, streaming=True)
    if meta_batch is not None:
        POSE_CARRY.carry(meta_batch, unique_id, chunk, state, len(poses))
    return poses, state


def meta_inputs():
    return {
        "pose_state": (POSE_STATE, {"tooltip": "Continue a render: the state from Load TalkingPose State."}),
        "meta_batch": ("VHS_BatchManager", {"tooltip": "VideoHelperSuite's Meta Batch Manager: the alignment "
                                            "(measured on the first chunk) and the smoothing continue across its "
                                            "chunks."}),
    }


class TalkingPoseRetargetKeypoints:
    """The driving poses with the source person's bone lengths (or one similarity transform per video)."""

    CATEGORY = CATEGORY
    FUNCTION = "retarget"
    RETURN_TYPES = ("POSE_KEYPOINT", POSE_STATE)
    RETURN_NAMES = ("pose_keypoint", "pose_state")
    DESCRIPTION = (
        "Retarget a driving POSE_KEYPOINT track onto the person of a source image (or a source POSE_KEYPOINT): every "
        "bone keeps the driver's direction and takes the source's length, hands and face are scaled to the source's, "
        "and the neck starts on the source's neck. The output is in the source's canvas; draw it with Draw Pose "
        "Keypoints. alignment 'similarity' instead moves and scales the whole skeleton once per video."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pose_keypoint": ("POSE_KEYPOINT", {"tooltip": "The driving track (Pose Extract, Load Pose Keypoints, "
                                                   "comfyui_controlnet_aux's DWPose, a pose editor)."}),
                "alignment": (list(ALIGNMENT_CHOICES), {"default": "retarget", "tooltip": (
                    "retarget: every bone to the source's length; similarity: one scale and shift per video.")}),
                "smoothing": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                        "tooltip": STRENGTH_TOOLTIP}),
                "calibration_frames": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "tooltip": (
                    "How many leading frames measure the driver's proportions; 0: all of them. With a meta batch "
                    "they are measured on the first chunk.")}),
            },
            "optional": {
                "source_image": ("IMAGE", {"tooltip": "The photo to animate; its pose is found with DWPose."}),
                "source_pose_keypoint": ("POSE_KEYPOINT", {"tooltip": "The source pose (one frame), instead of the "
                                                           "image."}),
                **meta_inputs(),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT"},
        }

    def retarget(self, pose_keypoint, alignment="retarget", smoothing=0.0, calibration_frames=0, source_image=None,
                 source_pose_keypoint=None, pose_state=None, meta_batch=None, unique_id=None, prompt=None):
        from talkingpose.errors import TalkingPoseError
        from talkingpose.pose import from_pose_keypoints, to_pose_keypoints

        poses = from_pose_keypoints(pose_keypoint)
        if not poses:
            raise TalkingPoseError("Retarget Pose Keypoints got no frames.")
        source = source_pose(source_image, source_pose_keypoint)
        if alignment not in ALIGNMENT_CHOICES:
            raise TalkingPoseError(f"alignment must be one of {', '.join(ALIGNMENT_CHOICES)}, got {alignment!r}.")
        canvas = next((p.canvas_hw for p in poses), None)
        poses, state = fit_and_smooth(poses, source=source, mode=alignment, strength=smoothing,
                                      space=(canvas[1], canvas[0]), calibration_frames=calibration_frames,
                                      pose_state=pose_state, meta_batch=meta_batch, prompt=prompt, unique_id=unique_id)
        return to_pose_keypoints(poses), state


def dwpose_extractor():
    """DWPose with the weights in ComfyUI's dwpose model folders (or comfyui_controlnet_aux's downloads), on the
    GPU ComfyUI runs on; Pose Extract uses it too."""
    from talkingpose.pose import PoseExtractor

    return PoseExtractor.from_folders(host.model_folders("dwpose"), custom_nodes_dirs=host.custom_nodes_dirs(),
                                      device_index=host.onnx_device_index())


def source_pose(source_image, source_pose_keypoint):
    """The source person's pose from a POSE_KEYPOINT (one frame) or, failing that, DWPose on the image."""
    from talkingpose.errors import TalkingPoseError
    from talkingpose.pose import from_pose_keypoints

    if source_pose_keypoint is not None:
        frames = from_pose_keypoints(source_pose_keypoint)
        if len(frames) != 1:
            raise TalkingPoseError(f"source_pose_keypoint has {len(frames)} frames; the source pose is one frame "
                                   "(the photo's). Pick one with a batch-select node, or connect the image instead.")
        return frames[0]
    if source_image is None:
        raise TalkingPoseError("Connect source_image (the photo to animate) or source_pose_keypoint.")
    if source_image.shape[0] != 1:
        raise TalkingPoseError(f"source_image is a batch of {source_image.shape[0]}; connect the one photo to animate.")
    try:
        return dwpose_extractor()(source_image[0].detach().cpu().numpy())
    except TalkingPoseError as exc:
        raise TalkingPoseError(f"The source image could not be read for its pose: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - onnxruntime errors
        raise TalkingPoseError(f"DWPose failed on the source image: {exc}") from exc


class TalkingPoseSmoothKeypoints:
    """Smoothing of a POSE_KEYPOINT track (the whole track at once, or meta-batch chunks)."""

    CATEGORY = CATEGORY
    FUNCTION = "smooth"
    RETURN_TYPES = ("POSE_KEYPOINT", POSE_STATE)
    RETURN_NAMES = ("pose_keypoint", "pose_state")
    DESCRIPTION = (
        "Take the frame-to-frame jitter out of a keypoint track without lagging behind the motion, from the frames up "
        "to each one only (so meta-batch chunks join exactly): a point at rest is smoothed hard, a moving one by a "
        "zero-lag filter. Hidden joints are never dragged across a gap, and a point that jumps is not dragged either: "
        "both restart where they reappear. Strength 0 returns the input unchanged."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pose_keypoint": ("POSE_KEYPOINT",),
                "strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": STRENGTH_TOOLTIP}),
            },
            "optional": meta_inputs(),
            "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT"},
        }

    def smooth(self, pose_keypoint, strength=0.5, pose_state=None, meta_batch=None, unique_id=None, prompt=None):
        from talkingpose.pose import from_pose_keypoints, to_pose_keypoints

        poses, state = fit_and_smooth(from_pose_keypoints(pose_keypoint), source=None, mode="off", strength=strength,
                                      space=None, pose_state=pose_state, meta_batch=meta_batch, prompt=prompt,
                                      unique_id=unique_id)
        if strength == 0:
            return pose_keypoint, state  # bit-identical: the very same object
        return to_pose_keypoints(poses), state


NODE_CLASS_MAPPINGS = {
    "TalkingPoseRetargetKeypoints": TalkingPoseRetargetKeypoints,
    "TalkingPoseSmoothKeypoints": TalkingPoseSmoothKeypoints,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "TalkingPoseRetargetKeypoints": "TalkingPose Retarget Pose Keypoints",
    "TalkingPoseSmoothKeypoints": "TalkingPose Smooth Pose Keypoints",
}
