"""The official TalkingPose training recipe, and the loss of one training step.

What the official `train.py` with `configs/train/training.yaml` (dfki-av/TalkingPose at 6df5cb9) does, restated:

Data. One sample is a pair of frames of one video: the reference frame is drawn uniformly; the target frame is
drawn uniformly among the frames at least `sample_margin` (10) frames after it, or, when there are none, among
those at least `sample_margin` frames before it, or, when there are none either, from the whole video. The
target frame, its pose render and the reference frame all get the same random resized crop (torchvision's
`RandomResizedCrop`: area 0.9–1.0 of the frame, aspect ratio 0.9–1.0, bilinear, to the training size; one random
state reused for the three), the two frames are normalised to [-1, 1], the pose render is kept in [0, 1]. The
CLIP input is the uncropped reference frame through `CLIPImageProcessor()` (shortest side to 224, centre crop).

Latents. Both frames go through the VAE; the latent is a *sample* of the posterior (not its mean) × 0.18215.

Noise and time. `noise = randn_like(latents) + 0.05 · randn(B, C, 1, 1)` (noise offset); timesteps uniform in
[0, 1000). The scheduler is diffusers' `DDIMScheduler` with the training config's kwargs (1000 steps,
betas 0.00085–0.012 on the *scaled_linear* schedule — the inference config uses *linear* —, steps_offset 1,
clip_sample off) plus zero terminal SNR (`rescale_betas_zero_snr`), trailing spacing and v-prediction.
Noisy latents come from `add_noise`, the target from `get_velocity` (v-prediction).

Unconditional rows. Once per step, with probability 0.1 (`uncond_ratio`), the whole batch is unconditional: the
CLIP *pixels* are zeroed (so the context is the encoder's embedding of an all-zero normalised image, not a zero
embedding) and the reference UNet is not run, so the denoising UNet's self-attention sees no reference tokens.

Network. The pose guider's features are added after the denoising UNet's `conv_in`; the reference UNet runs at
timestep 0 on the reference latent with the CLIP context; the input tokens of each of its transformer blocks'
self-attention are appended to the keys and values of the matching block of the denoising UNet. On the way
between the two UNets the official code casts those tokens to float16 (`ReferenceAttentionControl.update`'s
default dtype), so even a float32 run rounds them to half precision; we round them the same way.

Loss. Min-SNR weighting with gamma = 5: per row `min(snr + 1, 5) / (snr + 1)` (the +1 because of v-prediction) times
the row's mean squared error (in float32), averaged over the batch.

Optimisation. AdamW (betas 0.9/0.999, weight decay 0.01, eps 1e-8), constant learning rate (1e-5 there, for
the full networks), gradient norm clipped to 1.0 over the trainable parameters, fp16 mixed precision on GPU.
Trained: the whole denoising UNet, the whole pose guider, the reference UNet except `up_blocks.3`. VAE and CLIP
image encoder frozen.

What fine-tuning here changes, and why: the trainable set is the same but adapted through LoRA on the attention
projections (see `trainer.py`), with a LoRA-sized learning rate; the crops are a fixed bank of a few crops per
clip drawn from the same distribution (so that VAE latents are computed once, not every step); everything
else above is kept as is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F

LATENT_SCALE = 0.18215
REFERENCE_FROZEN_PREFIX = "up_blocks.3."  # the part of the reference UNet the official code leaves untrained

# configs/train/training.yaml's noise_scheduler_kwargs with the zero-SNR switches train.py adds.
TRAINING_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "clip_sample": False,
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
    "prediction_type": "v_prediction",
}


@dataclass(frozen=True)
class Recipe:
    """The official training constants (configs/train/training.yaml)."""

    sample_margin: int = 10
    crop_scale: tuple[float, float] = (0.9, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.0)
    noise_offset: float = 0.05
    snr_gamma: float = 5.0
    uncond_ratio: float = 0.1
    max_grad_norm: float = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    latent_scale: float = LATENT_SCALE

    def as_dict(self) -> dict:
        return {**asdict(self), "scheduler": dict(TRAINING_SCHEDULER)}


OFFICIAL = Recipe()


def training_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**TRAINING_SCHEDULER)


@dataclass
class TrainingBatch:
    """One step's inputs. latents, ref_latents: [B, 4, h, w] posterior samples × latent scale; image_context:
    [B, 1, C] CLIP image embeddings (of zeroed pixels for an unconditional step); pose: [B, 3, H, W] in [0, 1]."""

    latents: torch.Tensor
    ref_latents: torch.Tensor
    image_context: torch.Tensor
    pose: torch.Tensor


@dataclass
class StepDraws:
    """The step's random draws. noise: [B, 4, h, w]; offset_noise: [B, 4]; timesteps: [B] long."""

    noise: torch.Tensor
    offset_noise: torch.Tensor
    timesteps: torch.Tensor
    unconditional: bool


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-row loss weights min(SNR', gamma) / SNR', SNR' = SNR + 1 for v-prediction (Hang et al., Min-SNR)."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        snr = snr + 1
    return snr.clamp(max=gamma) / snr


def _as_official_reference_tokens(tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # The official hand-over between the UNets stores the tokens in float16. The values are rounded the same way
    # here; the gradient passes at full precision, as under the official fp16 training's loss scaling (a plain
    # float16 cast would also round the backward pass, where these small gradients underflow).
    return {name: t + (t.to(torch.float16).to(t.dtype) - t).detach() for name, t in tokens.items()}


def step_loss(networks, scheduler, batch: TrainingBatch, draws: StepDraws, recipe: Recipe = OFFICIAL,
              backward=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The official training loss of one step -> (loss, per-row weighted MSE).

    `backward(loss)`, when given, runs inside the networks' conditioning, so gradient-checkpointed blocks that
    recompute their forward during the backward pass see the same reference tokens and pose features.
    """
    device, dtype = networks.weights_device, networks.weights_dtype
    latents = batch.latents.to(device, torch.float32)
    noise = draws.noise.to(device, torch.float32)
    if recipe.noise_offset > 0:
        noise = noise + recipe.noise_offset * draws.offset_noise.to(device, torch.float32)[:, :, None, None]
    timesteps = draws.timesteps.to(device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = scheduler.get_velocity(latents, noise, timesteps)
    context = batch.image_context.to(device, dtype)

    pose_features = networks.pose_guider(batch.pose.to(device, dtype))
    reference = None
    if not draws.unconditional:
        tokens = networks.reference_tokens(batch.ref_latents, context)
        reference = networks.project_reference(_as_official_reference_tokens(tokens))
    with networks.conditioning(pose_features, reference):
        prediction = networks.denoising_unet(noisy.to(dtype), timesteps, encoder_hidden_states=context, return_dict=False)[0]
        mse = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        weights = min_snr_weights(scheduler, timesteps, recipe.snr_gamma) if recipe.snr_gamma else torch.ones_like(mse)
        loss = (mse * weights).mean()
        if backward is not None:
            backward(loss)
    return loss, mse * weights
