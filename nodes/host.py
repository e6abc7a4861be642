"""The adapter between the nodes and ComfyUI: every call into ComfyUI goes through here, and only ComfyUI.

Imported only inside a running ComfyUI (`nodes/backend.py` chooses it there); the tests and CI drive the nodes
through the standalone host `nodes/standalone.py`, which has the same interface. Written against the APIs of
ComfyUI v0.8.0 and v0.33 (both read).
"""
from __future__ import annotations

import logging
from pathlib import Path

import comfy.model_management as _mm
import comfy.model_patcher
import comfy.utils
import folder_paths

from talkingpose.runtime import explicit_dtype

log = logging.getLogger("TalkingPose")

# Weight folders under ComfyUI's models/ that this pack adds to folder_paths.
MODEL_KINDS = ("talkingpose", "dwpose", "talkingpose_lora")


# ------------------------------------------------------------------------------------------------ folders
def register_model_folders() -> None:
    """Make `models/talkingpose`, `models/dwpose` and `models/talkingpose_lora` known to ComfyUI, first in their
    lists; folders that extra_model_paths.yaml adds for the same names are searched after these defaults."""
    for kind in MODEL_KINDS:
        folder_paths.add_model_folder_path(kind, str(Path(folder_paths.models_dir) / kind), is_default=True)


def model_folders(kind: str) -> list[Path]:
    """Every folder searched for one kind of weights, in priority order."""
    return [Path(p) for p in folder_paths.get_folder_paths(kind)]


def output_directory() -> Path:
    return Path(folder_paths.get_output_directory())


def input_directory() -> Path:
    return Path(folder_paths.get_input_directory())


def annotated_file(name: str, default_dir: Path) -> Path:
    """A loader's value read as ComfyUI's loaders read theirs: `name [input]` / `name [output]` pick that folder,
    a plain name is in `default_dir`. Nothing is checked here (nodes/paths.py does)."""
    return Path(folder_paths.get_annotated_filepath(name, str(default_dir)))


def save_prefix(prefix: str) -> tuple[Path, str]:
    """The folder (made if missing) and file stem that a save node's prefix names in the output folder, with
    ComfyUI's %date%-style variables expanded. The prefix must have passed nodes/paths.py's checks."""
    folder, stem, _counter, _subfolder, _prefix = folder_paths.get_save_image_path(prefix, str(output_directory()))
    return Path(folder), stem


def custom_nodes_dirs() -> list[Path]:
    """Where other node packs live (to find weights comfyui_controlnet_aux downloaded)."""
    return [Path(p) for p in folder_paths.get_folder_paths("custom_nodes")]


# ------------------------------------------------------------------------------------------------ devices
def torch_device():
    return _mm.get_torch_device()


def offload_device():
    return _mm.unet_offload_device()


def onnx_device_index() -> int:
    """The CUDA device index ComfyUI runs on, for onnxruntime's execution providers."""
    device = torch_device()
    return (device.index or 0) if getattr(device, "type", "") == "cuda" else 0


def compute_dtype(precision: str, device=None, model_params: int = 0):
    """An explicit precision wins; auto follows ComfyUI's UNet dtype choice for an SD1.5 model (fp16 first,
    then bf16, then fp32, as the device supports them), which honours --fp16-unet, --bf16-unet, --fp32-unet."""
    import torch

    dtype = explicit_dtype(precision)
    if dtype is not None:
        return dtype
    device = torch_device() if device is None else device
    supported = [torch.float16, torch.bfloat16, torch.float32]
    dtype = _mm.unet_dtype(device=device, model_params=model_params, supported_dtypes=supported)
    if dtype not in supported:  # --fp8-*-unet or --fp64-unet: storage formats these networks cannot compute in
        fallback = torch.float32 if device.type == "cpu" else torch.float16
        log.warning("ComfyUI asks for %s UNet weights; TalkingPose computes in %s instead.", dtype, fallback)
        dtype = fallback
    return dtype


# ------------------------------------------------------------------------------------------------ progress
def throw_if_cancelled() -> None:
    """Raise ComfyUI's interrupt exception when the user pressed Cancel."""
    _mm.throw_exception_if_processing_interrupted()


