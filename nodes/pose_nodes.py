"""Pose nodes: DWPose extraction (Pose Extract), drawing keypoints, and saving/loading keypoint tracks.

Importing this module stays cheap and needs neither torch nor onnxruntime: the engine (`talkingpose.pose`) and torch
are imported inside the functions that run the nodes.

Renders are drawn at the detection canvas (short side 512, sides multiples of 64 — what the official extraction
drew and TalkingPose was trained on), then stretched to the chosen output size with area averaging when smaller
and Lanczos when larger; for 512×512 input at 512×512 output nothing is resized, so the images equal the
official renders. POSE_KEYPOINT is comfyui_controlnet_aux's OpenPose-style list (pixels of the detection canvas),
so the two packs' nodes can be chained either way.
"""
from __future__ import annotations

import logging

from . import paths
from .backend import host
from .retarget_nodes import ALIGNMENT_CHOICES, STRENGTH_TOOLTIP, dwpose_extractor, fit_and_smooth, meta_inputs, source_pose

log = logging.getLogger("TalkingPose")

CATEGORY = "TalkingPose"
ON_ERROR_CHOICES = ("stop", "repeat previous pose", "empty pose")
_SIZE = {"default": 512, "min": 0, "max": 8192, "step": 8}


def _part_switches():
    return {
        "body": ("BOOLEAN", {"default": True, "tooltip": "Draw (and output) the body skeleton."}),
        "hands": ("BOOLEAN", {"default": True, "tooltip": "Draw (and output) both hands."}),
        "face": ("BOOLEAN", {"default": True, "tooltip": "Draw (and output) the 68 face landmarks."}),
    }


def _output_size(width: int, height: int, canvas_hw) -> tuple[int, int]:
    """(width, height) of the output images; 0 keeps that side of the detection canvas."""
    return (int(width) or int(canvas_hw[1])), (int(height) or int(canvas_hw[0]))


def _render_batch(poses, canvas_hw, width, height, switches):
    """Draw every pose (None: black) and stack the results as a ComfyUI IMAGE [B,H,W,3] in 0..1."""
    import torch

    from talkingpose.pose import render_pose

    out = torch.empty((len(poses), height, width, 3), dtype=torch.float32)
    for i, pose in enumerate(poses):
        out[i] = torch.from_numpy(render_pose(pose, width, height, canvas_hw, **switches)).float().div_(255.0)
    return out


