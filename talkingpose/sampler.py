"""The closed-loop sampler: one frame after another, each starting from the shared noise nudged toward the
previous frame's result, `z_T + beta·(z0_hat,k - z_T)`.

Frames are pulled from any iterable and handed out as soon as they are done, so memory does not depend on the
video's length. The whole loop state (z_T, the last latent, the next frame index and the settings) fits in a
`SamplerState`, which can be saved and given back: a run continued from its state makes the same frames as an
uninterrupted one.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from .errors import TalkingPoseError
from .guided_step import GuidedStep

# The official inference configuration (configs/inference/inference_v2.yaml).
OFFICIAL_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}
DEFAULT_STEPS = 30
DEFAULT_CFG = 3.5
DEFAULT_BETA = 0.05
# torch's CPU generator (mt19937, as the official pipeline uses it) keeps only the low 32 bits of a seed: 2^32
# draws what 0 draws. Seeds up to 2^32-1 each give noise of their own; larger ones are refused, not repeated.
MAX_SEED = 2**32 - 1

StepCallback = Callable[[int, int, int], None]  # (frame index, step index, steps per frame); may raise to cancel


@dataclass(frozen=True)
class SamplerSettings:
    steps: int = DEFAULT_STEPS
    cfg: float = DEFAULT_CFG
    beta: float = DEFAULT_BETA
    seed: int = 0

    def __post_init__(self):
        if int(self.steps) != self.steps or self.steps < 1:
            raise TalkingPoseError(f"steps is {self.steps}; it must be a whole number of at least 1 (the paper uses 30).")
        if not 0.0 <= self.beta <= 1.0:
            raise TalkingPoseError(
                f"beta (closed-loop gain) is {self.beta}; it must be between 0 and 1 (0.05 is the paper's choice)."
            )
        if not math.isfinite(self.cfg) or self.cfg < 0:
            raise TalkingPoseError(f"cfg is {self.cfg}; use a guidance scale of 0 or more (the paper uses 3.5).")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise TalkingPoseError(f"seed {self.seed!r} is not a whole number; use one from 0 to {MAX_SEED}.")
        if not 0 <= self.seed <= MAX_SEED:
            raise TalkingPoseError(
                f"seed {self.seed} is out of range; use a whole number from 0 to {MAX_SEED} (2^32-1: PyTorch's "
                "generator keeps 32 bits of a seed, so larger seeds would repeat the noise of smaller ones)."
            )


def initial_noise(seed: int, channels: int, height: int, width: int) -> torch.Tensor:
    """z_T, drawn once for the whole video on the CPU in float32 (as the official pipeline does)."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn((1, channels, height // 8, width // 8), generator=generator, dtype=torch.float32)[0]


@dataclass
class SamplerState:
    """Everything needed to continue a closed-loop render; a few hundred kilobytes at 512×512."""

    noise: torch.Tensor  # z_T, [C, h, w] float32
    last_latent: torch.Tensor | None  # z0_hat of the last finished frame, or None before the first
    next_frame: int
    settings: SamplerSettings
    width: int
    height: int
    model_fingerprint: str = ""
    appearance_fingerprint: str = ""
    extra: dict = field(default_factory=dict)

    def start_latent(self) -> torch.Tensor:
        if self.last_latent is None:
            return self.noise.clone()
        return self.noise + self.settings.beta * (self.last_latent - self.noise)

    def advanced(self, latent: torch.Tensor) -> "SamplerState":
        return SamplerState(
            self.noise, latent.detach().to("cpu", torch.float32).clone(), self.next_frame + 1, self.settings,
            self.width, self.height, self.model_fingerprint, self.appearance_fingerprint, dict(self.extra),
        )

    def mismatches(self, other_settings: SamplerSettings, width: int, height: int, model_fp: str, appearance_fp: str) -> list[str]:
        """What differs between this state and a run that wants to continue it."""
        diffs = []
        for name in ("seed", "steps", "cfg", "beta"):
            mine, theirs = getattr(self.settings, name), getattr(other_settings, name)
            if mine != theirs:
                diffs.append(f"{name} {mine} in the state, {theirs} now")
        if (self.width, self.height) != (width, height):
            diffs.append(f"size {self.width}×{self.height} in the state, {width}×{height} now")
        if self.model_fingerprint and model_fp and self.model_fingerprint != model_fp:
            diffs.append("it was made with another TalkingPose model")
        if self.appearance_fingerprint and appearance_fp and self.appearance_fingerprint != appearance_fp:
            diffs.append("it was made with another source image or appearance settings")
        return diffs

    # ------------------------------------------------------------------------------------------- persistence
    def save(self, path: Path) -> Path:
        """Write the state atomically as safetensors (tensors) + JSON metadata (settings and a tensor checksum)."""
        from . import state_file

        return state_file.save(self, path)

    @classmethod
    def load(cls, path: Path) -> "SamplerState":
        """Read a state file, validated completely (see `state_file`)."""
        from . import state_file

        return state_file.load(path, cls, SamplerSettings)