class Progress:
    """ComfyUI's progress bar, with optional preview images."""

    def __init__(self, total: int, desc: str = "", unit: str = "it"):
        self.total = total
        self._done = 0
        self._bar = comfy.utils.ProgressBar(total)

    def update(self, n: int = 1, preview=None) -> None:
        self._done += n
        self._bar.update_absolute(self._done, self.total, preview)

    def close(self) -> None:
        """ComfyUI's bar needs no closing."""


def send_event(event: str, data: dict) -> None:
    """Send a message to the browser over ComfyUI's server event channel."""
    from server import PromptServer

    if PromptServer.instance is not None:
        PromptServer.instance.send_sync(event, data)


def serve_json(path: str, produce) -> None:
    """Answer GET `path` on ComfyUI's server with the JSON of `produce()` (computed per request)."""
    from aiohttp import web
    from server import PromptServer

    @PromptServer.instance.routes.get(path)
    async def handler(request):
        return web.json_response(produce())


def latent_previewer():
    """A function turning a scaled SD1.5 latent [1, 4, h, w] into a progress-bar preview.

    ComfyUI's own choice (--preview-method, or the frontend's preview setting) when it makes previews; with
    previews off (ComfyUI's default) a Latent2RGB picture all the same, since the sampler sends one per finished
    frame, not one per step: a linear map of the latent, as cheap as previews get, so that the artist sees each
    frame arrive on the sampler node instead of nothing for minutes."""
    import comfy.latent_formats
    import latent_preview

    latent_format = comfy.latent_formats.SD15()
    previewer = latent_preview.get_previewer(torch_device(), latent_format)
    if previewer is None:
        previewer = latent_preview.Latent2RGBPreviewer(latent_format.latent_rgb_factors,
                                                       getattr(latent_format, "latent_rgb_factors_bias", None))
    return lambda latent: previewer.decode_latent_to_preview_image("JPEG", latent)


# ------------------------------------------------------------------------------------------------ memory manager
class ManagedModel:
    """Some of the TalkingPose networks under ComfyUI's memory manager, as one of its models: loaded to the GPU
    and offloaded like its own. The encoder side and the sampler side are two (`model_nodes.TalkingPoseModel`), so
    ComfyUI can offload the one that is not running. Other nodes' models (CLIP Vision, VAE, …) may push them out
    again at any time, partly or wholly, so `load` is called right before every group of forward passes."""

    def __init__(self, module, dtype):
        self.module = module
        self.dtype = dtype
        self.patcher = comfy.model_patcher.ModelPatcher(module, load_device=torch_device(), offload_device=offload_device())
        self._reported_placement = None

    def load(self, memory_required: int = 0):
        """Put the weights on the compute device, evicting other models if VRAM is short (also `memory_required`
        bytes for the activations to come); returns the module."""
        load_together([self], memory_required)
        return self.module

    def _check_placement(self) -> None:
        """Compare where the weights are with where ComfyUI meant them to be, and say so when they differ."""
        from talkingpose.errors import TalkingPoseError

        target = _device_name(self.patcher.load_device)
        placed = weights_by_device(self.module)
        if set(placed) == {target}:
            self._reported_placement = None
            return
        where = ", ".join(f"{size / 2**20:.0f} MB on {device}" for device, size in sorted(placed.items()))
        if len(placed) > 1:
            raise TalkingPoseError(
                f"ComfyUI left the TalkingPose networks split across devices ({where}); they must be on one. "
                "Queue the workflow again; if it keeps happening, free VRAM (fewer or smaller models loaded) or "
                "start ComfyUI with --novram to compute on the CPU."
            )
        if self._reported_placement != placed:
            self._reported_placement = placed
            log.warning(
                "The TalkingPose networks stayed on %s (%s) instead of %s: ComfyUI runs with --novram or could "
                "not make room for them. TalkingPose cannot stream weights, so it computes there — on a CPU about "
                "a hundred times slower than a GPU (roughly 1000 s per 512×512 frame). Start ComfyUI without "
                "--novram, or free VRAM, to sample on %s.", next(iter(placed)), where, target, target)


def load_together(models: list[ManagedModel], memory_required: int = 0) -> None:
    """Put several managed models on the compute device in one request, so that making room for one never
    evicts another (`memory_required`: bytes for the activations to come)."""
    # Fully: the networks are plain torch modules, without ComfyUI's on-the-fly weight casting.
    _mm.load_models_gpu([m.patcher for m in models], memory_required=memory_required, force_full_load=True)
    for model in models:
        model._check_placement()


