"""Stand-ins for the ComfyUI modules the adapter `nodes/host.py` calls, for behaviour that happens on ComfyUI's
side: its memory manager pushing models out of VRAM (partly) when it loads others, `--novram`, its UNet dtype
choice, its model-folder registry.

There is no GPU here, so "VRAM" is the CPU and "offloaded" is PyTorch's meta device: an offloaded weight keeps its
shape but has no data, and running a layer on it fails, as running a half-moved model on a GPU fails with a
device mismatch. Loading puts the real tensors back. The real-host tests (`test_comfyui_host.py`) run the pack in
a real ComfyUI.
"""
from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import torch


class InterruptProcessingException(Exception):
    pass


class FakePatcher:
    """ModelPatcher's part the pack relies on: a model that the manager loads to `load_device` and can push out."""

    def __init__(self, model, load_device, offload_device):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self._stash: dict[tuple[torch.nn.Module, str], torch.nn.Parameter] = {}

    def offload_half(self) -> int:
        """Push every other weight out (as ComfyUI's partial unload does module by module); returns how many."""
        return self._offload(lambda i: i % 2 == 0)

    def offload_all(self) -> int:
        """Push every weight out (as ComfyUI's unload of a whole model); returns how many."""
        return self._offload(lambda i: True)

    def _offload(self, chosen) -> int:
        pushed = 0
        for i, (module, name, param) in enumerate(self._params()):
            if chosen(i) and not param.is_meta:
                self._stash[(module, name)] = param
                setattr(module, name, torch.nn.Parameter(torch.empty_like(param, device="meta"), requires_grad=False))
                pushed += 1
        return pushed

    def load(self) -> None:
        for (module, name), param in self._stash.items():
            setattr(module, name, param)
        self._stash.clear()

    def _params(self):
        for module in self.model.modules():
            for name, param in module.named_parameters(recurse=False):
                yield module, name, param


class FakeModelManagement(types.ModuleType):
    def __init__(self, load_device="cpu"):
        super().__init__("comfy.model_management")
        self.load_device = torch.device(load_device)
        self.loaded: list[FakePatcher] = []
        self.calls: list[tuple[FakePatcher, float, bool]] = []
        self.squeeze = False  # loading one model pushes half of every other loaded model out
        self.novram = False  # models are "loaded" but their weights stay where they are
        self.unet_dtype_calls: list[dict] = []
        self.unet_dtype_answer = None
        self.interrupted = False
        self.InterruptProcessingException = InterruptProcessingException

    def get_torch_device(self):
        return self.load_device

    def unet_offload_device(self):
        return torch.device("cpu")

    def load_models_gpu(self, models, memory_required=0, force_patch_weights=False, minimum_memory_required=None, force_full_load=False):
        for model in models:
            self.calls.append((model, memory_required, force_full_load))
            if self.squeeze:
                for other in self.loaded:
                    if other is not model:
                        other.offload_half()
            if not self.novram:
                model.load()
            if model not in self.loaded:
                self.loaded.append(model)

    def load_model_gpu(self, model):
        self.load_models_gpu([model])

    def unet_dtype(self, device=None, model_params=0, supported_dtypes=(torch.float16, torch.bfloat16, torch.float32), weight_dtype=None):
        self.unet_dtype_calls.append({"device": device, "model_params": model_params, "supported_dtypes": list(supported_dtypes)})
        return self.unet_dtype_answer if self.unet_dtype_answer is not None else supported_dtypes[0]

    def throw_exception_if_processing_interrupted(self):
        if self.interrupted:
            self.interrupted = False
            raise InterruptProcessingException()


class FakeFolderPaths(types.ModuleType):
    """folder_paths' registry, enough to see how the pack registers and reads its folders."""

    def __init__(self, base: Path):
        super().__init__("folder_paths")
        self.models_dir = str(base / "models")
        self.folder_names_and_paths: dict[str, tuple[list[str], set]] = {}
        self.added: list[tuple[str, str, bool]] = []
        self.output = base / "output"
        self.input = base / "input"

    def add_model_folder_path(self, folder_name, full_folder_path, is_default=False):
        self.added.append((folder_name, full_folder_path, is_default))
        paths = self.folder_names_and_paths.setdefault(folder_name, ([], set()))[0]
        if full_folder_path in paths:
            paths.remove(full_folder_path)
        paths.insert(0 if is_default else len(paths), full_folder_path)

    def get_folder_paths(self, folder_name):
        return list(self.folder_names_and_paths[folder_name][0])

    def get_output_directory(self):
        return str(self.output)

    def get_input_directory(self):
        return str(self.input)


class FakeProgressBar:
    def __init__(self, total, node_id=None):
        self.total, self.updates = total, []

    def update_absolute(self, value, total=None, preview=None):
        self.updates.append((value, total, preview))


