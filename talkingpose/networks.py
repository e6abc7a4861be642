"""The three TalkingPose networks wired together: denoising UNet, reference UNet and pose guider.

Both UNets are stock diffusers `UNet2DConditionModel`s; the reference mechanism lives in attention processors
(`reference_attention.py`) and the pose features enter through a forward hook on the denoising UNet's
`conv_in`, so diffusers' own forward runs unchanged.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

import torch
from torch import nn

from .errors import TalkingPoseError
from .reference_attention import (
    RecordSelfAttentionInput,
    ReferenceContext,
    ReferenceSelfAttention,
    project_reference_tokens,
    self_attention_modules,
)
from .motion_modules import ApplyAtOneFrame

ReferenceKV = dict[str, tuple[torch.Tensor, torch.Tensor]]
log = logging.getLogger("TalkingPose")


class _AddPoseFeatures:
    """Forward hook on the denoising UNet's conv_in: adds the current pose features, if any."""

    def __init__(self, context: ReferenceContext):
        self.context = context

    def __call__(self, module, inputs, output):
        features = self.context.pose_features
        return output if features is None else output + features


_PROCESSORS_REPLACED = (
    "Something replaced TalkingPose's attention processors (another node's attention patch, a diffusers "
    "set_attn_processor call or similar): the frames would silently lose the source's identity. Load the "
    "TalkingPose model again without that patch."
)