def weights_by_device(module) -> dict[str, int]:
    """Bytes of parameters and buffers per device."""
    sizes: dict[str, int] = {}
    for tensor in list(module.parameters()) + list(module.buffers()):
        key = _device_name(tensor.device)
        sizes[key] = sizes.get(key, 0) + tensor.numel() * tensor.element_size()
    return sizes


def _device_name(device) -> str:
    """`cuda:0` for both `cuda` and `cuda:0` (ComfyUI names devices without an index, tensors with one)."""
    import torch

    device = torch.device(device)
    return "cpu" if device.type == "cpu" else f"{device.type}:{device.index or 0}"


# ------------------------------------------------------------------------------------------------ CLIP and VAE
def clip_projection_width(clip_vision) -> int | None:
    """Width of the image embedding ComfyUI's CLIP Vision model gives, read off its weights before running it
    (its `model` is the torch module; it has no transformers config)."""
    from talkingpose.appearance import clip_embedding_width

    return clip_embedding_width(clip_vision.model)


def clip_image_embeds(clip_vision, source):
    """Projected image embedding [1, C] of a prepared source (`images.PreparedSource`).

    The source is already stretched to 224×224 as the official pipeline does; ComfyUI's CLIP_VISION crops or
    resizes only when its input is not 224×224, so it only normalises here.
    """
    return clip_vision.encode_image(source.clip_tensor(), crop=False)["image_embeds"]


def vae_encode_mean(vae, pixels):
    """Raw (unscaled) latent [1, 4, h, w] of pixels [1, H, W, 3] in [0, 1]: ComfyUI's VAE gives the posterior
    mode (the mean), unscaled."""
    return vae.encode(pixels[..., :3])


def clip_crop_embeds(clip_vision, crops):
    """Projected image embeddings [n, C] of 224×224 PIL crops (fine-tuning's CLIP inputs); ComfyUI's CLIP
    Vision only normalises inputs of that size."""
    import numpy as np
    import torch

    batch = torch.from_numpy(np.stack([np.asarray(c, dtype=np.float32) / 255.0 for c in crops]))
    return clip_vision.encode_image(batch, crop=False)["image_embeds"].float().cpu()


def clip_zeroed_embeds(clip_vision):
    """The projected embedding [1, C] of all-zero normalised CLIP pixels, fine-tuning's unconditional context:
    ComfyUI's CLIP Vision normalises float images itself, so it gets an image of CLIP's mean colour."""
    import torch

    from talkingpose.finetune.data import CLIP_MEAN, CLIP_SIZE

    mean = torch.tensor(CLIP_MEAN).expand(1, CLIP_SIZE, CLIP_SIZE, 3)
    return clip_vision.encode_image(mean, crop=False)["image_embeds"].float().cpu()


def vae_encode_posterior(vae, pixels):
    """VAE posterior mean and standard deviation (unscaled), [n, 4, h, w] each, of pixels [n, 3, H, W] in
    [-1, 1]: fine-tuning draws a posterior sample every step. ComfyUI's VAE.encode gives only the mean, so its
    encoder and quant_conv run directly; a VAE without them gets a zero deviation (logged)."""
    import torch

    model = vae.first_stage_model
    if not (hasattr(model, "encoder") and hasattr(model, "quant_conv")):
        log.warning("This VAE does not expose its posterior; fine-tuning uses its mean without sampling.")
        mean = vae.encode(((pixels + 1) / 2).movedim(1, -1)).float().cpu()
        return mean, torch.zeros_like(mean)
    _mm.load_models_gpu([vae.patcher])
    with torch.no_grad():
        moments = model.quant_conv(model.encoder(pixels.to(vae.device, vae.vae_dtype)))
    mean, logvar = moments.float().chunk(2, dim=1)
    return mean.cpu(), torch.exp(0.5 * logvar.clamp(-30.0, 20.0)).cpu()


def vae_decode(vae, raw_latents):
    """ComfyUI's VAE Decode for raw latents -> IMAGE [n, H, W, 3] in [0, 1]."""
    return vae.decode(raw_latents)


