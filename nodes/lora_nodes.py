"""Load TalkingPose LoRA and Train TalkingPose LoRA: personalisation on a person's own footage.

Adapters live in `models/talkingpose_lora/` (registered with folder_paths through the adapter). The engine does
the work (`talkingpose.lora`, `talkingpose.finetune`); these nodes translate ComfyUI's types.
"""
from __future__ import annotations

import logging
import re

from .backend import host
from .paths import check_name

log = logging.getLogger("TalkingPose")

CATEGORY = "TalkingPose"
LORA_KIND = "talkingpose_lora"
NONE_INSTALLED = "none yet (train one with Train TalkingPose LoRA)"


def _installed_loras() -> dict:
    found = {}
    for folder in host.model_folders(LORA_KIND):
        if folder.is_dir():
            for path in sorted(folder.rglob("*.safetensors")):
                found.setdefault(path.relative_to(folder).as_posix(), path)
    return found


class LoadTalkingPoseLoRA:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("TALKINGPOSE_MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    DESCRIPTION = ("Applies a TalkingPose LoRA (a person fine-tuned with Train TalkingPose LoRA or the finetune "
                   "command) to the model. Strength 0 gives the base model exactly, 1 the trained one. Encode the "
                   "appearance with this model output: the reference features depend on the LoRA.")

    @classmethod
    def INPUT_TYPES(cls):
        try:
            names = sorted(_installed_loras())
        except OSError:  # an unreadable folder must not hide the node
            names = []
        return {
            "required": {
                "model": ("TALKINGPOSE_MODEL",),
                "lora": (names or [NONE_INSTALLED], {"tooltip": "An adapter file under models/talkingpose_lora/."}),
                "strength": ("FLOAT", {"default": 1.0, "min": -2.0, "max": 2.0, "step": 0.05,
                                       "tooltip": "0: the base model exactly; 1: as trained."}),
            }
        }

    def load(self, model, lora, strength):
        from talkingpose.errors import TalkingPoseError
        from talkingpose.lora import check_fits, check_strength, read_adapter

        strength = check_strength(strength)
        installed = _installed_loras()
        if lora not in installed:
            folders = ", ".join(str(f) for f in host.model_folders(LORA_KIND))
            raise TalkingPoseError(f"No TalkingPose LoRA '{lora}' in {folders}. Train one with Train TalkingPose LoRA "
                                   "or `finetune`, and put the file there.")
        adapter = read_adapter(installed[lora])
        check_fits(adapter, model.load())  # refuse another base model now, not at sampling time
        return (model.with_lora(adapter, strength),)


class _HostEncoders:
    """The fine-tuning encoders over ComfyUI's VAE and CLIP Vision (standalone: diffusers/transformers)."""

    def __init__(self, vae, clip_vision):
        self.vae = vae
        self.clip_vision = clip_vision

    def posterior(self, pixels):
        return host.vae_encode_posterior(self.vae, pixels)

    def clip(self, crops):
        import torch

        with torch.no_grad():
            return host.clip_crop_embeds(self.clip_vision, crops).float().cpu()

    def clip_zeroed(self):
        import torch

        with torch.no_grad():
            return host.clip_zeroed_embeds(self.clip_vision).float().cpu()[0]


def _to_normal_tensors(module) -> None:
    """ComfyUI runs nodes under torch.inference_mode, so weights loaded there are inference tensors, which
    autograd cannot save for the backward pass; replace them by ordinary copies (same values)."""
    import torch

    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None and param.is_inference():
                sub._parameters[name] = torch.nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)
        for name, buffer in list(sub._buffers.items()):
            if buffer is not None and buffer.is_inference():
                sub._buffers[name] = buffer.clone()


def _pose_inputs(images, poses, pose_keypoint):
    from talkingpose.errors import TalkingPoseError
    from talkingpose.finetune.data import PoseInput

    if (poses is None) == (pose_keypoint is None):
        raise TalkingPoseError("Connect the frames' poses: either pose renders (poses) or POSE_KEYPOINT, one of the two.")
    if poses is not None:
        if poses.shape[0] != images.shape[0]:
            raise TalkingPoseError(f"{images.shape[0]} frames but {poses.shape[0]} pose renders; give one render per frame.")
        return [PoseInput(poses[i]) for i in range(poses.shape[0])]
    from talkingpose.pose import draw_pose, from_pose_keypoint

    frames = pose_keypoint if isinstance(pose_keypoint, list) else [pose_keypoint]
    if len(frames) != images.shape[0]:
        raise TalkingPoseError(f"{images.shape[0]} frames but {len(frames)} keypoint frames; give one per frame.")
    inputs = []
    for i, frame in enumerate(frames):
        pose = from_pose_keypoint(frame, f"keypoint frame {i}")
        inputs.append(PoseInput(None if pose.is_empty else draw_pose(pose), len(frame.get("people") or [])))
    return inputs