def make_scheduler(config: dict | None = None):
    from diffusers import DDIMScheduler

    return DDIMScheduler(**(config or OFFICIAL_SCHEDULER))


class ClosedLoopSampler:
    """Samples frames one at a time for one appearance.

    `networks` is a `TalkingPoseNetworks`; `appearance` an `Appearance` made for the same networks.
    """

    def __init__(self, networks, appearance, settings: SamplerSettings, state: SamplerState | None = None, scheduler_config: dict | None = None):
        check_appearance(networks, appearance)
        self.networks = networks
        self.appearance = appearance.to(networks.weights_device, networks.weights_dtype)  # moved and cast once
        self.settings = settings
        if state is None:
            noise = initial_noise(settings.seed, networks.latent_channels, appearance.height, appearance.width)
            state = SamplerState(noise, None, 0, settings, appearance.width, appearance.height,
                                 networks.fingerprint, appearance.fingerprint)
        else:
            diffs = state.mismatches(settings, appearance.width, appearance.height, networks.fingerprint, appearance.fingerprint)
            if diffs:
                raise TalkingPoseError(
                    "The saved state does not belong to this render: " + "; ".join(diffs)
                    + ". Use the settings it was made with, or start a new render without the state."
                )
        self.state = state
        self.scheduler = make_scheduler(scheduler_config)
        self.scheduler.set_timesteps(settings.steps)
        self._step: GuidedStep | None = None

    def denoise(self, pose_pixels: torch.Tensor, on_step: StepCallback | None = None) -> torch.Tensor:
        """The next frame's final latent ([C, h, w], float32, scaled space); advances the state."""
        # Where the memory manager put the networks for this frame (normally where they were: then no copy, and
        # the step prepared for the first frame is used again).
        self.appearance = self.appearance.to(self.networks.weights_device, self.networks.weights_dtype)
        if self._step is None or not self._step.fits(self.networks):
            self._step = prepare_step(self.networks, self.scheduler, [self.appearance], self.settings.cfg)
        latent = denoise_batch(
            self.networks, self.scheduler, [self.appearance], self.settings.cfg,
            self.state.start_latent()[None], pose_pixels,
            on_step=None if on_step is None else (lambda step: on_step(self.state.next_frame, step, self.settings.steps)),
            step=self._step,
        )[0]
        self.state = self.state.advanced(latent)
        return latent

    def frames(self, poses: Iterable[torch.Tensor], on_step: StepCallback | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield `(frame index, latent)` for each pose tensor ([1, 3, H, W] in [0, 1]) as soon as it is done."""
        for pose in poses:
            index = self.state.next_frame
            yield index, self.denoise(pose, on_step)


class BatchedClosedLoopSampler:
    """Several independent videos rendered together: each keeps its own z_T and closed loop, and one UNet batch
    carries all of them (rows are independent, so each video's frames are those it would get alone).

    All videos share steps, cfg and output size; seed and beta may differ per video. `states` continues videos
    from their saved states (None for a video that starts here), so a set of videos can be regrouped — e.g. a
    finished video's slot given to a new one — without touching the others' loops.
    """

    def __init__(self, networks, appearances, settings: list[SamplerSettings], scheduler_config: dict | None = None,
                 states: list[SamplerState | None] | None = None):
        if len({(s.steps, s.cfg) for s in settings}) != 1 or len({(a.width, a.height) for a in appearances}) != 1:
            raise TalkingPoseError("Videos rendered together must share steps, cfg and output size.")
        states = states if states is not None else [None] * len(appearances)
        self.samplers = [ClosedLoopSampler(networks, a, s, state, scheduler_config)
                         for a, s, state in zip(appearances, settings, states)]
        self.networks = networks
        self.scheduler = self.samplers[0].scheduler
        # The videos' reference keys/values and the step's constants never change: made once, not every frame.
        self._reference = reference_keys_values(networks, [s.appearance for s in self.samplers])
        self._step = prepare_step(networks, self.scheduler, [s.appearance for s in self.samplers],
                                  self.samplers[0].settings.cfg, self._reference)

    def denoise(self, pose_pixels: torch.Tensor, on_step=None) -> torch.Tensor:
        """One frame for every video: pose_pixels [K, 3, H, W] -> latents [K, C, h, w]; advances every state."""
        starts = torch.stack([s.state.start_latent() for s in self.samplers])
        if not self._step.fits(self.networks):
            self._step = prepare_step(self.networks, self.scheduler, [s.appearance for s in self.samplers],
                                      self.samplers[0].settings.cfg, self._reference)
        latents = denoise_batch(self.networks, self.scheduler, [s.appearance for s in self.samplers],
                                self.samplers[0].settings.cfg, starts, pose_pixels, on_step, step=self._step)
        for sampler, latent in zip(self.samplers, latents):
            sampler.state = sampler.state.advanced(latent)
        return latents


def check_appearance(networks, appearance) -> None:
    """Refuse an appearance encoded by other networks: its reference tokens are their reference UNet's."""
    made_by = getattr(appearance, "model_fingerprint", "")
    if made_by != networks.fingerprint:
        raise TalkingPoseError(
            "This appearance was encoded with another TalkingPose model or LoRA setting"
            + (f" ({made_by}, this one is {networks.fingerprint})" if made_by else "")
            + ": its reference features fit only the model that made them. Run Appearance Encode with the model "
            "you sample with (the same Load TalkingPose Model or Load TalkingPose LoRA output)."
        )


def denoise_batch(networks, scheduler, appearances, cfg: float, start: torch.Tensor, pose_pixels: torch.Tensor,
                  on_step=None, reference=None, step: GuidedStep | None = None) -> torch.Tensor:
    """Denoise one frame for each of `n` independent videos at once ([n, C, h, w] -> [n, C, h, w], float32).

    `reference` is the appearances' stacked keys/values when the caller keeps them (`reference_keys_values`);
    `step` the `GuidedStep` the caller keeps for the video (`guided_step`); either is made here when not given.
    """
    n = start.shape[0]
    if pose_pixels.shape[0] != n:
        raise ValueError(f"{pose_pixels.shape[0]} pose frames for {n} videos")
    if step is None:
        step = prepare_step(networks, scheduler, appearances, cfg, reference)
    return step.denoise(start, networks.pose_features(pose_pixels), on_step)


def prepare_step(networks, scheduler, appearances, cfg: float, reference=None, mode: str | None = None) -> GuidedStep:
    """The guided step for these appearances, with the video's constants computed (see `guided_step`)."""
    if reference is None:
        reference = reference_keys_values(networks, appearances)
    context = torch.cat([a.image_context for a in appearances])
    return GuidedStep(networks, scheduler, context, reference, cfg, appearances[0].height, appearances[0].width, mode)


@torch.no_grad()
def reference_keys_values(networks, appearances):
    """The appearances' reference tokens projected to the denoising blocks' keys and values, stacked (row i =
    appearance i). Projected per appearance, as one appearance alone is, so batching changes no value."""
    return stack_references([networks.project_reference(a.reference_tokens) for a in appearances])


def stack_references(references):
    """Per-block keys/values of several appearances as one batch (row i = appearance i)."""
    if len(references) == 1:
        return references[0]
    return {name: tuple(torch.cat([r[name][i] for r in references]) for i in range(2)) for name in references[0]}
