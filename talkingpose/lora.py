"""LoRA adapters for the TalkingPose networks: the file format, loading onto a model, strength.

An adapter file is one `.safetensors`:

- `denoising_unet.<module>.lora_A.weight` / `.lora_B.weight` and the same under `reference_unet.`: peft LoRA
  weights of the attention projections (to_q, to_k, to_v, to_out.0) that fine-tuning adapted;
- optionally `pose_guider.<parameter>`: a fully fine-tuned pose guider;
- metadata `talkingpose_lora` (JSON): format, rank, alpha, the base model's fingerprint and a probe of its
  weights, the training recipe and settings, the clip it was trained on, steps and a loss summary.

Adapters are injected with peft (diffusers' PEFT integration) next to the base weights, which stay untouched:
strength s scales the low-rank update (`W x + s·(alpha/r)·B A x`), and strength 0 — or no adapter — switches the
adapters off, so the base model's exact output comes back. Several adapters can sit on one model (ComfyUI may
hold several LoRA'd variants of one loaded model); `activate` selects the ones a variant uses right before it
runs. While adapters are active, `networks.fingerprint` carries their identity and strengths, so appearances
and sampler states made with one variant are not used with another.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .errors import TalkingPoseError

FORMAT = "talkingpose-lora/1"
METADATA_KEY = "talkingpose_lora"
UNETS = ("denoising_unet", "reference_unet")
PROJECTIONS = (".to_q", ".to_k", ".to_v", ".to_out.0")
REFERENCE_UNTRAINED = "up_blocks.3."  # the official recipe leaves this part of the reference UNet frozen
PROBE_VALUES = 64


def target_modules(networks) -> dict[str, list[str]]:
    """The attention projections LoRA adapts, per UNet: every one of the denoising UNet; those of the reference
    UNet outside `up_blocks.3` — what the official training trains, restricted to attention."""
    targets = {}
    for part in UNETS:
        unet = getattr(networks, part)
        names = []
        for name, module in unet.named_modules():
            if not name.endswith(PROJECTIONS) or "lora_" in name or ".base_layer" in name:
                continue
            if part == "reference_unet" and name.startswith(REFERENCE_UNTRAINED):
                continue
            names.append(name)
        targets[part] = sorted(names)
    return targets


def lora_config(rank: int, alpha: float, modules: list[str]):
    from peft import LoraConfig

    # Exact module paths, no dropout (fine-tuning and resuming stay deterministic), B starts at zero.
    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=modules, lora_dropout=0.0, init_lora_weights=True)


def _base_layer(unet, name: str) -> torch.nn.Linear:
    module = unet.get_submodule(name)
    return getattr(module, "base_layer", module)


def base_probe(networks, targets: dict[str, list[str]]) -> dict[str, list[float]]:
    """A few base weights the adapter modifies: identifies the base model across precisions (fp32/fp16/bf16
    copies of one model agree to ~3 digits; different models do not agree at all)."""
    probe = {}
    for part in UNETS:
        unet = getattr(networks, part)
        for name in targets[part][:2]:
            weight = _base_layer(unet, name).weight.detach().flatten()[:PROBE_VALUES]
            probe[f"{part}.{name}"] = [float(v) for v in weight.float().cpu()]
    return probe


@dataclass
class LoraAdapter:
    """An adapter as read from (or about to be written to) its file."""

    rank: int
    alpha: float
    unet_weights: dict[str, dict[str, torch.Tensor]]  # part -> peft state dict (module.lora_A.weight, …)
    pose_guider: dict[str, torch.Tensor] | None = None  # fully fine-tuned pose guider, if trained
    info: dict = field(default_factory=dict)  # base_fingerprint, base_probe, recipe, settings, clip, steps, loss
    path: Path | None = None

    @property
    def targets(self) -> dict[str, list[str]]:
        return {part: sorted({k.rsplit(".lora_", 1)[0] for k in weights}) for part, weights in self.unet_weights.items()}

    @property
    def id(self) -> str:
        """A content hash: the same adapter gets the same id wherever its file lies."""
        digest = hashlib.sha256(f"{self.rank}/{self.alpha}".encode())
        for name, tensor in sorted(self._tensors().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    @property
    def name(self) -> str:
        return f"talkingpose_lora_{self.id}"

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"{part}.{k}": v for part, weights in self.unet_weights.items() for k, v in weights.items()}
        for k, v in (self.pose_guider or {}).items():
            tensors[f"pose_guider.{k}"] = v
        return tensors

    def save(self, path: Path, replace: bool = True) -> Path:
        """Write through `durable` (a crash or a full disk never leaves a half-written adapter, under the final
        name or any other); `replace=False` refuses an existing file with FileExistsError."""
        from safetensors.torch import save

        from . import durable

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "rank": self.rank, "alpha": self.alpha, **self.info}
        tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self._tensors().items()}
        durable.write_bytes(path, save(tensors, metadata={METADATA_KEY: json.dumps(meta)}), replace)
        self.path = path
        return path


def read_adapter(path) -> LoraAdapter:
    """Read and check an adapter file (format, rank layout); no model needed."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise TalkingPoseError(f"LoRA file {path} does not exist.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta_text = (f.metadata() or {}).get(METADATA_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for damaged files
        raise TalkingPoseError(f"{path} is not a readable safetensors file ({exc}).") from exc
    if meta_text is None:
        raise TalkingPoseError(
            f"{path} is not a TalkingPose LoRA (no '{METADATA_KEY}' metadata). Stable Diffusion or other LoRAs do not "
            "fit; make one with `finetune` or the Train TalkingPose LoRA node."
        )
    meta = json.loads(meta_text)
    if meta.get("format") != FORMAT:
        raise TalkingPoseError(f"{path} is a TalkingPose LoRA of format {meta.get('format')!r}; this version reads {FORMAT!r}.")
    rank, alpha = int(meta.pop("rank")), float(meta.pop("alpha"))
    meta.pop("format")
    unet_weights = {part: {} for part in UNETS}
    pose_guider = {}
    for key, tensor in tensors.items():
        part, _, rest = key.partition(".")
        if part in unet_weights and rest.endswith((".lora_A.weight", ".lora_B.weight")):
            unet_weights[part][rest] = tensor
        elif part == "pose_guider":
            pose_guider[rest] = tensor
        else:
            raise TalkingPoseError(f"{path}: unexpected tensor '{key}'; the file is damaged or not a TalkingPose LoRA.")
    for part, weights in unet_weights.items():
        for key, tensor in weights.items():
            rank_axis = 0 if ".lora_A." in key else 1
            if tensor.ndim != 2 or tensor.shape[rank_axis] != rank:
                raise TalkingPoseError(
                    f"{path}: {part}.{key} has shape {tuple(tensor.shape)}, which does not match the stated rank {rank}; "
                    "the file is damaged."
                )
        pairs = {k.rsplit(".lora_", 1)[0] for k in weights}
        unpaired = [m for m in pairs if f"{m}.lora_A.weight" not in weights or f"{m}.lora_B.weight" not in weights]
        if unpaired:
            raise TalkingPoseError(f"{path}: {part}.{unpaired[0]} has only one of its two LoRA matrices; the file is damaged.")
    return LoraAdapter(rank, alpha, unet_weights, pose_guider or None, meta, path)


# ------------------------------------------------------------------------------------------------ model side
def check_fits(adapter: LoraAdapter, networks) -> None:
    """Refuse, with what to do, an adapter made for another base model or of another layout."""
    where = adapter.path or "The LoRA"
    problems = []
    for part, weights in adapter.unet_weights.items():
        unet = getattr(networks, part)
        for module in sorted({k.rsplit(".lora_", 1)[0] for k in weights}):
            try:
                layer = _base_layer(unet, module)
            except AttributeError:
                problems.append(f"{part}.{module} does not exist in this model")
                continue
            a, b = weights[f"{module}.lora_A.weight"], weights[f"{module}.lora_B.weight"]
            if not isinstance(layer, torch.nn.Linear) or a.shape[1] != layer.in_features or b.shape[0] != layer.out_features:
                problems.append(f"{part}.{module} is {tuple(getattr(layer, 'weight', torch.empty(0)).shape)} here, "
                                f"the LoRA expects {(b.shape[0], a.shape[1])}")
    if adapter.pose_guider is not None:
        own = dict(networks.pose_guider.named_parameters())
        for key, tensor in adapter.pose_guider.items():
            if key not in own or own[key].shape != tensor.shape:
                problems.append(f"pose_guider.{key} does not fit this model's pose guider")
    if problems:
        raise TalkingPoseError(
            f"{where} does not fit this TalkingPose model's layout ({len(problems)} problems; first: {problems[0]}). "
            "It was made for a model of another architecture or size."
        )
    expected = adapter.info.get("base_fingerprint")
    if not expected or expected == networks.base_fingerprint:
        return
    probe = adapter.info.get("base_probe") or {}
    same = bool(probe)
    for key, values in probe.items():
        part, _, module = key.partition(".")
        ours = _base_layer(getattr(networks, part), module).weight.detach().flatten()[:len(values)].float().cpu()
        theirs = torch.tensor(values)
        if ours.shape != theirs.shape or (ours - theirs).abs().max() > 1e-2 * theirs.abs().max().clamp(min=1e-6):
            same = False
            break
    if not same:
        raise TalkingPoseError(
            f"{where} was fine-tuned on another TalkingPose model (fingerprint {expected}"
            f"{', ' + adapter.info['base_source'] if adapter.info.get('base_source') else ''}); the loaded model is "
            f"{networks.base_fingerprint} ({networks.source}). Load the model it was made for, or fine-tune again on this one."
        )


def _registry(networks) -> dict:
    """What this module keeps on the networks object: attached adapters and the base pose guider."""
    registry = getattr(networks, "_lora_registry", None)
    if registry is None:
        registry = {"adapters": {}, "pose_guider_base": None}
        networks._lora_registry = registry
    return registry


# peft would store the adapters' weights in fp8 too and multiply in it, which PyTorch cannot do.
FP8_REFUSAL = ("A LoRA adapter cannot run on weights stored in fp8: load the model with weight storage 'as "
               "precision' (without --weights-fp8) to use a LoRA.")


def attach(networks, adapter: LoraAdapter) -> str:
    """Inject the adapter's weights into the networks (once per adapter); returns its adapter name. The adapter
    stays inactive until `activate` selects it."""
    from peft.utils import set_peft_model_state_dict

    if networks.weights_in_fp8:
        raise TalkingPoseError(FP8_REFUSAL)
    registry = _registry(networks)
    name = adapter.name
    if name in registry["adapters"]:
        return name
    check_fits(adapter, networks)
    for part, weights in adapter.unet_weights.items():
        if not weights:
            continue
        unet = getattr(networks, part)
        unet.add_adapter(lora_config(adapter.rank, adapter.alpha, adapter.targets[part]), adapter_name=name)
        result = set_peft_model_state_dict(unet, weights, adapter_name=name)
        if getattr(result, "unexpected_keys", None):
            raise TalkingPoseError(f"{adapter.path}: {len(result.unexpected_keys)} LoRA tensors did not load "
                                   f"(first: {result.unexpected_keys[0]}).")
        unet.requires_grad_(False)
    if adapter.pose_guider is not None and registry["pose_guider_base"] is None:
        registry["pose_guider_base"] = {k: v.detach().clone() for k, v in networks.pose_guider.state_dict().items()}
    registry["adapters"][name] = adapter
    _activate_unets(networks, getattr(networks, "lora_stack", ()))  # adding made it active; restore the selection
    return name


def _activate_unets(networks, stack) -> None:
    for part in UNETS:
        unet = getattr(networks, part)
        if not getattr(unet, "peft_config", None):
            continue
        chosen = [(adapter.name, strength) for adapter, strength in stack
                  if strength != 0 and adapter.name in unet.peft_config]
        if chosen:
            unet.enable_adapters()
            unet.set_adapters([n for n, _ in chosen], weights=[s for _, s in chosen])
        else:
            unet.disable_adapters()


@torch.no_grad()
def _activate_pose_guider(networks, stack) -> None:
    base = _registry(networks)["pose_guider_base"]
    if base is None:
        return
    params = dict(networks.pose_guider.named_parameters())
    for key, weight in base.items():
        value = weight.to(params[key].device, torch.float32)
        for adapter, strength in stack:
            if adapter.pose_guider is not None and strength != 0:
                value = value + strength * (adapter.pose_guider[key].to(value.device) - weight.to(value.device, torch.float32))
        params[key].copy_(value)


def activate(networks, stack: Sequence[tuple[LoraAdapter, float]]) -> None:
    """Make exactly these (adapter, strength) pairs active, attaching adapters not yet attached; an empty stack
    (or strengths of 0) gives the base model."""
    stack = tuple((adapter, float(strength)) for adapter, strength in stack)
    for adapter, _ in stack:
        attach(networks, adapter)
    networks.lora_stack = stack
    _activate_unets(networks, stack)
    _activate_pose_guider(networks, stack)
    networks.lora_signature = stack_signature(stack)


def stack_signature(stack) -> str:
    """'' for the base model, else a short id of the active adapters and their strengths."""
    active = sorted(f"{adapter.id}@{strength!r}" for adapter, strength in stack if strength != 0)
    return hashlib.sha256("|".join(active).encode()).hexdigest()[:12] if active else ""


# Strength scales the trained low-rank update linearly (1: as trained, 0: the base model, negative: away from the
# person). Beyond ±2 the update is more than twice what training found, which nothing was trained or tested for;
# ComfyUI's min/max check lets NaN through and the command line takes any float, so both are checked here.
STRENGTH_RANGE = (-2.0, 2.0)


def check_strength(strength) -> float:
    """`strength` as a float if it is a finite number within STRENGTH_RANGE; else a sentence."""
    low, high = STRENGTH_RANGE
    try:
        value = float(strength)
    except (TypeError, ValueError):
        value = float("nan")
    if value != value:
        raise TalkingPoseError("The LoRA strength is not a number; use e.g. 1.0 (trained), 0.0 (base model).")
    if not low <= value <= high:
        raise TalkingPoseError(f"The LoRA strength is {value:g}; use a value from {low:g} to {high:g} (1.0: as "
                               "trained, 0.0: the base model).")
    return value


def apply_lora(networks, path, strength: float = 1.0) -> LoraAdapter:
    """Read an adapter file and make it the model's one active adapter at `strength`."""
    strength = check_strength(strength)
    adapter = read_adapter(path)
    activate(networks, [(adapter, strength)])
    return adapter
