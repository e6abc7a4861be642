"""The ReferenceNet mechanism as diffusers attention processors.

The reference UNet runs once on the source latent; `RecordSelfAttentionInput` keeps the input of each of its
transformer blocks' self-attention (the block's `norm1` output). The denoising UNet's `ReferenceSelfAttention`
appends those tokens to its own self-attention keys and values, for the conditional rows only. Because key and
value projections are linear per token, the reference part of K and V is projected once per appearance
(`project_reference_tokens`) instead of at every step: the result is the same attention.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F


def self_attention_modules(unet) -> dict[str, torch.nn.Module]:
    """Every transformer block's self-attention (`...attn1`), keyed by module path.

    The path pairs a denoising block with its reference twin: both UNets have the same layout.
    """
    return {name: module for name, module in unet.named_modules() if name.endswith(".attn1")}


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, tokens, width = x.shape
    return x.view(batch, tokens, heads, width // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, tokens, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * head_dim)


def _check_plain_self_attention(attn) -> None:
    # The released SD1.5-style blocks use none of these options; refuse rather than silently ignore them.
    if attn.spatial_norm is not None or attn.group_norm is not None or attn.norm_q is not None or attn.residual_connection:
        raise NotImplementedError("reference attention supports plain SD1.5 self-attention blocks only")


def _query_key_value(attn, hidden_states):
    _check_plain_self_attention(attn)
    return tuple(_split_heads(proj(hidden_states), attn.heads) for proj in (attn.to_q, attn.to_k, attn.to_v))


def _output(attn, attended: torch.Tensor, dtype) -> torch.Tensor:
    return attn.to_out[1](attn.to_out[0](_merge_heads(attended).to(dtype)))


class RecordSelfAttentionInput:
    """Processor for the reference UNet: keeps the input tokens, then attends as usual."""

    def __init__(self, name: str, store: dict):
        self.name = name
        self.store = store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        self.store[self.name] = hidden_states
        q, k, v = _query_key_value(attn, hidden_states)
        return _output(attn, F.scaled_dot_product_attention(q, k, v, scale=attn.scale), q.dtype)


@dataclass
class ReferenceContext:
    """What the denoising UNet's processors read during one forward pass.

    Rows `[:n_unconditional]` of the batch are unconditional (no reference tokens); the rest are conditional and
    row `i` of those uses row `i` of each reference key/value tensor (a single row broadcasts to all).
    """

    keys_values: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    n_unconditional: int = 0
    pose_features: torch.Tensor | None = None
    calls: int = 0  # processor calls in the current pass: one per self-attention block, checked after each step


class ReferenceSelfAttention:
    """Processor for the denoising UNet: self-attention over its own tokens plus the reference tokens."""

    def __init__(self, name: str, context: ReferenceContext):
        self.name = name
        self.context = context

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        self.context.calls += 1
        q, k, v = _query_key_value(attn, hidden_states)
        reference = self.context.keys_values.get(self.name)
        if reference is None:
            out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
        else:
            n_u = self.context.n_unconditional
            ref_k, ref_v = reference
            n_c = q.shape[0] - n_u
            cond_k = torch.cat([k[n_u:], ref_k.expand(n_c, -1, -1, -1)], dim=2)
            cond_v = torch.cat([v[n_u:], ref_v.expand(n_c, -1, -1, -1)], dim=2)
            out = F.scaled_dot_product_attention(q[n_u:], cond_k, cond_v, scale=attn.scale)
            if n_u:
                out_u = F.scaled_dot_product_attention(q[:n_u], k[:n_u], v[:n_u], scale=attn.scale)
                out = torch.cat([out_u, out], dim=0)
        return _output(attn, out, q.dtype)


def project_reference_tokens(
    denoising_attention: dict[str, torch.nn.Module], recorded: dict[str, torch.Tensor]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Project the recorded reference tokens with the denoising blocks' own key/value weights, once."""
    if recorded.keys() != denoising_attention.keys():
        missing = sorted(set(denoising_attention) - set(recorded))[:3]
        extra = sorted(set(recorded) - set(denoising_attention))[:3]
        raise ValueError(f"reference and denoising UNets differ in layout (missing {missing}, extra {extra})")
    projected = {}
    for name, tokens in recorded.items():
        attn = denoising_attention[name]
        projected[name] = (
            _split_heads(attn.to_k(tokens), attn.heads).contiguous(),
            _split_heads(attn.to_v(tokens), attn.heads).contiguous(),
        )
    return projected
