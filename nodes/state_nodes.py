"""Save / Load TalkingPose State: resume a long render that was interrupted, crashed or split over queue runs.

A state file is a small safetensors file (z_T, the last latent, the next frame index) with the settings it
belongs to; the sampler refuses a state whose seed, size, beta, steps, cfg, model or source differ, and says which.
"""
from __future__ import annotations

from . import paths

CATEGORY = "TalkingPose"
POSE_STATE_KEY = "pose_state"  # in the state file's metadata: the pose alignment and smoothing filter of the same render
SUFFIX = ".safetensors"


class SaveTalkingPoseState:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("TALKINGPOSE_STATE", "STRING")
    RETURN_NAMES = ("state", "path")
    FUNCTION = "save"
    OUTPUT_NODE = True
    DESCRIPTION = ("Writes the sampler state (a few hundred KB) so an interrupted render can continue later with "
                   "Load TalkingPose State. The file is updated as the same render goes on; a file of another "
                   "render is never replaced unless overwrite is on.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "state": ("TALKINGPOSE_STATE",),
                "filename": ("STRING", {"default": "talkingpose/state", "tooltip": "A name inside ComfyUI's output folder "
                                        "(.safetensors is added); absolute paths and '..' are refused."}),
                "overwrite": ("BOOLEAN", {"default": False, "tooltip": "Replace a state file of a different render "
                                          "(never a file that is not a TalkingPose state)."}),
            },
            "optional": {
                "pose_state": ("TALKINGPOSE_POSE_STATE", {"tooltip": "Pose Extract's (or Retarget/Smooth Pose "
                               "Keypoints') pose_state of the same render: its alignment to the source person and its "
                               "smoothing continue from the file too."}),
            },
        }

    def save(self, state, filename, overwrite, pose_state=None):
        from dataclasses import replace

        from talkingpose.errors import TalkingPoseError
        from talkingpose.sampler import SamplerState
        from talkingpose.state_file import is_state_file

        if pose_state is not None:
            if pose_state.frames != state.next_frame:
                raise TalkingPoseError(
                    f"The pose state has posed {pose_state.frames} frames but the sampler state is at frame "
                    f"{state.next_frame}: they belong to different renders. Connect the pose_state of the Pose "
                    "Extract that feeds this sampler."
                )
            state = replace(state, extra={**state.extra, POSE_STATE_KEY: pose_state.to_dict()})
        path = paths.output_file(filename, SUFFIX, "state file name")
        if path.exists() and not is_state_file(path):
            raise TalkingPoseError(
                f"{path} exists and is not a TalkingPose state, so it is never replaced (even with overwrite on). "
                "Choose another filename."
            )
        if path.exists() and not overwrite:
            try:
                existing = SamplerState.load(path)
                diffs = existing.mismatches(state.settings, state.width, state.height, state.model_fingerprint, state.appearance_fingerprint)
                if existing.noise.shape != state.noise.shape or not (existing.noise == state.noise).all():
                    diffs.append("its noise z_T differs")
            except TalkingPoseError as exc:
                diffs = [str(exc)]
            if diffs:
                raise TalkingPoseError(
                    f"{path} holds the state of another render ({'; '.join(diffs)}). Choose another filename, "
                    "or switch overwrite on to replace it."
                )
            if existing.next_frame > state.next_frame:
                raise TalkingPoseError(
                    f"{path} is further along (frame {existing.next_frame}) than this state (frame {state.next_frame}); "
                    "not replaced. Switch overwrite on to go back."
                )
        path.parent.mkdir(parents=True, exist_ok=True)
        state.save(path)
        return {"ui": {"text": [f"{path.name}: next frame {state.next_frame}"]}, "result": (state, str(path))}


class LoadTalkingPoseState:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("TALKINGPOSE_STATE", "INT", "TALKINGPOSE_POSE_STATE")
    RETURN_NAMES = ("state", "next_frame", "pose_state")
    FUNCTION = "load"
    DESCRIPTION = ("Reads a saved sampler state. Connect next_frame to Load Video's skip_first_frames so the render "
                   "continues with the frame after the last one made, and pose_state (when it was saved) to Pose "
                   "Extract's pose_state so the poses keep their alignment and smoothing.")

    @classmethod
    def INPUT_TYPES(cls):
        from talkingpose.state_file import is_state_file

        return {"required": {"filename": (paths.list_files(SUFFIX, is_state_file), {
            "tooltip": "A state saved by Save TalkingPose State (ComfyUI's output folder; 'name [input]' for its input "
                       "folder). Press R in ComfyUI to refresh the list after a save.",
        })}}

    @classmethod
    def VALIDATE_INPUTS(cls, filename):
        return paths.validate_input_name(filename, SUFFIX, "state file name")

    @classmethod
    def IS_CHANGED(cls, filename):
        return paths.input_file_version(filename, SUFFIX, "state file name")

    def load(self, filename):
        from talkingpose.sampler import SamplerState

        from talkingpose.pose import PoseTrackState

        state = SamplerState.load(paths.input_file(filename, SUFFIX, "state file name"))
        saved = state.extra.get(POSE_STATE_KEY)
        return (state, state.next_frame, None if saved is None else PoseTrackState.from_dict(saved))


NODE_CLASS_MAPPINGS = {
    "TalkingPoseSaveState": SaveTalkingPoseState,
    "TalkingPoseLoadState": LoadTalkingPoseState,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "TalkingPoseSaveState": "Save TalkingPose State",
    "TalkingPoseLoadState": "Load TalkingPose State",
}
