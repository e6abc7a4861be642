"""The guided denoising step, prepared once per video (or set of videos rendered together) and run
`steps × frames` times.

Everything that does not change while a video renders is made once, before its first step:
- the DDIM coefficients of each step, on the device (`ddim_coefficients`), so no step indexes a CPU table with a
  timestep or copies a CPU scalar to the GPU: nothing in the step loop waits for the host;
- the time embedding and every resnet's time projection of each step (they depend on the step index only);
- every cross-attention block's output (one context token: see `reference_attention.py`), kept at the first pass;
- fused Q/K/V weights and, per self-attention block, a key/value buffer holding the reference's keys and values.

On CUDA the step is captured once per video as a CUDA graph over static buffers (the shapes are fixed for a whole
video) and replayed `steps` times per frame: one launch instead of about six hundred. Elsewhere it runs eagerly,
and with `--compile` eagerly on the static buffers (`step_mode`). All run the same body; the graph's version
reads the step's values from static buffers that are filled before each replay.
"""
from __future__ import annotations

import torch

from .errors import TalkingPoseError


def ddim_coefficients(scheduler) -> torch.Tensor:
    """[steps, 4] float32: per step (sqrt(alpha_bar_t), sqrt(1-alpha_bar_t), sqrt(alpha_bar_prev), sqrt(1-alpha_bar_prev)), computed from diffusers' DDIMScheduler
    with the very operations its `step` uses at eta 0 (so the update below matches it bit for bit)."""
    config = scheduler.config
    if config.prediction_type != "v_prediction" or config.thresholding or config.clip_sample:
        raise TalkingPoseError(
            f"The guided step implements the official DDIM configuration (v-prediction, no clipping or "
            f"thresholding); this scheduler has prediction_type {config.prediction_type!r}, clip_sample "
            f"{config.clip_sample}, thresholding {config.thresholding}."
        )
    rows = []
    for t in scheduler.timesteps:
        prev_t = t - config.num_train_timesteps // scheduler.num_inference_steps
        alpha_t = scheduler.alphas_cumprod[t]
        alpha_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
        beta_t = 1 - alpha_t
        rows.append(torch.stack([alpha_t**0.5, beta_t**0.5, alpha_prev**0.5, (1 - alpha_prev) ** 0.5]))
    return torch.stack(rows).float()


def step_mode(device: torch.device, compiled: bool, weights_in_fp8: bool = False) -> str:
    """How the step runs: "graph" (captured as a CUDA graph, replayed) on CUDA; "static" (the graph's body on
    static buffers, run eagerly) with a torch.compiled UNet, which then meets the same tensors at every step
    instead of recompiling for new ones, and whose compiled code is not captured; "eager" elsewhere, and with
    fp8 weight storage: diffusers' layerwise casting gives each layer new weight tensors at every pass, which a
    graph (replaying the addresses it captured) cannot follow."""
    if compiled:
        return "static"
    return "graph" if device.type == "cuda" and not weights_in_fp8 else "eager"


def is_guided(cfg: float) -> bool:
    """Whether a step runs the unconditional row beside the conditional one (classifier-free guidance)."""
    return cfg > 1.0


