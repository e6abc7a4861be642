"""The three TalkingPose networks wired together: denoising UNet, reference UNet and pose guider.

Both UNets are stock diffusers `UNet2DConditionModel`s; the reference mechanism lives in attention processors
(`reference_attention.py`) and the pose features enter through a forward hook on the denoising UNet's
`conv_in`, so diffusers' own forward runs unchanged. A prepared guided step (`guided_step.py`) also swaps, for
the length of one pass, the modules whose outputs are known beforehand (the time embedding and each resnet's
time projection, which depend on the step index only, and the norm that feeds only the cross-attention, whose
output is the same for the whole video) for those outputs; `prepared_pass`.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .errors import TalkingPoseError
from .reference_attention import (
    ConstantCrossAttention,
    PreparedSelfAttention,
    RecordSelfAttentionInput,
    ReferenceContext,
    ReferenceSelfAttention,
    fused_query_key_value_weight,
    project_reference_tokens,
    self_attention_modules,
)
from .motion_modules import ApplyAtOneFrame

ReferenceKV = dict[str, tuple[torch.Tensor, torch.Tensor]]
FP8_STORAGE = torch.float8_e4m3fn
FP8_STORAGE_TAG = "fp8-e4m3"
log = logging.getLogger("TalkingPose")


class _AddPoseFeatures:
    """Forward hook on the denoising UNet's conv_in: adds the current pose features, if any."""

    def __init__(self, context: ReferenceContext):
        self.context = context

    def __call__(self, module, inputs, output):
        features = self.context.pose_features
        return output if features is None else output + features


class _Precomputed(nn.Module):
    """Stands in for a module during a prepared pass: returns the output computed for this step beforehand."""

    def __init__(self):
        super().__init__()
        self.value = None

    def forward(self, *args, **kwargs):
        return self.value


class _Skipped(nn.Module):
    """Stands in for a module whose output only a constant consumer reads (its input passes through)."""

    def forward(self, x, *args, **kwargs):
        return x


class PreparedPass:
    """A video's constants for `TalkingPoseNetworks.prepared_pass`, and the step's time values it hands out."""

    def __init__(self, self_attention: dict[str, PreparedSelfAttention], stand_ins: "_StandIns"):
        self.self_attention = self_attention
        self.cross_attention: dict[str, torch.Tensor] = {}  # filled by the first pass (ConstantCrossAttention)
        self.stand_ins = stand_ins
        self.time_embedding: torch.Tensor | None = None
        self.time_projections: dict[str, torch.Tensor] = {}

    def set_step(self, time_embedding: torch.Tensor, time_projections: dict[str, torch.Tensor]) -> None:
        """The time embedding ([1, E]) and resnet time projections ([1, C]) the next passes use."""
        self.time_embedding, self.time_projections = time_embedding, time_projections


class _StandIns:
    """The modules swapped in during prepared passes: made once per networks, so that a compiled UNet meets the
    same modules in every video."""

    def __init__(self, timed_resnets):
        self.skipped = _Skipped()
        self.time_embedding = _Precomputed()
        self.time_projections = {name: _Precomputed() for name in timed_resnets}

    def load(self, prepared: PreparedPass) -> None:
        self.time_embedding.value = prepared.time_embedding
        for name, module in self.time_projections.items():
            module.value = prepared.time_projections[name]


_PROCESSORS_REPLACED = (
    "Something replaced TalkingPose's attention processors (another node's attention patch, a diffusers "
    "set_attn_processor call or similar): the frames would silently lose the source's identity. Load the "
    "TalkingPose model again without that patch."
)


@dataclass(frozen=True)
class AttentionBlock:
    """One attention block of the denoising UNet at one output size: "self" or "cross" attention, its module path,
    its token count, the width of its input (channels) and of its keys and values (inner)."""

    kind: str
    name: str
    tokens: int
    channels: int
    inner: int


# Which of the networks' modules each side runs: Appearance Encode runs the reference UNet once per source image,
# the sampler everything else at every step. Each side is a unit of a memory manager (ComfyUI's), so one can be
# offloaded while the other runs; the reference keys/values are projected by the sampler side (`sampler.py`),
# with the denoising UNet's own key/value weights, so the encoder side needs nothing of the denoising UNet.
ENCODER_SIDE = ("reference_unet",)
SAMPLER_SIDE = ("denoising_unet", "pose_guider", "motion_modules")


class _Side(nn.Module):
    """Some of the networks' modules, the same objects (not copies), under one module."""

    def __init__(self, modules: dict[str, nn.Module]):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)

    @property
    def weights_device(self) -> torch.device:
        return next(self.parameters()).device


