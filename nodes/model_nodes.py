"""Load TalkingPose Model, Appearance Encode and Closed-Loop Sampler.

Each node only translates between ComfyUI's types and the engine (`talkingpose`); anything that touches ComfyUI
itself goes through `host`. Engine modules are imported inside the node functions so that ComfyUI starts fast.
"""
from __future__ import annotations

import time

from .backend import host
from .meta_batch import ChunkCarry, chunk_number

SAMPLER_CARRY = ChunkCarry(
    "talkingpose_sampler_states",
    missing="Meta batch chunk {chunk} arrived, but the sampler has no state from chunk {previous}: the previous "
            "chunks ran without it (or ComfyUI was restarted). Queue the workflow again from the start, or connect "
            "Load TalkingPose State and skip the frames already made in Load Video.",
)

CATEGORY = "TalkingPose"
NONE_INSTALLED = "none installed (see README: Weights)"
BETA_TOOLTIP = (
    "Closed-loop gain \u03b2. Every frame starts from the shared noise z_T moved a fraction \u03b2 toward the previous "
    "frame's result: z_T + \u03b2\u00b7(\u1e910 \u2212 z_T). 0 makes each frame independent (flicker: FVD 553 in the paper), 0.05 "
    "is the paper's choice (FVD 203), larger values carry more of the previous frame and start to smear motion "
    "and accumulate drift (0.2 was already worse)."
)


class TalkingPoseModel:
    """What the TALKINGPOSE_MODEL socket carries: the networks as two models of ComfyUI's memory manager — the
    encoder side (the reference UNet, which Appearance Encode runs) and the sampler side (denoising UNet, pose
    guider, motion modules) — so either can be offloaded while the other runs, and the LoRA adapters (with
    strengths) this variant of them uses. Variants share one set of weights; each load selects the variant's
    adapters right before use."""

    def __init__(self, networks, encoder, sampler, name: str, loras: tuple = ()):
        self.networks = networks  # wherever they are now, with whichever variant's adapters ran last (for sizes)
        self.encoder = encoder
        self.sampler = sampler
        self.name = name
        self.loras = tuple(loras)

    def load_encoder(self, memory_required: int = 0):
        """The networks with the encoder side on the compute device (`memory_required`: bytes of activations to
        come) and this variant's LoRA adapters selected; the sampler side stays wherever ComfyUI keeps it."""
        return self._load([self.encoder], memory_required)

    def load_sampler(self, memory_required: int = 0):
        """The networks with the sampler side on the compute device and this variant's adapters selected; the
        reference UNet stays wherever ComfyUI keeps it. Call it right before each group of forward passes: other
        models (or other variants of these networks) used in between may have pushed it out or switched adapters."""
        return self._load([self.sampler], memory_required)

    def load(self, memory_required: int = 0):
        """The networks with both sides on the compute device (fine-tuning trains both UNets; a LoRA is checked
        against both)."""
        return self._load([self.encoder, self.sampler], memory_required)

    def _load(self, sides, memory_required: int):
        from talkingpose.lora import activate

        host.load_together(sides, memory_required)
        activate(self.networks, self.loras)
        return self.networks

    def with_lora(self, adapter, strength: float) -> "TalkingPoseModel":
        label = adapter.path.stem if adapter.path is not None else adapter.id
        return TalkingPoseModel(self.networks, self.encoder, self.sampler, f"{self.name} + {label}@{strength:g}",
                                self.loras + ((adapter, strength),))


def _installed_models():
    from talkingpose.checkpoints import list_models

    return list_models(host.model_folders("talkingpose"), include_incomplete=True)


def _download_command() -> str:
    from talkingpose.runtime import PACK_ROOT

    folder = host.model_folders("talkingpose")[0].parent if host.model_folders("talkingpose") else "models"
    return f"python {PACK_ROOT / 'cli.py'} download --what talkingpose --models {folder}"


def _missing_model_message() -> str:
    from talkingpose.checkpoints import DOWNLOAD_HINT

    folders = ", ".join(str(f) for f in host.model_folders("talkingpose")) or "models/talkingpose"
    return f"No TalkingPose model is installed. {DOWNLOAD_HINT} Folders searched: {folders}. " \
           f"To download them (several GB), run with ComfyUI's Python: {_download_command()}"


WEIGHTS_AS_PRECISION = "as precision (exact)"
WEIGHTS_FP8 = "fp8 (less VRAM, changes frames)"