class TalkingPoseExtract:
    """DWPose on every frame of an IMAGE batch, drawn the way the TalkingPose networks expect."""

    CATEGORY = CATEGORY
    FUNCTION = "extract"
    RETURN_TYPES = ("IMAGE", "POSE_KEYPOINT", "TALKINGPOSE_POSE_STATE")
    RETURN_NAMES = ("pose_images", "pose_keypoint", "pose_state")
    DESCRIPTION = (
        "Extract DWPose (body, hands, face) from each frame and draw it exactly like the official TalkingPose "
        "pipeline. Needs yolox_l.onnx and dw-ll_ucoco_384.onnx (Hugging Face yzd-v/DWPose) in models/dwpose/. "
        "Connect a source image to fit the driving person to the person in it: alignment 'retarget' gives every bone the "
        "source's length, 'similarity' moves and scales the whole skeleton (one transform for the whole video). "
        "A frame where nobody is found still gets the pose estimated on the whole frame (usually little or nothing "
        "visible is drawn); with several people, the most confident one is drawn."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Driving video frames (or one image)."}),
                "width": ("INT", dict(_SIZE, tooltip="Output width; 0 keeps the detection canvas width.")),
                "height": ("INT", dict(_SIZE, tooltip="Output height; 0 keeps the detection canvas height.")),
                **_part_switches(),
                "on_error": (list(ON_ERROR_CHOICES), {
                    "default": "stop",
                    "tooltip": "If a frame fails: stop with an error naming the frame, or carry on with the "
                               "previous frame's pose / an empty pose for it (a warning names the frame).",
                }),
            },
            "optional": {
                "source_image": ("IMAGE", {
                    "tooltip": "Optional appearance image: the driving poses are fitted to its person (see alignment).",
                }),
                "alignment": (list(ALIGNMENT_CHOICES), {
                    "default": "similarity",
                    "tooltip": "With a source image: 'retarget' keeps each bone's direction and takes its length from "
                               "the source person (hands and face scaled to theirs); 'similarity' moves and scales the "
                               "whole skeleton once per video. Without a source image the poses stay as they are.",
                }),
                "smoothing": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                        "tooltip": STRENGTH_TOOLTIP}),
                **meta_inputs(),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT"},
        }

    def extract(self, images, width, height, body=True, hands=True, face=True, on_error="stop",
                source_image=None, alignment="similarity", smoothing=0.0, pose_state=None, meta_batch=None,
                unique_id=None, prompt=None):
        from talkingpose.errors import TalkingPoseError
        from talkingpose.pose import PoseExtractionError, fill_failed_frames, to_pose_keypoints

        if on_error not in ON_ERROR_CHOICES:
            raise TalkingPoseError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, got {on_error!r}.")
        if alignment not in ALIGNMENT_CHOICES:
            raise TalkingPoseError(f"alignment must be one of {', '.join(ALIGNMENT_CHOICES)}, got {alignment!r}.")
        total = int(images.shape[0])
        if total == 0:
            raise TalkingPoseError("Pose Extract got an empty image batch.")
        extractor = dwpose_extractor()
        switches = dict(body=bool(body), hands=bool(hands), face=bool(face))

        failed: list[int] = []

        def remember(index, exc):
            failed.append(index)
            log.warning("TalkingPose: pose extraction failed at frame %d (%s); using %s.", index, exc,
                        "the previous pose" if on_error == "repeat previous pose" else "an empty pose")

        def frames():
            for i in range(total):
                host.throw_if_cancelled()
                yield images[i].detach().cpu().numpy()

        poses = []
        progress = host.Progress(total, desc="Pose Extract", unit="frame")
        try:
            for pose in extractor.iter_extract(frames(), on_error=None if on_error == "stop" else remember):
                poses.append(pose)
                progress.update(1)
        except PoseExtractionError as exc:
            done = len(poses)
            kept = f"frames 0-{done - 1} had been extracted" if done else "no frame had been extracted yet"
            cause = str(exc.cause) or type(exc.cause).__name__
            raise TalkingPoseError(
                f"Pose extraction failed at frame {exc.frame_index} of {total} (counting from 0): {cause} "
                f"({kept}). Set on_error to 'repeat previous pose' or 'empty pose' to carry on past frames that fail."
            ) from exc
        finally:
            progress.close()

        poses, canvas_hw = fill_failed_frames(poses, (int(images.shape[1]), int(images.shape[2])),
                                              repeat_previous=on_error == "repeat previous pose")
        out_w, out_h = _output_size(width, height, canvas_hw)

        source = source_pose(source_image, None) if source_image is not None else None
        mode = alignment if source is not None else "off"
        poses, state = fit_and_smooth(poses, source=source, mode=mode, strength=smoothing, space=(out_w, out_h),
                                      pose_state=pose_state, meta_batch=meta_batch, prompt=prompt, unique_id=unique_id)
        if state.alignment is not None:
            log.info("TalkingPose: pose alignment scale %.3f, shift (%.1f, %.1f) px", state.alignment.scale,
                     state.alignment.tx, state.alignment.ty)
        if state.retarget is not None:
            # Retargeted poses live in the source's canvas: draw there, then stretch to the output size.
            canvas_hw = state.retarget.source_canvas_hw
            out_w, out_h = _output_size(width, height, canvas_hw)
            log.info("TalkingPose: retargeted to the source person, body size ratio %.3f", state.retarget.body_ratio)

        renders = _render_batch(poses, canvas_hw, out_w, out_h, switches)
        keypoints = to_pose_keypoints(poses, canvas_hw, **switches)
        if failed:
            log.warning("TalkingPose: %d frame(s) failed and were replaced: %s", len(failed),
                        ", ".join(map(str, failed[:20])) + (" ..." if len(failed) > 20 else ""))
        return renders, keypoints, state