class TalkingPoseNetworks(nn.Module):
    def __init__(self, denoising_unet, reference_unet, pose_guider, fingerprint: str = "", source: str = "",
                 motion_modules: dict[str, nn.Module] | None = None):
        """`motion_modules`: {denoising UNet submodule path: motion module run on that submodule's output}."""
        super().__init__()
        self.denoising_unet = denoising_unet
        self.reference_unet = reference_unet
        self.pose_guider = pose_guider
        # Outside the UNet's module tree, so its self-attention processors stay the reference ones only.
        self.motion_modules = nn.ModuleList((motion_modules or {}).values())
        for target, module in (motion_modules or {}).items():
            denoising_unet.get_submodule(target).register_forward_hook(ApplyAtOneFrame(module))
        self.base_fingerprint = fingerprint  # of the weights as loaded
        self.source = source
        # Set by lora.activate: the active LoRA adapters with their strengths, and a short id of them.
        self.lora_stack = ()
        self.lora_signature = ""
        self._compiled = False
        self._context = ReferenceContext()
        self._recorded: dict[str, torch.Tensor] = {}
        self._denoising_attention = self_attention_modules(denoising_unet)
        for name, attn in self._denoising_attention.items():
            attn.set_processor(ReferenceSelfAttention(name, self._context))
        for name, attn in self_attention_modules(reference_unet).items():
            attn.set_processor(RecordSelfAttentionInput(name, self._recorded))
        # The hook holds the context, not `self`: a bound method here would make a reference cycle
        # (networks -> UNet -> conv_in -> hook -> networks), which keeps the weights alive after ComfyUI drops the
        # model until a full garbage collection ("Potential memory leak detected with model ...").
        denoising_unet.conv_in.register_forward_hook(_AddPoseFeatures(self._context))

    # ---------------------------------------------------------------------------------------------- properties
    @property
    def fingerprint(self) -> str:
        """Identifies what the networks compute now: the loaded weights plus any active LoRA adapters."""
        return f"{self.base_fingerprint}+lora-{self.lora_signature}" if self.lora_signature else self.base_fingerprint

    # Not named `device`/`dtype`: ComfyUI's ModelPatcher assigns a plain `device` attribute on the module it manages.
    @property
    def unet_width(self) -> int:
        return self.denoising_unet.config.block_out_channels[0]

    @property
    def cross_attention_dim(self) -> int:
        return self.denoising_unet.config.cross_attention_dim

    @property
    def latent_channels(self) -> int:
        return self.denoising_unet.config.in_channels

    @property
    def weights_device(self) -> torch.device:
        return self.denoising_unet.conv_in.weight.device

    @property
    def weights_dtype(self) -> torch.dtype:
        return self.denoising_unet.conv_in.weight.dtype

    # ---------------------------------------------------------------------------------------------- memory
    def forward_memory(self, rows: int, width: int, height: int) -> int:
        """Bytes of activations one UNet pass over `rows` latents of a width × height output needs beyond the
        weights, for ComfyUI's memory manager (`memory_required`). An estimate, counted in latent-size maps of
        the first block's width: about 24 alive at the peak of an SD1.5-layout pass (the skip connections kept
        for the up blocks, q/k/v and the feed-forward's 8× wide intermediate of the highest-resolution
        transformer block, with reference keys/values doubling k and v), doubled for allocator slack. Attention
        scores are not counted: PyTorch's flash and memory-efficient SDPA kernels never hold them."""
        tokens = (height // 8) * (width // 8)
        return 48 * rows * tokens * self.unet_width * self.weights_dtype.itemsize

    def reference_memory(self, width: int, height: int) -> int:
        """Bytes of one appearance's reference keys and values (what a reference pass records and projects)."""
        levels = len(self.denoising_unet.config.block_out_channels)
        total = 0
        for name, attn in self._denoising_attention.items():
            block, _, rest = name.partition(".")
            if block == "mid_block":
                level = levels - 1
            else:
                index = int(rest.split(".", 1)[0])
                level = index if block == "down_blocks" else levels - 1 - index
            tokens = (height // 8 >> level) * (width // 8 >> level)
            total += 2 * tokens * attn.to_k.out_features * self.weights_dtype.itemsize
        return total

    # ---------------------------------------------------------------------------------------------- speed
    def use_channels_last(self) -> None:
        """NHWC convolutions (faster with half precision on tensor cores); results are unchanged."""
        for unet in (self.denoising_unet, self.reference_unet):
            unet.to(memory_format=torch.channels_last)

    def compile_denoiser(self, mode: str | None = None) -> None:
        """torch.compile the denoising UNet in place (same parameters and keys). Compilation happens at the first
        step; if it fails there (no compiler, unsupported backend), sampling continues uncompiled."""
        self.denoising_unet.compile(mode=mode, dynamic=False)
        self._compiled = True

    def _denoise(self, *args, **kwargs):
        if not self._compiled:
            return self.denoising_unet(*args, **kwargs)
        try:
            return self.denoising_unet(*args, **kwargs)
        except (torch._dynamo.exc.TorchDynamoException, OSError, ImportError) as exc:
            log.warning("torch.compile is not available here (%s: %s); continuing without it.", type(exc).__name__, str(exc)[:200])
            self.denoising_unet._compiled_call_impl = None
            self._compiled = False
            return self.denoising_unet(*args, **kwargs)

    # ---------------------------------------------------------------------------------------------- passes
    def reference_tokens(self, reference_latent: torch.Tensor, image_context: torch.Tensor) -> dict[str, torch.Tensor]:
        """One reference-UNet pass at timestep 0: the input tokens of every transformer block's self-attention,
        keyed by the block's path (the same path as its denoising twin). Differentiable when autograd is on, as
        fine-tuning needs; the sampler goes through `reference_keys_values`."""
        self._recorded.clear()
        try:
            self.reference_unet(
                reference_latent.to(self.weights_device, self.weights_dtype),
                torch.zeros((), dtype=torch.long, device=self.weights_device),
                encoder_hidden_states=image_context.to(self.weights_device, self.weights_dtype),
                return_dict=False,
            )
            if len(self._recorded) != len(self._denoising_attention):
                raise TalkingPoseError(
                    f"The reference UNet's recording processors ran in {len(self._recorded)} of "
                    f"{len(self._denoising_attention)} self-attention blocks. {_PROCESSORS_REPLACED}"
                )
            return dict(self._recorded)
        finally:
            self._recorded.clear()

    def project_reference(self, tokens: dict[str, torch.Tensor]) -> ReferenceKV:
        """Reference tokens -> the denoising blocks' keys and values for them."""
        return project_reference_tokens(self._denoising_attention, tokens)

    @torch.no_grad()
    def reference_keys_values(self, reference_latent: torch.Tensor, image_context: torch.Tensor) -> ReferenceKV:
        """One reference-UNet pass at timestep 0, projected to the denoising blocks' keys and values."""
        return self.project_reference(self.reference_tokens(reference_latent, image_context))

    @torch.no_grad()
    def pose_features(self, pose_pixels: torch.Tensor) -> torch.Tensor:
        """Pose renders in [0, 1], [N, 3, H, W] -> features at latent resolution, [N, unet_width, H/8, W/8]."""
        return self.pose_guider(pose_pixels.to(self.weights_device, self.weights_dtype))

    @contextmanager
    def conditioning(self, pose_features: torch.Tensor | None, reference: ReferenceKV | None, n_unconditional: int = 0):
        """What the denoising UNet's pose hook and attention processors read, for every pass run inside the block:
        rows `[:n_unconditional]` see no reference tokens. Fine-tuning keeps the block open over the backward pass,
        whose gradient-checkpointed blocks run their forward again."""
        ctx = self._context
        ctx.keys_values = reference or {}
        ctx.n_unconditional = n_unconditional
        ctx.pose_features = pose_features
        ctx.calls = 0
        try:
            yield
        finally:
            ctx.keys_values, ctx.pose_features = {}, None

    @torch.no_grad()
    def predict(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        image_context: torch.Tensor,
        pose_features: torch.Tensor,
        reference: ReferenceKV | None,
        n_unconditional: int,
    ) -> torch.Tensor:
        """The denoising UNet's output for a batch whose first `n_unconditional` rows see no reference tokens."""
        with self.conditioning(pose_features, reference, n_unconditional):
            out = self._denoise(latents, timestep, encoder_hidden_states=image_context, return_dict=False)[0]
            calls = self._context.calls
        if calls != len(self._denoising_attention):
            raise TalkingPoseError(
                f"The reference attention ran in {calls} of the denoising UNet's {len(self._denoising_attention)} "
                f"self-attention blocks in this step. {_PROCESSORS_REPLACED}"
            )
        return out