class LoadTalkingPoseModel:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("TALKINGPOSE_MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    DESCRIPTION = ("Loads the TalkingPose denoising UNet, reference UNet and pose guider from models/talkingpose/. "
                   "Nothing is downloaded from here: a shared workflow must not start a multi-GB download; the "
                   "README's Weights section has the one download command.")

    @classmethod
    def INPUT_TYPES(cls):
        try:
            names = sorted(_installed_models())
        except Exception:  # a broken folder must not hide the node
            names = []
        return {
            "required": {
                "model": (names or [NONE_INSTALLED], {
                    "tooltip": "A folder holding denoising_unet.pth, reference_unet.pth and pose_guider.pth, or a "
                               "combined .safetensors (e.g. the fp16 conversion), under models/talkingpose/. A folder "
                               "missing one of the files is listed too, and says which file is missing when chosen.",
                }),
                "precision": (["auto", "fp16", "bf16", "fp32"], {
                    "default": "auto",
                    "tooltip": "Compute precision. auto: what ComfyUI chooses for an SD1.5 UNet on this device (fp16 "
                               "on most GPUs, as the official inference runs; --fp16-unet, --bf16-unet and "
                               "--fp32-unet decide it), fp32 on the CPU.",
                }),
            },
            "optional": {
                "weight_storage": ([WEIGHTS_AS_PRECISION, WEIGHTS_FP8], {
                    "default": WEIGHTS_AS_PRECISION,
                    "tooltip": "fp8: the UNets' weights are kept in fp8 and cast to the compute precision layer by "
                               "layer, about half their fp16 memory (for cards of 6 GB or less). It CHANGES THE "
                               "FRAMES (the README gives the deviation measured) and runs without the CUDA graph. "
                               "Leave it at the precision for the exact render.",
                }),
            },
        }

    def load(self, model, precision, weight_storage=WEIGHTS_AS_PRECISION):
        from talkingpose.checkpoints import count_parameters, load_networks
        from talkingpose.errors import TalkingPoseError

        installed = _installed_models()
        if model not in installed:
            raise TalkingPoseError(_missing_model_message() if model == NONE_INSTALLED or not installed
                                   else f"TalkingPose model '{model}' is not installed any more. " + _missing_model_message())
        path = installed[model]
        dtype = host.compute_dtype(precision, model_params=count_parameters(path))
        networks = load_networks(path, dtype=dtype)
        if weight_storage == WEIGHTS_FP8:
            networks.store_weights_in_fp8()
        return (TalkingPoseModel(networks, host.ManagedModel(networks.encoder_side(), dtype),
                                 host.ManagedModel(networks.sampler_side(), dtype), model),)


class TalkingPoseAppearanceEncode:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("TALKINGPOSE_APPEARANCE",)
    RETURN_NAMES = ("appearance",)
    FUNCTION = "encode"
    DESCRIPTION = ("Encodes the source photo once: CLIP image embedding, reference latent and the reference "
                   "UNet's features. Changing sampler settings later does not re-run this.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("TALKINGPOSE_MODEL",),
                "clip_vision": ("CLIP_VISION", {"tooltip": "ViT-L/14 with a 768-wide projection: the sd-image-variations image encoder."}),
                "vae": ("VAE", {"tooltip": "An SD1.x VAE, e.g. sd-vae-ft-mse."}),
                "image": ("IMAGE", {"tooltip": "One photo of the person to animate."}),
                "width": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8}),
                "height": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8}),
                "fit": (["stretch", "crop", "pad"], {
                    "default": "stretch",
                    "tooltip": "How the source and the pose frames are brought to width × height when their aspect "
                               "ratio differs: stretch (as the official pipeline), crop the centre, or pad.",
                }),
            }
        }

    def encode(self, model, clip_vision, vae, image, width, height, fit):
        import torch

        from talkingpose import images
        from talkingpose.appearance import SD_LATENT_SCALE, encode_appearance
        from talkingpose.errors import TalkingPoseError
        from talkingpose.memory import appearance_encode_bytes

        if image.shape[0] != 1:
            raise TalkingPoseError(
                f"Appearance Encode takes one source image but got a batch of {image.shape[0]}. "
                "Pick one with ComfyUI's 'Image From Batch' node."
            )
        images.check_output_size(width, height)
        needed = model.networks.cross_attention_dim
        width_clip = host.clip_projection_width(clip_vision)
        if width_clip is not None and width_clip != needed:
            raise TalkingPoseError(
                f"This CLIP Vision model gives {width_clip}-wide embeddings; TalkingPose needs {needed} (ViT-L/14, "
                "the sd-image-variations image encoder). ViT-H and ViT-bigG models do not fit."
            )
        prepared = images.prepare_source(image[0], width, height, fit)  # alpha flattened onto white there
        # CLIP and VAE first: loading them may push the reference UNet out of VRAM, partly or wholly.
        embeds = host.clip_image_embeds(clip_vision, prepared)
        raw = host.vae_encode_mean(vae, prepared.reference_image())
        if raw.ndim != 4 or raw.shape[1] != model.networks.latent_channels or raw.shape[-1] * 8 != width:
            raise TalkingPoseError(
                f"The VAE returned latents of shape {tuple(raw.shape)}; TalkingPose needs an SD1.x VAE "
                "(4 channels, 8× smaller), e.g. sd-vae-ft-mse."
            )
        networks = model.load_encoder(appearance_encode_bytes(model.networks, width, height))
        with torch.no_grad():
            appearance = encode_appearance(networks, embeds, raw.float() * SD_LATENT_SCALE, width, height, fit)
        return (appearance,)


