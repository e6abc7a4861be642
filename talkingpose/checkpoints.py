"""Reading, checking and converting TalkingPose checkpoints.

Accepted layouts, all read by the same code:
- a folder with `denoising_unet`, `reference_unet` and `pose_guider` as `.pth` (the released files: plain state
  dicts from `torch.save`) or `.safetensors`;
- one combined `.safetensors` whose keys carry the part name as prefix (`denoising_unet.conv_in.weight`, …),
  which is what `convert_checkpoint` writes.

Motion modules in the denoising UNet (AnimateDiff-style, as the official inference loads them) are applied at
one frame when their weights do anything, dropped when their output projection is zero (`motion_modules.py`).

The UNet configuration is read off the tensors' shapes, so SD1.5-size weights and tiny test weights take one
path. `.pth` files are loaded with `weights_only=True`: nothing is ever unpickled beyond tensors.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from . import durable, motion_modules
from .errors import TalkingPoseError

log = logging.getLogger("TalkingPose")

PARTS = ("denoising_unet", "reference_unet", "pose_guider")
WEIGHT_SUFFIXES = (".safetensors", ".pth")
DOWNLOAD_HINT = (
    "Download denoising_unet.pth, reference_unet.pth and pose_guider.pth from the Hugging Face repository "
    "arjavanmardi/TalkingPose (folder weights/) into one folder, e.g. models/talkingpose/TalkingPose/, "
    "or convert them to a single fp16 file with `python cli.py convert`."
)
# Keys a released reference UNet lacks (its output head is never used); absent or present, they are dropped.
REFERENCE_UNUSED_PREFIXES = ("conv_norm_out.", "conv_out.")
# SD1.5's UNet uses 8 attention heads in every block; the head count cannot be read off the weights.
SD15_ATTENTION_HEADS = 8


# --------------------------------------------------------------------------------------------------- reading
def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of one weight file, never unpickling anything but tensors."""
    path = Path(path)
    if not path.is_file():
        raise TalkingPoseError(f"Weight file {path} does not exist. {DOWNLOAD_HINT}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises several types for damaged files
            raise TalkingPoseError(f"{path} is not a readable safetensors file ({exc}). Download it again.") from exc
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as exc:
        raise TalkingPoseError(
            f"{path} could not be loaded as a plain tensor checkpoint ({type(exc).__name__}: {exc}). "
            "Only state dicts of tensors are accepted; files that need arbitrary unpickling are refused. "
            "Download the released file again or convert it to .safetensors."
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TalkingPoseError(f"{path} does not hold a state dict of tensors.")
    return state


@dataclass
class CheckpointFiles:
    """Where each part's tensors come from."""

    sources: dict[str, Path]  # part -> file
    combined: bool

    def describe(self) -> str:
        if self.combined:
            return str(next(iter(self.sources.values())))
        return ", ".join(f"{part}: {path.name}" for part, path in self.sources.items())


def locate_checkpoint(path: Path) -> CheckpointFiles:
    """Resolve a folder of released files or a combined safetensors into per-part files."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise TalkingPoseError(
                f"{path} is a single file but not a combined .safetensors. Point at the folder that holds "
                "denoising_unet.pth, reference_unet.pth and pose_guider.pth instead."
            )
        return CheckpointFiles({part: path for part in PARTS}, combined=True)
    if not path.is_dir():
        raise TalkingPoseError(f"TalkingPose model {path} does not exist. {DOWNLOAD_HINT}")
    sources, missing = {}, []
    for part in PARTS:
        found = [path / f"{part}{suffix}" for suffix in WEIGHT_SUFFIXES if (path / f"{part}{suffix}").is_file()]
        if found:
            sources[part] = found[0]
        else:
            missing.append(f"{part}.pth")
    if missing:
        raise TalkingPoseError(f"TalkingPose model folder {path} is missing {', '.join(missing)}. {DOWNLOAD_HINT}")
    return CheckpointFiles(sources, combined=False)


def read_parts(files: CheckpointFiles) -> dict[str, dict[str, torch.Tensor]]:
    if files.combined:
        path = next(iter(files.sources.values()))
        everything = read_state_dict(path)
        parts = {part: {} for part in PARTS}
        for key, tensor in everything.items():
            part, _, rest = key.partition(".")
            if part not in parts:
                raise TalkingPoseError(
                    f"{path}: key '{key}' does not start with one of {', '.join(PARTS)}; this is not a combined "
                    "TalkingPose file. Use the folder of released files or `python cli.py convert`."
                )
            parts[part][rest] = tensor
        for part, state in parts.items():
            if not state:
                raise TalkingPoseError(f"{path}: the combined file has no '{part}.*' tensors.")
        return parts
    return {part: read_state_dict(p) for part, p in files.sources.items()}


def list_models(folders: list[Path], include_incomplete: bool = False) -> dict[str, Path]:
    """Installed TalkingPose models under the given folders: sub-folders with the three released files
    (name ends in '/') and combined `.safetensors` files; the first folder wins on equal names.

    `include_incomplete` also lists folders holding only some of the three files, so that choosing one names
    what is missing (the loader node lists them; the command line picks complete ones only)."""
    found: dict[str, Path] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        candidates = [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]
        for candidate in candidates:
            present = [any((candidate / f"{part}{s}").is_file() for s in WEIGHT_SUFFIXES) for part in PARTS]
            if all(present) or (include_incomplete and any(present)):
                name = "./" if candidate == folder else candidate.relative_to(folder).as_posix() + "/"
                found.setdefault(name, candidate)
        for file in sorted(folder.rglob("*.safetensors")):
            if file.stem not in PARTS:
                found.setdefault(file.relative_to(folder).as_posix(), file)
    return found


def count_parameters(path: Path) -> int:
    """Number of weights in a model folder or combined file, read from the files' headers (nothing is loaded)."""
    from safetensors import safe_open

    total = 0
    for file in set(locate_checkpoint(path).sources.values()):
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    shape = f.get_slice(key).get_shape()
                    total += int(torch.Size(shape).numel())
        else:
            total += sum(t.numel() for t in read_state_dict(file).values())  # memory-mapped: no tensor data is read
    return total


# --------------------------------------------------------------------------------------------------- cleaning
def separate_motion_modules(state: dict[str, torch.Tensor], source: str, part: str):
    """(the UNet's own tensors, {motion module prefix: its tensors} for the modules that change the output).

    Zero modules are dropped. The reference UNet is a 2D UNet loaded strictly by the official code, so active
    motion modules there are refused: no official pipeline would run them."""
    own, modules = motion_modules.split(state, source)
    active = motion_modules.keep_active(modules, source)
    if active and part != "denoising_unet":
        raise TalkingPoseError(
            f"{source}: the {part} holds {len(active)} motion modules with non-zero weights; the official "
            "TalkingPose pipeline builds that network without motion modules, so this file is not a TalkingPose "
            f"{part}. {DOWNLOAD_HINT}"
        )
    return own, active


def _looks_like_full_sd_checkpoint(state) -> bool:
    return any(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")) for k in state)


# --------------------------------------------------------------------------------------------------- configs
def _indices(state, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})


def _uniform(values: list[int]):
    return values[0] if len(set(values)) == 1 else tuple(values)


def infer_unet_config(state: dict[str, torch.Tensor], attention_heads: int = SD15_ATTENTION_HEADS) -> dict:
    """`UNet2DConditionModel` arguments read off a state dict's shapes."""
    down = _indices(state, "down_blocks.")
    up = _indices(state, "up_blocks.")
    block_out = [state[f"down_blocks.{i}.resnets.0.conv2.weight"].shape[0] for i in down]
    has_attn_down = [any(k.startswith(f"down_blocks.{i}.attentions.") for k in state) for i in down]
    has_attn_up = [any(k.startswith(f"up_blocks.{i}.attentions.") for k in state) for i in up]
    layers = [len(_indices(state, f"down_blocks.{i}.resnets.")) for i in down]
    depth = [
        len(_indices(state, f"down_blocks.{i}.attentions.0.transformer_blocks.")) if has_attn_down[n] else 1
        for n, i in enumerate(down)
    ]
    cross_keys = sorted(k for k in state if k.endswith("attn2.to_k.weight"))
    proj_in = sorted(k for k in state if k.endswith(".proj_in.weight"))
    in_channels = state["conv_in.weight"].shape[1]
    return {
        "in_channels": in_channels,
        "out_channels": state["conv_out.weight"].shape[0] if "conv_out.weight" in state else in_channels,
        "down_block_types": tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in has_attn_down),
        "up_block_types": tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in has_attn_up),
        "mid_block_type": "UNetMidBlock2DCrossAttn"
        if any(k.startswith("mid_block.attentions.") for k in state)
        else "UNetMidBlock2D",
        "block_out_channels": tuple(block_out),
        "layers_per_block": _uniform(layers),
        "transformer_layers_per_block": _uniform(depth),
        "cross_attention_dim": state[cross_keys[0]].shape[1] if cross_keys else block_out[-1],
        "use_linear_projection": bool(proj_in) and state[proj_in[0]].ndim == 2,
        "attention_head_dim": attention_heads,
    }