class TrainTalkingPoseLoRA:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("lora_path", "loss_curve")
    FUNCTION = "train"
    OUTPUT_NODE = True
    DESCRIPTION = ("Fine-tunes a LoRA on one person's footage (about 30 s; frames + their pose renders or "
                   "keypoints) with the official TalkingPose training recipe, and writes it to "
                   "models/talkingpose_lora/<output_name>.safetensors (an existing file of that name only with "
                   "overwrite on). Cancel keeps a checkpoint; queueing again with resume on continues from it.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("TALKINGPOSE_MODEL",),
                "clip_vision": ("CLIP_VISION", {"tooltip": "The sd-image-variations ViT-L/14 image encoder."}),
                "vae": ("VAE", {"tooltip": "An SD1.x VAE, e.g. sd-vae-ft-mse."}),
                "images": ("IMAGE", {"tooltip": "The person's frames, in order (one person, about 30 seconds)."}),
                "steps": ("INT", {"default": 1000, "min": 1, "max": 100000}),
                "rank": ("INT", {"default": 16, "min": 1, "max": 256}),
                "learning_rate": ("FLOAT", {"default": 1e-4, "min": 0.0, "max": 1.0, "step": 1e-5, "round": False}),
                "output_name": ("STRING", {"default": "person"}),
            },
            "optional": {
                "poses": ("IMAGE", {"tooltip": "DWPose renders of the frames, one per frame (or connect pose_keypoint)."}),
                "pose_keypoint": ("POSE_KEYPOINT", {"tooltip": "The frames' keypoints, one frame each (or connect poses)."}),
                "width": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8}),
                "height": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8}),
                "batch": ("INT", {"default": 4, "min": 1, "max": 64}),
                # Declared False: the frontend (1.35 and 1.49 alike) otherwise gives any INT named seed a "control
                # after generate" set to randomize, and queueing again to resume would then bring another seed,
                # which the trainer refuses; a training run's seed changes only when the user changes it.
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "control_after_generate": False}),
                "resume": ("BOOLEAN", {"default": True, "tooltip": "Continue from the checkpoint a cancelled run "
                                                                  "left (same settings); off starts over."}),
                # Last, so that workflows saved before it keep their widgets' order.
                "overwrite": ("BOOLEAN", {"default": False, "tooltip": "Replace an adapter file of the same name that "
                                                                      "is already there; off refuses to."}),
            },
        }

    def train(self, model, clip_vision, vae, images, steps, rank, learning_rate, output_name, poses=None,
              pose_keypoint=None, width=512, height=512, batch=4, seed=0, resume=True, overwrite=False):
        import torch

        from talkingpose.errors import TalkingPoseError
        from talkingpose.finetune.data import build_clip_cache
        from talkingpose.finetune.job import Controls, check_output, train_to_file
        from talkingpose.finetune.report import loss_curve_image
        from talkingpose.finetune.trainer import FinetuneSettings, LoraTrainer

        if not re.fullmatch(r"[\w .-]+", output_name or "") or output_name.strip(". ") == "":
            raise TalkingPoseError(f"The output name '{output_name}' may use letters, digits, spaces, '-', '_' and '.'.")
        check_name(output_name, "output name", writes=True)  # the length rule of every file node
        if model.loras:
            raise TalkingPoseError("Train on the base model: connect Load TalkingPose Model directly, not a LoRA'd model.")
        settings = FinetuneSettings(steps=steps, rank=rank, lr=learning_rate, batch=batch, width=width,
                                    height=height, seed=seed)
        out = host.model_folders(LORA_KIND)[0] / f"{output_name.strip()}.safetensors"
        controls = Controls(out="output_name", overwrite="switch overwrite on",
                            resume="queue again with resume on")
        check_output(out, resume, overwrite, start_over=True, controls=controls)
        pose_inputs = _pose_inputs(images, poses, pose_keypoint)
        progress = host.Progress(images.shape[0] + steps, desc="Train TalkingPose LoRA", unit="it")
        encoded_frames = [0]

        def encoded(done):
            progress.update(done - encoded_frames[0])
            encoded_frames[0] = done

        def stepped(step, total, loss):
            progress.update(1)
            host.throw_if_cancelled()

        with torch.inference_mode(False), torch.enable_grad():
            networks = model.load()
            _to_normal_tensors(networks)
            try:
                cache = build_clip_cache((images[i] for i in range(images.shape[0])), pose_inputs,
                                         _HostEncoders(vae, clip_vision), width, height, crops=settings.crops,
                                         seed=seed, progress=encoded, check=host.throw_if_cancelled)
                trainer = LoraTrainer(networks, cache, settings, clip_info={"frames": int(images.shape[0])})
                try:
                    result = train_to_file(trainer, out, resume, overwrite, stepped, progress.update, controls)
                finally:
                    trainer.remove_adapter()  # the shared model is as it was, whatever happened
            finally:
                progress.close()
        if cache.skipped_nobody:
            log.warning("Train TalkingPose LoRA: skipped %d of %d frames where nobody was detected.",
                        cache.skipped_nobody, cache.frames_read)
        curve = torch.from_numpy(loss_curve_image(result.losses)).float().div(255.0)[None]
        return (str(out), curve)


NODE_CLASS_MAPPINGS = {
    "TalkingPoseLoadLoRA": LoadTalkingPoseLoRA,
    "TalkingPoseTrainLoRA": TrainTalkingPoseLoRA,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "TalkingPoseLoadLoRA": "Load TalkingPose LoRA",
    "TalkingPoseTrainLoRA": "Train TalkingPose LoRA",
}