class FakeClipVision:
    """ComfyUI's CLIP Vision object: a torch module in `.model` (no transformers config), `encode_image` loads it
    through the manager first, then normalises a 224×224 IMAGE with CLIP's mean and std."""

    MEAN = (0.48145466, 0.4578275, 0.40821073)
    STD = (0.26862954, 0.26130258, 0.27577711)

    def __init__(self, model, mm: FakeModelManagement):
        self.model, self.mm = model, mm
        self.patcher = FakePatcher(model, mm.load_device, torch.device("cpu"))

    def encode_image(self, image, crop=True):
        assert image.shape[1:3] == (224, 224) and not crop, "the pack hands over the official 224x224 stretch"
        self.mm.load_model_gpu(self.patcher)
        pixels = (image.movedim(-1, 1) - torch.tensor(self.MEAN)[:, None, None]) / torch.tensor(self.STD)[:, None, None]
        with torch.no_grad():
            return {"image_embeds": self.model(pixel_values=pixels).image_embeds}


class FakeVAE:
    """ComfyUI's VAE object: loads through the manager, takes and gives IMAGE tensors, raw latents."""

    def __init__(self, vae, mm: FakeModelManagement):
        self.first_stage_model, self.mm = vae, mm
        self.patcher = FakePatcher(vae, mm.load_device, torch.device("cpu"))

    def encode(self, pixels):
        self.mm.load_models_gpu([self.patcher], memory_required=1)
        with torch.no_grad():
            return self.first_stage_model.encode(pixels.movedim(-1, 1) * 2 - 1).latent_dist.mean

    def decode(self, latents):
        self.mm.load_models_gpu([self.patcher], memory_required=1)
        with torch.no_grad():
            return ((self.first_stage_model.decode(latents).sample + 1) / 2).clamp(0, 1).movedim(1, -1)


class FakePreviewer:
    """A progress-bar previewer decoding through a model of its own under the manager (as v0.33's VAE-based video
    previewers do): every preview may push the TalkingPose networks out between two frames."""

    def __init__(self, mm: FakeModelManagement):
        self.mm = mm
        self.patcher = FakePatcher(torch.nn.Linear(4, 3), mm.load_device, torch.device("cpu"))
        self.previews = 0

    def decode_latent_to_preview_image(self, preview_format, latent):
        self.mm.load_model_gpu(self.patcher)
        self.previews += 1
        return (preview_format, None, 512)


class FakePromptServer:
    instance = None

    def __init__(self):
        from aiohttp import web

        self.sent = []
        self.routes = web.RouteTableDef()  # as ComfyUI's server: the pack adds its GET routes here at load

    def send_sync(self, event, data, sid=None):
        self.sent.append((event, data))


class FakeComfyUI:
    def __init__(self, base: Path, load_device="cpu"):
        self.mm = FakeModelManagement(load_device)
        self.folder_paths = FakeFolderPaths(base)
        self.previewer = FakePreviewer(self.mm)
        comfy = types.ModuleType("comfy")
        comfy.__path__ = []  # a package, so that `import comfy.x` looks its submodules up in sys.modules
        patcher_module = types.ModuleType("comfy.model_patcher")
        patcher_module.ModelPatcher = FakePatcher
        utils = types.ModuleType("comfy.utils")
        utils.ProgressBar = FakeProgressBar
        latent_formats = types.ModuleType("comfy.latent_formats")
        latent_formats.SD15 = type("SD15", (), {})
        latent_preview = types.ModuleType("latent_preview")
        latent_preview.get_previewer = lambda device, latent_format: self.previewer
        server = types.ModuleType("server")
        server.PromptServer = FakePromptServer
        FakePromptServer.instance = self.server = FakePromptServer()
        comfy.model_management, comfy.model_patcher, comfy.utils, comfy.latent_formats = self.mm, patcher_module, utils, latent_formats
        self.modules = {"comfy": comfy, "comfy.model_management": self.mm, "comfy.model_patcher": patcher_module,
                        "comfy.utils": utils, "comfy.latent_formats": latent_formats, "latent_preview": latent_preview,
                        "server": server, "folder_paths": self.folder_paths}


def install(monkeypatch, base: Path, load_device="cpu"):
    """Fake ComfyUI modules in sys.modules (undone by monkeypatch) and the adapter `nodes.host` imported over
    them; returns (fake, host)."""
    fake = FakeComfyUI(base, load_device)
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "nodes.host", raising=False)
    host = importlib.import_module("nodes.host")
    monkeypatch.delitem(sys.modules, "nodes.host")  # the next test imports it afresh over its own fakes
    return fake, host