class GuidedStep:
    """One DDIM step of classifier-free-guided denoising for `n` videos at once ([n, C, h, w] latents).

    Rows are laid out as [unconditional × n, conditional × n] under guidance (cfg > 1): unconditional rows get a
    zero image context and no reference tokens, conditional row i gets appearance i. `reference` is the
    appearances' stacked keys/values (`sampler.reference_keys_values`).
    """

    def __init__(self, networks, scheduler, image_context: torch.Tensor, reference, cfg: float, height: int, width: int,
                 mode: str | None = None):
        """`mode`: "graph", "static" or "eager" (see `step_mode`, which picks it by default)."""
        self.networks = networks
        self.cfg = cfg
        self.device, self.dtype = networks.weights_device, networks.weights_dtype
        self.mode = mode or step_mode(self.device, networks._compiled, networks.weights_in_fp8)
        if self.mode not in ("graph", "static", "eager"):
            raise ValueError(f"mode {mode!r}")
        if self.mode == "graph" and networks.weights_in_fp8:
            raise ValueError("a CUDA graph cannot replay a pass with fp8 weight storage (see step_mode)")
        self.weights = self._weights_signature(networks)
        self.steps = len(scheduler.timesteps)
        self.guided = is_guided(cfg)
        n = image_context.shape[0]
        context = image_context.to(self.device, self.dtype)
        if self.guided:
            context = torch.cat([torch.zeros_like(context), context])
        self.rows = context.shape[0]
        self.context = context
        self.latent_shape = (n, networks.latent_channels, height // 8, width // 8)
        self.prepared = networks.prepare_pass(reference, n if self.guided else 0)
        self._timesteps = scheduler.timesteps.to(self.device).reshape(-1, 1)
        self._ddim = ddim_coefficients(scheduler).to(self.device)
        # One row per step: the time embedding, then each resnet's time projection; the passes read views of it.
        embeddings, projections = networks.time_embeddings(scheduler.timesteps, self.rows)
        self._time_table = torch.cat([embeddings.flatten(1)] + [p.flatten(1) for p in projections.values()], dim=1)
        self._time_layout = [(None, embeddings.shape[1:])] + [(name, p.shape[1:]) for name, p in projections.items()]
        self._time = [self._time_views(row) for row in self._time_table]
        self._graph = None
        self._static = None

    def fits(self, networks) -> bool:
        """True while the networks are where and what they were when this step was prepared (ComfyUI may move them
        between frames; a captured graph reads the weights at their addresses)."""
        return networks is self.networks and self._weights_signature(networks) == self.weights

    def _weights_signature(self, networks) -> tuple:
        # Values (fingerprint: weights and LoRA), place and precision; for a graph also the weights' addresses.
        addresses = tuple(p.data_ptr() for p in networks.denoising_unet.parameters()) if self.mode == "graph" else ()
        return networks.fingerprint, networks.weights_device, networks.weights_dtype, addresses

    # ------------------------------------------------------------------------------------------------- the step
    def _body(self, latents, pose_features, timestep, time, ddim):
        """The step: the UNet on [uncond, cond] rows, guidance, the DDIM update (eta 0, v-prediction) -> new latents."""
        embedding, projections = time
        self.prepared.set_step(embedding, projections)
        model_input = latents.to(self.dtype)
        if self.guided:
            model_input = torch.cat([model_input, model_input])
        with self.networks.prepared_pass(self.prepared, pose_features):
            v = self.networks._denoise(model_input, timestep, encoder_hidden_states=self.context, return_dict=False)[0]
        self.networks.check_reference_calls()
        v = v.float()
        if self.guided:
            v_uncond, v_cond = v.chunk(2)
            v = v_uncond + self.cfg * (v_cond - v_uncond)
        # diffusers' DDIMScheduler.step for v-prediction at eta 0, term for term.
        sqrt_alpha, sqrt_beta, sqrt_alpha_prev, sqrt_beta_prev = ddim.unbind()
        pred_original = sqrt_alpha * latents - sqrt_beta * v
        pred_epsilon = sqrt_alpha * v + sqrt_beta * latents
        return sqrt_alpha_prev * pred_original + sqrt_beta_prev * pred_epsilon

    def _eager(self, latents, pose_features, i):
        return self._body(latents, pose_features, self._timesteps[i], self._time[i], self._ddim[i])

    def _time_views(self, row: torch.Tensor):
        """(time embedding, {resnet: time projection}) as views of one row of the time table."""
        views, offset = {}, 0
        for name, shape in self._time_layout:
            views[name] = row[offset:offset + shape.numel()].view(shape)
            offset += shape.numel()
        embedding = views.pop(None)
        return embedding, views

    # ------------------------------------------------------------------------------------------------ static buffers
    def _make_static(self):
        row = self._time_table[0].clone()
        return {
            "latents": torch.zeros(self.latent_shape, device=self.device, dtype=torch.float32),
            "pose": torch.zeros((self.rows, self.networks.unet_width, *self.latent_shape[2:]), device=self.device, dtype=self.dtype),
            "timestep": self._timesteps[0].clone(),
            "row": row,
            "time": self._time_views(row),
            "ddim": self._ddim[0].clone(),
        }

    def _load_step(self, i):
        s = self._static
        s["row"].copy_(self._time_table[i])
        s["timestep"].copy_(self._timesteps[i])
        s["ddim"].copy_(self._ddim[i])

    def _static_step(self):
        s = self._static
        s["latents"].copy_(self._body(s["latents"], s["pose"], s["timestep"], s["time"], s["ddim"]))

    def _capture(self):
        """Record the static step as a CUDA graph, after warm-up passes on a side stream (as PyTorch asks: they
        fill the lazily made reference buffers and let cuBLAS/cuDNN pick their plans outside the capture)."""
        self._load_step(0)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._static_step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA work other threads issue meanwhile (decoding, writing frames) is not part of the capture
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self._static_step()
        return graph

    # ------------------------------------------------------------------------------------------------- one frame
    @torch.no_grad()
    def denoise(self, start: torch.Tensor, pose_features: torch.Tensor, on_step=None) -> torch.Tensor:
        """All steps of one frame: start latents [n, C, h, w] and pose features [n, width, h, w] -> final latents
        (float32)."""
        if self.guided:
            pose_features = torch.cat([pose_features, pose_features])
        if self.mode == "eager":
            latents = start.to(self.device, torch.float32)
            for i in range(self.steps):
                latents = self._eager(latents, pose_features, i)
                if on_step is not None:
                    on_step(i)
            return latents
        if self._static is None:
            self._static = self._make_static()
            if self.mode == "graph":
                self._graph = self._capture()
        s = self._static
        s["pose"].copy_(pose_features)
        s["latents"].copy_(start)
        for i in range(self.steps):
            self._load_step(i)
            if self._graph is not None:
                self._graph.replay()
            else:
                self._static_step()
            if on_step is not None:
                on_step(i)
        return s["latents"].clone()

