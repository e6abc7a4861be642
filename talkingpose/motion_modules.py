"""AnimateDiff-style motion modules in a denoising checkpoint, applied at one frame.

The official inference builds the denoising UNet with a motion module after every transformer block of the
down, mid and up blocks (after the resnet in blocks without attention), and loads the checkpoint non-strictly:
whatever motion-module weights the file holds are applied. TalkingPose renders one frame at a time, and at one
frame a motion module is not an identity: its temporal attention over a single token reduces to the value and
output projections, and its feed-forward and output projection still add to the block's output. It is an
identity only when its output projection is zero (how AnimateDiff initialises them).

So modules with a zero output projection are dropped, the others run at one frame: diffusers' own
`AnimateDiffTransformer3D` (the same network under diffusers' key names) attached by a forward hook after the
block the official UNet runs it after.
"""
from __future__ import annotations

import logging
import re

import torch

from .errors import TalkingPoseError

log = logging.getLogger("TalkingPose")

MOTION_MODULE_PATTERN = re.compile(r"(^|\.)motion_modules\.")
_MODULE_PREFIX = re.compile(r"^((?:down_blocks|up_blocks)\.\d+|mid_block)\.motion_modules\.(\d+)\.")
# Official key names -> diffusers' (the block's two temporal attentions, their norms and the feed-forward norm).
_RENAMES = ((".attention_blocks.0.", ".attn1."), (".attention_blocks.1.", ".attn2."), (".norms.0.", ".norm1."),
            (".norms.1.", ".norm2."), (".ff_norm.", ".norm3."))


def split(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """(the UNet's own tensors, {motion module prefix such as 'down_blocks.0.motion_modules.1': its tensors})."""
    own, modules = {}, {}
    for key, tensor in state.items():
        if not MOTION_MODULE_PATTERN.search(key):
            own[key] = tensor
            continue
        match = _MODULE_PREFIX.match(key)
        if match is None:
            raise TalkingPoseError(
                f"{source}: motion-module tensor '{key}' is not in a down, mid or up block of the UNet; this "
                "checkpoint's layout is not the official TalkingPose one."
            )
        prefix = match.group(0)[:-1]
        modules.setdefault(prefix, {})[key[len(prefix) + 1:]] = tensor
    return own, modules


def is_identity(module_state: dict[str, torch.Tensor]) -> bool:
    """True when the module's output projection is zero: it then adds nothing, at any number of frames."""
    out = [t for k, t in module_state.items() if k.startswith("temporal_transformer.proj_out.")]
    return bool(out) and all(not t.any() for t in out)


def keep_active(modules: dict[str, dict[str, torch.Tensor]], source: str) -> dict[str, dict[str, torch.Tensor]]:
    """The modules that change the output; the zero ones are dropped with one log line."""
    active = {prefix: state for prefix, state in modules.items() if not is_identity(state)}
    if len(active) < len(modules):
        log.info("%s: dropped %d motion modules whose output projection is zero (identities at any frame count)",
                 source, len(modules) - len(active))
    if active:
        log.info("%s: %d motion modules have non-zero weights; they are applied at one frame as the official "
                 "inference applies them", source, len(active))
    return active


def target_block(prefix: str, unet) -> str:
    """The UNet submodule after which the official UNet runs a motion module: the transformer block in blocks with
    attention (down: resnet -> attention -> motion; mid: attention -> motion -> resnet; up: as down), the resnet
    in blocks without."""
    block_path, _, index = prefix.rpartition(".motion_modules.")
    block = unet.get_submodule(block_path)
    holder = "attentions" if getattr(block, "attentions", None) is not None else "resnets"
    if int(index) >= len(getattr(block, holder)):
        raise TalkingPoseError(f"motion module {prefix} has no {holder[:-1]} {index} to follow in this UNet.")
    return f"{block_path}.{holder}.{index}"


def build(prefix: str, module_state: dict[str, torch.Tensor], source: str, dtype) -> torch.nn.Module:
    """diffusers' AnimateDiffTransformer3D holding one official motion module's weights."""
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    state = {}
    for key, tensor in module_state.items():
        key = key.removeprefix("temporal_transformer.")
        for old, new in _RENAMES:
            key = key.replace(old, new)
        if key.endswith(".attn1.pos_encoder.pe"):
            key = key.replace(".attn1.pos_encoder.pe", ".pos_embed.pe")  # one table per block in diffusers
        elif key.endswith(".attn2.pos_encoder.pe"):
            continue  # the same sinusoids as attn1's
        state[key] = tensor
    try:
        channels, inner = state["proj_in.weight"].shape[1], state["proj_in.weight"].shape[0]
        layers = len({k.split(".")[1] for k in state if k.startswith("transformer_blocks.")})
        pe = state.get("transformer_blocks.0.pos_embed.pe")
        heads = 8 if inner % 8 == 0 else 1  # the official config's 8; at one frame the head split changes nothing
        with torch.device("meta"):
            module = AnimateDiffTransformer3D(
                num_attention_heads=heads, attention_head_dim=inner // heads, in_channels=channels, num_layers=layers,
                attention_bias="transformer_blocks.0.attn1.to_q.bias" in state, double_self_attention=True,
                positional_embeddings="sinusoidal" if pe is not None else None,
                num_positional_embeddings=pe.shape[1] if pe is not None else None,
            )
        module.load_state_dict(state, strict=True, assign=True)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise TalkingPoseError(
            f"{source}: motion module {prefix} has non-zero weights in a layout this pack cannot run at one frame "
            f"({type(exc).__name__}: {str(exc)[:300]}). Use a checkpoint without motion modules, or with the "
            "official TalkingPose/AnimateDiff layout (two temporal self-attentions and a feed-forward per block)."
        ) from exc
    return torch.nn.Module.to(module, dtype=dtype).eval().requires_grad_(False)


class ApplyAtOneFrame:
    """Forward hook: a motion module applied to its block's output, at one frame."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __call__(self, block, inputs, output):
        if isinstance(output, torch.Tensor):
            return self._apply(output)
        if isinstance(output, tuple):
            return (self._apply(output[0]), *output[1:])
        output.sample = self._apply(output.sample)
        return output

    def _apply(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out = self.module(hidden_states, num_frames=1)
        return getattr(out, "sample", out)
