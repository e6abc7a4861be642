"""The ReferenceNet mechanism as diffusers attention processors.

The reference UNet runs once on the source latent; `RecordSelfAttentionInput` keeps the input of each of its
transformer blocks' self-attention (the block's `norm1` output). The denoising UNet's `ReferenceSelfAttention`
appends those tokens to its own self-attention keys and values, for the conditional rows only. Because key and
value projections are linear per token, the reference part of K and V is projected once per appearance
(`project_reference_tokens`) instead of at every step: the result is the same attention.

Inside a prepared guided step (`guided_step.py`) the same processors take a shorter road with constants made once
per video: Q, K and V come from one GEMM with the three weights concatenated, and the conditional rows' keys and
values are written next to the reference ones in a buffer whose reference part was filled once. The denoising
UNet's cross-attention (`ConstantCrossAttention`) attends to one context token, the CLIP image embedding (zeros in
the unconditional rows): a softmax over one key is exactly 1, so every query's output is `to_out(to_v(context))`
whatever the queries are — the same for every step of the video, so it is computed once and kept.
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


def fused_query_key_value_weight(attn) -> torch.Tensor | None:
    """Q, K and V weights as one [3·inner, in] matrix in their storage dtype, or None where they cannot be fused:
    projections adapted by LoRA (peft wraps them; their adapters must keep running) or with biases (the released
    blocks have none)."""
    projections = (attn.to_q, attn.to_k, attn.to_v)
    if any(type(p) is not torch.nn.Linear or p.bias is not None for p in projections):
        return None
    return torch.cat([p.weight.detach() for p in projections])


@dataclass
class PreparedSelfAttention:
    """One self-attention block's constants for a prepared step (see `guided_step.GuidedStep`)."""

    qkv_weight: torch.Tensor | None  # fused_query_key_value_weight, or None: the three projections run
    n_unconditional: int
    reference: tuple[torch.Tensor, torch.Tensor] | None  # the block's projected reference keys/values
    # [2 (keys, values), conditional rows, heads, tokens + reference tokens, head_dim]: this step's, then the
    # reference's (written once, at the first pass, where the token count is known). Head-major, so the attention
    # reads contiguous keys and values.
    keys_values: torch.Tensor | None = None

    def project(self, attn, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.qkv_weight is not None:
            # Kept in the weights' storage dtype: fp8 storage (`store_weights_in_fp8`) casts it per use, as
            # diffusers casts every other layer's weights; otherwise the cast is a no-op.
            return F.linear(hidden_states, self.qkv_weight.to(hidden_states.dtype))
        return torch.cat([attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)], dim=-1)

    def buffer(self, tokens: int, qkv: torch.Tensor) -> torch.Tensor:
        if self.keys_values is None:
            ref_k, ref_v = self.reference
            _, heads, ref_tokens, head_dim = ref_k.shape
            n_c = qkv.shape[0] - self.n_unconditional
            buffer = qkv.new_empty((2, n_c, heads, tokens + ref_tokens, head_dim))
            buffer[:, :, :, tokens:] = torch.stack([ref_k.expand(n_c, -1, -1, -1), ref_v.expand(n_c, -1, -1, -1)])
            self.keys_values = buffer
        return self.keys_values


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
    # Inside a prepared step only: per-block constants of the video (self-attention by attn1 path, cross-attention
    # outputs by attn2 path, kept at the first pass); None outside.
    prepared: dict[str, PreparedSelfAttention] | None = None
    cross_attention: dict[str, torch.Tensor] | None = None


class ReferenceSelfAttention:
    """Processor for the denoising UNet: self-attention over its own tokens plus the reference tokens."""

    def __init__(self, name: str, context: ReferenceContext):
        self.name = name
        self.context = context

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        self.context.calls += 1
        prepared = self.context.prepared
        if prepared is not None:
            prepared = prepared[self.name]
            return self._prepared(attn, hidden_states, prepared)
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

    @staticmethod
    def _prepared(attn, hidden_states, prepared: PreparedSelfAttention) -> torch.Tensor:
        _check_plain_self_attention(attn)
        qkv = prepared.project(attn, hidden_states)
        inner = qkv.shape[-1] // 3
        n_u, tokens = prepared.n_unconditional, hidden_states.shape[1]

        def heads(x):  # a view: [rows, tokens, inner] -> [rows, heads, tokens, head_dim]
            return x.unflatten(-1, (attn.heads, -1)).transpose(1, 2)

        def attend(q, k, v):  # merged back to [rows, tokens, inner]; a view where SDPA returns token-major output
            return _merge_heads(F.scaled_dot_product_attention(heads(q), heads(k), heads(v), scale=attn.scale))

        if prepared.reference is None:
            out = attend(qkv[..., :inner], qkv[..., inner:2 * inner], qkv[..., 2 * inner:])
        else:
            keys_values = prepared.buffer(tokens, qkv)
            # this step's keys and values of the conditional rows, [rows, tokens, 2·inner] -> [2, rows, heads, tokens, d]
            keys_values[:, :, :, :tokens] = qkv[n_u:, :, inner:].unflatten(-1, (2, attn.heads, -1)).permute(2, 0, 3, 1, 4)
            out = _merge_heads(F.scaled_dot_product_attention(heads(qkv[n_u:, :, :inner]), keys_values[0], keys_values[1],
                                                              scale=attn.scale))
            if n_u:
                u = qkv[:n_u]
                out = torch.cat([attend(u[..., :inner], u[..., inner:2 * inner], u[..., 2 * inner:]), out])
        return attn.to_out[1](attn.to_out[0](out.to(hidden_states.dtype)))


class ConstantCrossAttention:
    """Processor for the denoising UNet's cross-attention. Its context is one token, so its output does not depend
    on the queries: inside a prepared step, the first pass runs diffusers' own processor and keeps the output
    (`ReferenceContext.cross_attention`), and later passes of the video return it. Elsewhere diffusers' processor
    runs as usual."""

    def __init__(self, name: str, context: ReferenceContext):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.name = name
        self.context = context
        self.default = AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        constants = self.context.cross_attention
        if constants is not None and self.name in constants:
            return constants[self.name]
        out = self.default(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        if constants is not None and encoder_hidden_states is not None and encoder_hidden_states.shape[1] == 1 and attention_mask is None:
            constants[self.name] = out
        return out


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