class TalkingPoseDrawKeypoints:
    """Draw POSE_KEYPOINT frames (from Pose Extract, Load Pose Keypoints or comfyui_controlnet_aux)."""

    CATEGORY = CATEGORY
    FUNCTION = "draw"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("pose_images",)
    DESCRIPTION = (
        "Draw OpenPose-style keypoints in the TalkingPose/DWPose style (first person of each frame). An optional "
        "source pose (its first frame) aligns the track onto that person."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pose_keypoint": ("POSE_KEYPOINT",),
                "width": ("INT", dict(_SIZE, tooltip="Output width; 0 keeps the keypoints' canvas width.")),
                "height": ("INT", dict(_SIZE, tooltip="Output height; 0 keeps the keypoints' canvas height.")),
                **_part_switches(),
            },
            "optional": {"source_pose_keypoint": ("POSE_KEYPOINT",)},
        }

    def draw(self, pose_keypoint, width, height, body=True, hands=True, face=True, source_pose_keypoint=None):
        from talkingpose.errors import TalkingPoseError
        from talkingpose.pose import align_track, from_pose_keypoints

        poses = from_pose_keypoints(pose_keypoint)
        if not poses:
            raise TalkingPoseError("Draw Pose Keypoints got no frames.")
        canvas_hw = poses[0].canvas_hw
        out_w, out_h = _output_size(width, height, canvas_hw)
        if source_pose_keypoint is not None:
            sources = from_pose_keypoints(source_pose_keypoint)
            if not sources:
                raise TalkingPoseError("The source pose has no frames.")
            poses, _ = align_track(sources[0], poses, (out_w, out_h))
        switches = dict(body=bool(body), hands=bool(hands), face=bool(face))
        # Each frame is drawn on its own canvas size, then stretched to the output size.
        import torch

        from talkingpose.pose import draw_pose, resize_render

        out = torch.empty((len(poses), out_h, out_w, 3), dtype=torch.float32)
        for i, pose in enumerate(poses):
            render = resize_render(draw_pose(pose, **switches), out_w, out_h)
            out[i] = torch.from_numpy(render).float().div_(255.0)
        return (out,)


class TalkingPoseSaveKeypoints:
    CATEGORY = CATEGORY
    FUNCTION = "save"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_NODE = True
    DESCRIPTION = ("Save a POSE_KEYPOINT track as JSON (controlnet_aux's format) in ComfyUI's output folder "
                   "as <prefix>_00001.json, <prefix>_00002.json, … (never replacing a file).")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pose_keypoint": ("POSE_KEYPOINT",),
                "filename_prefix": ("STRING", {"default": "talkingpose/pose_keypoints", "tooltip": "A name inside "
                                               "ComfyUI's output folder; absolute paths and '..' are refused."}),
            }
        }

    def save(self, pose_keypoint, filename_prefix="talkingpose/pose_keypoints"):
        from talkingpose.pose import save_pose_keypoints, validate_frame_dict

        frames = [pose_keypoint] if isinstance(pose_keypoint, dict) else pose_keypoint
        for i, frame in enumerate(frames):  # before a numbered file is claimed for it
            validate_frame_dict(frame, f"frame {i}")
        path = paths.numbered_output_file(filename_prefix, ".json", "keypoint file name prefix")
        try:
            save_pose_keypoints(path, pose_keypoint)
        except BaseException:
            path.unlink(missing_ok=True)  # the empty file that reserved the number
            raise
        return {"ui": {"text": [str(path)]}, "result": (str(path),)}


class TalkingPoseLoadKeypoints:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("POSE_KEYPOINT",)
    RETURN_NAMES = ("pose_keypoint",)
    DESCRIPTION = ("Load a POSE_KEYPOINT JSON file from ComfyUI's output folder (where Save Pose Keypoints writes) "
                   "or, as 'name [input]', from its input folder.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": (paths.list_files(".json"), {
            "tooltip": "Keypoint JSON in ComfyUI's output folder ('name [input]': its input folder). Press R in "
                       "ComfyUI to refresh the list after a save.",
        })}}

    @classmethod
    def VALIDATE_INPUTS(cls, path):
        return paths.validate_input_name(path, ".json", "keypoint file name")

    @classmethod
    def IS_CHANGED(cls, path):
        return paths.input_file_version(path, ".json", "keypoint file name")

    def load(self, path):
        from talkingpose.pose import load_pose_keypoints

        return (load_pose_keypoints(paths.input_file(path, ".json", "keypoint file name")),)


NODE_CLASS_MAPPINGS = {
    "TalkingPoseExtract": TalkingPoseExtract,
    "TalkingPoseDrawKeypoints": TalkingPoseDrawKeypoints,
    "TalkingPoseSaveKeypoints": TalkingPoseSaveKeypoints,
    "TalkingPoseLoadKeypoints": TalkingPoseLoadKeypoints,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "TalkingPoseExtract": "TalkingPose Pose Extract",
    "TalkingPoseDrawKeypoints": "TalkingPose Draw Pose Keypoints",
    "TalkingPoseSaveKeypoints": "TalkingPose Save Pose Keypoints",
    "TalkingPoseLoadKeypoints": "TalkingPose Load Pose Keypoints",
}