def _compare_keys(source: str, part: str, state: dict, expected: dict[str, torch.Size]) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    if not (missing or unexpected or wrong):
        return
    lines = [f"{source} does not fit the TalkingPose {part}:"]
    if missing:
        lines.append(f"  {len(missing)} missing tensors, first: " + ", ".join(f"{k} {tuple(expected[k])}" for k in missing[:4]))
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected tensors, first: " + ", ".join(f"{k} {tuple(state[k].shape)}" for k in unexpected[:4]))
    if wrong:
        lines.append(
            f"  {len(wrong)} tensors of the wrong shape, first: "
            + ", ".join(f"{k} is {tuple(state[k].shape)}, expected {tuple(expected[k])}" for k in wrong[:4])
        )
    lines.append(f"  Check that the file is the released {part} file. {DOWNLOAD_HINT}")
    raise TalkingPoseError("\n".join(lines))


def _check_values(source: str, part: str, state: dict) -> None:
    """Weights must be finite floating-point numbers: integer tensors would not load, NaN or infinite ones would
    load and render black frames."""
    not_float = [k for k, v in state.items() if not v.is_floating_point()]
    if not_float:
        raise TalkingPoseError(
            f"{source}: {len(not_float)} tensors of the {part} are not floating-point weights (first: {not_float[0]} "
            f"is {state[not_float[0]].dtype}). The file is damaged or holds something else. {DOWNLOAD_HINT}"
        )
    not_finite = [k for k, v in state.items() if not torch.isfinite(v).all()]
    if not_finite:
        raise TalkingPoseError(
            f"{source}: {len(not_finite)} tensors of the {part} hold NaN or infinite values (first: {not_finite[0]}); "
            f"they would render black frames. The file is damaged; download it again. {DOWNLOAD_HINT}"
        )