# ------------------------------------------------------------------------------------------------ V3 node schema
def v3_node(v1_class, node_id: str, display_name: str):
    """`v1_class` declared on ComfyUI's V3 node schema, through the versioned `comfy_api.v0_0_2` (present from
    ComfyUI v0.3.4x on; read in v0.33.0): the same node id, input names, types, options and widget order, so saved
    workflows load unchanged; running it runs the V1 class's function. The V1 class stays the one definition: its
    INPUT_TYPES is read again on every request (file lists refresh as before), its hidden inputs become V3 hidden
    inputs handed to the function under their V1 names, IS_CHANGED and VALIDATE_INPUTS become fingerprint_inputs
    and validate_inputs with the same parameters. None when this ComfyUI is too old for the schema (the caller
    keeps the V1 class, which every ComfyUI loads)."""
    import importlib.util

    if importlib.util.find_spec("comfy_api") is None or importlib.util.find_spec("comfy_api.v0_0_2") is None:
        return None
    from comfy_api.v0_0_2 import io

    widgets = {"INT": io.Int, "FLOAT": io.Float, "BOOLEAN": io.Boolean, "STRING": io.String}

    def input_of(name: str, spec, optional: bool):
        kind, options = spec[0], dict(spec[1]) if len(spec) > 1 else {}
        if "display" in options:  # V1's name of V3's display_mode
            options["display_mode"] = io.NumberDisplay(options.pop("display"))
        if isinstance(kind, (list, tuple)):
            return io.Combo.Input(name, options=list(kind), optional=optional, **options)
        if kind in widgets:  # an option V3 does not know is a TypeError here, not a silently lost option
            return widgets[kind].Input(name, optional=optional, **options)
        return io.Custom(kind).Input(name, optional=optional, tooltip=options.pop("tooltip", None), extra_dict=options)

    def output_of(kind: str, name: str):
        known = {"IMAGE": io.Image, "FLOAT": io.Float, "STRING": io.String, "INT": io.Int}.get(kind)
        return (known or io.Custom(kind)).Output(display_name=name)

    def hidden_of(declared: dict) -> dict:
        return {name: io.Hidden(kind) for name, kind in declared.get("hidden", {}).items()}

    names = getattr(v1_class, "RETURN_NAMES", None) or v1_class.RETURN_TYPES

    class Node(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            declared = v1_class.INPUT_TYPES()  # here, not earlier: ComfyUI registers the pack's folders after import
            unknown = set(declared) - {"required", "optional", "hidden"}
            if unknown:
                raise ValueError(f"{node_id} declares input sections {sorted(unknown)}, which V3 does not carry.")
            inputs = [input_of(name, spec, section == "optional")
                      for section in ("required", "optional") for name, spec in declared.get(section, {}).items()]
            hidden = list(hidden_of(declared).values())
            # not_idempotent: ComfyUI (v0.33.0 comfy_execution/caching.py) keys a V1 node with a UNIQUE_ID input by
            # its node id, so two such nodes with equal inputs both run (each keeps its own meta-batch carry); it
            # does not recognise V3's hidden unique_id, and not_idempotent is the V3 flag with that effect.
            return io.Schema(node_id=node_id, display_name=display_name, category=v1_class.CATEGORY,
                             description=getattr(v1_class, "DESCRIPTION", ""), inputs=inputs,
                             outputs=[output_of(k, n) for k, n in zip(v1_class.RETURN_TYPES, names)],
                             hidden=hidden, is_output_node=bool(getattr(v1_class, "OUTPUT_NODE", False)),
                             not_idempotent=io.Hidden.unique_id in hidden)

        @classmethod
        def execute(cls, **kwargs):
            hidden = hidden_of(v1_class.INPUT_TYPES())  # handed over under the V1 parameter names
            kwargs.update({name: getattr(cls.hidden, kind.name) for name, kind in hidden.items()})
            return getattr(v1_class(), v1_class.FUNCTION)(**kwargs)  # a tuple or {"ui", "result"}: V3 takes both

    # The V1 functions themselves, so that ComfyUI reads the same parameter names off them (validation skips its
    # own combo and range checks for exactly the inputs VALIDATE_INPUTS names).
    if hasattr(v1_class, "IS_CHANGED"):
        Node.fingerprint_inputs = classmethod(v1_class.IS_CHANGED.__func__)
    if hasattr(v1_class, "VALIDATE_INPUTS"):
        Node.validate_inputs = classmethod(v1_class.VALIDATE_INPUTS.__func__)
    Node.__name__ = Node.__qualname__ = node_id
    return Node