class TalkingPoseClosedLoopSampler:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT", "TALKINGPOSE_STATE")
    RETURN_NAMES = ("latents", "state")
    FUNCTION = "sample"
    DESCRIPTION = ("Animates the appearance with one pose frame per output frame, one frame after another, each "
                   "starting from the shared noise nudged toward the previous result (closed loop). Feed the state "
                   "output back in to continue a render in a later queue run.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("TALKINGPOSE_MODEL",),
                "appearance": ("TALKINGPOSE_APPEARANCE",),
                "pose_images": ("IMAGE", {"tooltip": "DWPose renders, one per frame (Pose Extract, or any DWPose node or pose video)."}),
                # talkingpose.sampler.MAX_SEED: torch keeps 32 bits of a seed, larger ones would repeat smaller ones
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFF, "control_after_generate": True}),
                "steps": ("INT", {"default": 30, "min": 1, "max": 200}),
                "cfg": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 20.0, "step": 0.1, "round": 0.01}),
                "beta": ("FLOAT", {"default": 0.05, "min": 0.0, "max": 1.0, "step": 0.005, "display": "slider", "tooltip": BETA_TOOLTIP}),
            },
            "optional": {
                "state": ("TALKINGPOSE_STATE", {"tooltip": "Continue a previous run from its last frame (e.g. from Load TalkingPose State)."}),
                "meta_batch": ("VHS_BatchManager", {"tooltip": "VideoHelperSuite's Meta Batch Manager: the closed loop "
                                                     "continues across its chunks, so a chunked render equals a one-shot render."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT"},
        }

    def sample(self, model, appearance, pose_images, seed, steps, cfg, beta, state=None, meta_batch=None, unique_id=None, prompt=None):
        import torch

        from talkingpose import images
        from talkingpose.appearance import SD_LATENT_SCALE
        from talkingpose.errors import TalkingPoseError
        from talkingpose.memory import denoise_step_bytes
        from talkingpose.sampler import ClosedLoopSampler, SamplerSettings

        if pose_images is None or pose_images.shape[0] == 0:
            raise TalkingPoseError("The pose batch is empty: connect pose renders with at least one frame.")
        settings = SamplerSettings(steps=steps, cfg=cfg, beta=beta, seed=seed)
        chunk = None
        if meta_batch is not None:
            chunk = chunk_number(meta_batch, prompt, unique_id)
            state = SAMPLER_CARRY.carried(meta_batch, unique_id, chunk, state)
        memory = denoise_step_bytes(model.networks, appearance, cfg, steps)
        networks = model.load_sampler(memory)
        try:
            sampler = ClosedLoopSampler(networks, appearance, settings, state)
        except TalkingPoseError as exc:
            if state is None or state.settings.seed == seed:
                raise
            # The frontend's "control after generate" (randomize by default) changes the seed after every queue,
            # so a state wired back in for the next part of a video usually meets a seed the user never chose.
            raise TalkingPoseError(
                f"{exc} The sampler's seed changes after every queue while its 'control after generate' is not "
                f"'fixed': set it to 'fixed' and the seed back to {state.settings.seed} to continue this video."
            ) from exc
        n = pose_images.shape[0]
        progress = host.Progress(n * steps, desc="TalkingPose", unit="step")
        preview = host.latent_previewer()
        latents, started = [], time.perf_counter()

        def on_step(frame, step, total):
            host.throw_if_cancelled()
            if step + 1 < total:
                progress.update(1)

        try:
            for i in range(n):
                pose = images.pose_pixels(pose_images[i], appearance.width, appearance.height, appearance.fit)
                model.load_sampler(memory)  # previews and other nodes' models may have moved the networks since
                latent = sampler.denoise(pose, on_step)
                latents.append(latent)
                progress.update(1, preview(latent[None]) if preview else None)
                per_frame = (time.perf_counter() - started) / (i + 1)
                host.send_event("talkingpose.progress", {
                    "node": unique_id, "frame": i + 1, "frames": n, "s_per_frame": per_frame,
                    "eta_s": per_frame * (n - i - 1),
                })
        finally:
            progress.close()
        if meta_batch is not None:
            SAMPLER_CARRY.carry(meta_batch, unique_id, chunk, sampler.state, n)
        return ({"samples": torch.stack(latents) / SD_LATENT_SCALE}, sampler.state)


NODE_CLASS_MAPPINGS = {
    "TalkingPoseModelLoader": LoadTalkingPoseModel,
    "TalkingPoseAppearanceEncode": TalkingPoseAppearanceEncode,
    "TalkingPoseClosedLoopSampler": TalkingPoseClosedLoopSampler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "TalkingPoseModelLoader": "Load TalkingPose Model",
    "TalkingPoseAppearanceEncode": "TalkingPose Appearance Encode",
    "TalkingPoseClosedLoopSampler": "TalkingPose Sampler",
}