# --------------------------------------------------------------------------------------------------- building
def _materialise(module: torch.nn.Module, state: dict, source: str, part: str, dtype) -> torch.nn.Module:
    expected = {k: v.shape for k, v in module.state_dict().items()}
    _compare_keys(source, part, state, expected)
    _check_values(source, part, state)
    module.load_state_dict(state, strict=True, assign=True)
    leftovers = [name for name, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if leftovers:
        raise RuntimeError(f"{part}: tensors left uninitialised after loading: {leftovers[:3]}")
    # nn.Module.to, not diffusers' override, which warns about fp32-pinned modules SD1.5 UNets do not have.
    return torch.nn.Module.to(module, dtype=dtype).eval().requires_grad_(False)


def build_unet(state: dict, source: str, part: str, dtype, attention_heads: int = SD15_ATTENTION_HEADS):
    from diffusers import UNet2DConditionModel

    if _looks_like_full_sd_checkpoint(state):
        raise TalkingPoseError(
            f"{source} is a full Stable Diffusion checkpoint (model.diffusion_model.* keys), not the TalkingPose "
            f"{part}. {DOWNLOAD_HINT}"
        )
    try:
        config = infer_unet_config(state, attention_heads)
    except (KeyError, IndexError) as exc:
        raise TalkingPoseError(
            f"{source} is not a TalkingPose {part} checkpoint: it lacks the tensor {exc} of an SD1.5 UNet. {DOWNLOAD_HINT}"
        ) from exc
    try:
        with torch.device("meta"):
            unet = UNet2DConditionModel(**config)
    except Exception as exc:
        raise TalkingPoseError(f"{source}: the {part} tensors describe no buildable UNet ({exc}).") from exc
    if part == "reference_unet":
        # Only its transformer blocks' inputs are used; the output head is absent from the released file.
        unet.conv_norm_out = None
        unet.conv_out = torch.nn.Identity()
        state = {k: v for k, v in state.items() if not k.startswith(REFERENCE_UNUSED_PREFIXES)}
    return _materialise(unet, state, source, part, dtype), config


def build_pose_guider(state: dict, source: str, dtype):
    from .pose_guider import PoseGuider

    try:
        config = PoseGuider.config_from_state_dict(state)
        with torch.device("meta"):
            guider = PoseGuider(**config)
    except (KeyError, IndexError, TypeError) as exc:
        raise TalkingPoseError(f"{source} is not a TalkingPose pose guider checkpoint (missing {exc}). {DOWNLOAD_HINT}") from exc
    return _materialise(guider, state, source, "pose_guider", dtype)


FINGERPRINT_SAMPLES = 256


def fingerprint(parts: dict[str, dict[str, torch.Tensor]]) -> str:
    """A short id of the weights, so appearances and sampler states are matched with the model that made them.

    Every tensor contributes its name, shape and 256 values spread over it, rounded to fp16: a fine-tune that
    changed any layer gets another id, while a float32 checkpoint and its fp16 conversion share one."""
    digest = hashlib.sha256()
    for part in PARTS:
        state = parts[part]
        for key in sorted(state):
            flat = state[key].detach().reshape(-1)
            step = max(1, flat.numel() // FINGERPRINT_SAMPLES)
            sample = flat[::step][:FINGERPRINT_SAMPLES].to(torch.float16).contiguous()
            digest.update(f"{part}.{key}{tuple(state[key].shape)}".encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def load_networks(path: Path, dtype=torch.float32, attention_heads: int = SD15_ATTENTION_HEADS):
    """Build the three TalkingPose networks from a folder or combined file (on the CPU, in `dtype`)."""
    from .networks import TalkingPoseNetworks

    files = locate_checkpoint(path)
    parts = read_parts(files)
    motion = {}
    for part in ("denoising_unet", "reference_unet"):
        parts[part], active = separate_motion_modules(parts[part], str(files.sources[part]), part)
        motion.update(active)
    fp = fingerprint({**parts, "denoising_unet": {**parts["denoising_unet"], **_flatten(motion)}})
    denoising, config = build_unet(parts["denoising_unet"], str(files.sources["denoising_unet"]), "denoising_unet", dtype, attention_heads)
    reference, ref_config = build_unet(parts["reference_unet"], str(files.sources["reference_unet"]), "reference_unet", dtype, attention_heads)
    differing = [k for k in config if k != "out_channels" and config[k] != ref_config[k]]
    if differing:
        raise TalkingPoseError(
            f"The reference UNet ({files.sources['reference_unet']}) and denoising UNet "
            f"({files.sources['denoising_unet']}) have different architectures ({', '.join(differing)}); "
            "both must come from the same TalkingPose release."
        )
    guider = build_pose_guider(parts["pose_guider"], str(files.sources["pose_guider"]), dtype)
    source = str(files.sources["denoising_unet"])
    applied = {motion_modules.target_block(prefix, denoising): motion_modules.build(prefix, state, source, dtype)
               for prefix, state in motion.items()}
    return TalkingPoseNetworks(denoising, reference, guider, fingerprint=fp, source=files.describe(), motion_modules=applied)


def _flatten(modules: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{key}": tensor for prefix, state in modules.items() for key, tensor in state.items()}


# --------------------------------------------------------------------------------------------------- converting
def convert_checkpoint(path: Path, out_file: Path, dtype=torch.float16) -> Path:
    """Write the three parts as one `.safetensors` in `dtype`; zero motion modules and unused heads dropped.

    The result is checked by building the networks from it before it is reported as done.
    """
    from safetensors.torch import save_file

    files = locate_checkpoint(path)
    parts = read_parts(files)
    combined, stored = {}, set()
    for part in PARTS:
        state = parts[part]
        if part != "pose_guider":
            own, active = separate_motion_modules(state, str(files.sources[part]), part)
            state = {**own, **_flatten(active)}
        if part == "reference_unet":
            state = {k: v for k, v in state.items() if not k.startswith(REFERENCE_UNUSED_PREFIXES)}
        for key, tensor in state.items():
            tensor = tensor.to(dtype).contiguous()
            if tensor.data_ptr() in stored:  # safetensors refuses tensors that share memory
                tensor = tensor.clone()
            stored.add(tensor.data_ptr())
            combined[f"{part}.{key}"] = tensor
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with durable.replacing(out_file, keep_extension=True) as tmp:  # checked by loading it before it is kept
        save_file(combined, str(tmp), metadata={"format": "talkingpose", "dtype": str(dtype).removeprefix("torch.")})
        load_networks(tmp, dtype=torch.float32 if dtype == torch.float32 else dtype)
    return out_file