class EncoderSide(_Side):
    """The reference UNet (`TalkingPoseNetworks.encoder_side`)."""


class SamplerSide(_Side):
    """The denoising UNet, pose guider and motion modules (`TalkingPoseNetworks.sampler_side`)."""


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
        # Set by store_weights_in_fp8: the dtype the layers compute in while their weights are stored in fp8.
        self._fp8_compute_dtype: torch.dtype | None = None
        self._context = ReferenceContext()
        self._recorded: dict[str, torch.Tensor] = {}
        self._denoising_attention = self_attention_modules(denoising_unet)
        for name, attn in self._denoising_attention.items():
            attn.set_processor(ReferenceSelfAttention(name, self._context))
        self._cross_attention = {name: module for name, module in denoising_unet.named_modules() if name.endswith(".attn2")}
        for name, attn in self._cross_attention.items():
            attn.set_processor(ConstantCrossAttention(name, self._context))
        self._timed_resnets = {name: module for name, module in denoising_unet.named_modules()
                               if getattr(module, "time_emb_proj", None) is not None}
        self._stand_ins = _StandIns(self._timed_resnets)
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
        fingerprint = f"{self.base_fingerprint}+lora-{self.lora_signature}" if self.lora_signature else self.base_fingerprint
        # fp8 storage changes the frames: a render or appearance made with it is not one made without it
        return f"{fingerprint}+{FP8_STORAGE_TAG}" if self.weights_in_fp8 else fingerprint

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
        """The dtype the networks compute in (with fp8 storage, the one the weights are cast to for each layer)."""
        return self._fp8_compute_dtype or self.denoising_unet.conv_in.weight.dtype

    @property
    def weights_in_fp8(self) -> bool:
        return self._fp8_compute_dtype is not None

    @property
    def reference_device(self) -> torch.device:
        """Where the reference UNet is: a memory manager may hold it apart from the rest (`encoder_side`)."""
        return self.reference_unet.conv_in.weight.device

    # ---------------------------------------------------------------------------------------------- memory
    def attention_blocks(self, width: int, height: int) -> list["AttentionBlock"]:
        """The denoising UNet's attention blocks with their token count at a width × height output and their
        widths (the memory estimates count the buffers the sampler keeps per block from these)."""
        levels = len(self.denoising_unet.config.block_out_channels)
        blocks = []
        for kind, modules in (("self", self._denoising_attention), ("cross", self._cross_attention)):
            for name, attn in modules.items():
                block, _, rest = name.partition(".")
                if block == "mid_block":
                    level = levels - 1
                else:
                    index = int(rest.split(".", 1)[0])
                    level = index if block == "down_blocks" else levels - 1 - index
                tokens = (height // 8 >> level) * (width // 8 >> level)
                blocks.append(AttentionBlock(kind, name, tokens, attn.to_q.in_features, attn.to_k.out_features))
        return blocks

    # ---------------------------------------------------------------------------------------------- managed parts
    def encoder_side(self) -> "EncoderSide":
        """The modules Appearance Encode runs (the reference UNet), as one module for a memory manager."""
        return EncoderSide({name: getattr(self, name) for name in ENCODER_SIDE})

    def sampler_side(self) -> "SamplerSide":
        """The modules the sampler runs (denoising UNet, pose guider, motion modules), as one module for a memory
        manager: the reference UNet is not among them, so it can stay offloaded while frames are sampled."""
        return SamplerSide({name: getattr(self, name) for name in SAMPLER_SIDE})

    # ---------------------------------------------------------------------------------------------- speed
    def use_channels_last(self) -> None:
        """NHWC convolutions (faster with half precision on tensor cores); results are unchanged."""
        for unet in (self.denoising_unet, self.reference_unet):
            unet.to(memory_format=torch.channels_last)

    def store_weights_in_fp8(self) -> None:
        """Keep both UNets' weights in fp8 (e4m3) and cast each layer's weights to the compute dtype just for its
        forward: diffusers' layerwise casting (norms stay as they are). Halves the UNets' weight memory against
        fp16, for cards of 6 GB or less, and CHANGES THE FRAMES (the weights are rounded to 3 mantissa bits), so
        it is an opt-in. Call it once the networks are on their device in the compute dtype. A prepared step then
        casts its fused Q/K/V weights per use too and runs without a CUDA graph (see `guided_step.step_mode`)."""
        if self.weights_in_fp8:
            return
        compute = self.weights_dtype
        if not compute.is_floating_point or compute.itemsize < 2:
            raise TalkingPoseError(f"fp8 weight storage needs a 16- or 32-bit compute dtype; the networks are in {compute}.")
        for unet in (self.denoising_unet, self.reference_unet):
            unet.enable_layerwise_casting(storage_dtype=FP8_STORAGE, compute_dtype=compute)
        self._fp8_compute_dtype = compute

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
        fine-tuning needs. An appearance keeps these tokens; the sampler projects them (`project_reference`)."""
        self._recorded.clear()
        device = self.reference_device
        try:
            self.reference_unet(
                reference_latent.to(device, self.weights_dtype),
                torch.zeros((), dtype=torch.long, device=device),
                encoder_hidden_states=image_context.to(device, self.weights_dtype),
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

    # ---------------------------------------------------------------------------------------------- prepared step
    @torch.no_grad()
    def time_embeddings(self, timesteps, rows: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """For each timestep, the UNet's time embedding and every resnet's time projection, computed by the UNet's
        own modules exactly as its forward computes them for a batch of `rows`: ([steps, 1, E], {resnet: [steps,
        1, C]}). They depend on the step only, so a video computes them once."""
        unet = self.denoising_unet
        sample = torch.empty((rows, 1), device=self.weights_device, dtype=self.weights_dtype)
        embeddings, projections = [], {name: [] for name in self._timed_resnets}
        for t in timesteps:
            emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=t), None)
            embeddings.append(emb[:1])
            for name, resnet in self._timed_resnets.items():
                projections[name].append(resnet.time_emb_proj(emb if resnet.skip_time_act else resnet.nonlinearity(emb))[:1])
        return torch.stack(embeddings), {name: torch.stack(p) for name, p in projections.items()}

    def prepare_pass(self, reference: ReferenceKV | None, n_unconditional: int) -> "PreparedPass":
        """The video's constants for `prepared_pass`: fused Q/K/V weights and reference buffers per self-attention
        block (the cross-attention outputs are kept at the first pass)."""
        self_attention = {name: PreparedSelfAttention(fused_query_key_value_weight(attn), n_unconditional,
                                                      None if reference is None else reference[name])
                          for name, attn in self._denoising_attention.items()}
        return PreparedPass(self_attention, self._stand_ins)

    @contextmanager
    def prepared_pass(self, prepared: "PreparedPass", pose_features: torch.Tensor):
        """Inside the block, denoising UNet passes use the video's constants: the attention processors read the
        prepared self- and cross-attention, and the time embedding and resnet time projections are the step's
        precomputed ones (`PreparedPass.set_step`). The swapped modules are put back on leaving, also on errors."""
        unet, stand_ins = self.denoising_unet, self._stand_ins
        stand_ins.load(prepared)
        swaps = [(unet, "time_proj", stand_ins.time_embedding), (unet, "time_embedding", stand_ins.skipped)]
        for name, resnet in self._timed_resnets.items():
            swaps.append((resnet, "time_emb_proj", stand_ins.time_projections[name]))
        for name in prepared.cross_attention:  # the norm feeds only the cross-attention, whose output is kept
            swaps.append((unet.get_submodule(name.rpartition(".")[0]), "norm2", stand_ins.skipped))
        saved = [(owner, attribute, getattr(owner, attribute)) for owner, attribute, _ in swaps]
        skip_time_act = [(resnet, resnet.skip_time_act) for resnet in self._timed_resnets.values()]
        ctx = self._context
        try:
            for owner, attribute, module in swaps:
                setattr(owner, attribute, module)
            for resnet, _ in skip_time_act:
                resnet.skip_time_act = True  # the activation is inside the precomputed projection
            ctx.prepared, ctx.cross_attention = prepared.self_attention, prepared.cross_attention
            with self.conditioning(pose_features, None, 0):
                yield
        finally:
            ctx.prepared, ctx.cross_attention = None, None
            for owner, attribute, module in saved:
                setattr(owner, attribute, module)
            for resnet, value in skip_time_act:
                resnet.skip_time_act = value

    def check_reference_calls(self) -> None:
        """Raise if the last pass ran fewer reference-attention processors than there are self-attention blocks."""
        calls = self._context.calls
        if calls != len(self._denoising_attention):
            raise TalkingPoseError(
                f"The reference attention ran in {calls} of the denoising UNet's {len(self._denoising_attention)} "
                f"self-attention blocks in this step. {_PROCESSORS_REPLACED}"
            )

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
        self.check_reference_calls()
        return out
