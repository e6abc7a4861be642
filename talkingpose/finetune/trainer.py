"""LoRA fine-tuning of the TalkingPose networks on one clip, with checkpoints that resume bit-exactly.

What is adapted: low-rank adapters (peft, through diffusers' PEFT integration) on the attention projections
(to_q, to_k, to_v, to_out.0) of the denoising UNet and of the reference UNet outside `up_blocks.3` — the
official recipe's trainable set, restricted to attention — and, optionally, the whole pose guider (about a
million parameters), as the official recipe trains it.

Defaults and why: rank 16, alpha 16 (scale 1): enough capacity for one person's look (teeth, hands, clothes)
in about 12 MB per SD1.5-size UNet (float32), the rank LoRA fine-tunes of SD1.5 UNets commonly use; learning rate 1e-4, the
usual LoRA rate for SD1.5 UNets (the official 1e-5 is for updating the full weights, whose updates are not
confined to a low-rank subspace starting from zero); batch 4 at 512² and 1,000 steps (4,000 frame pairs, a
few passes over 30 seconds of video). Everything else is the official recipe (`recipe.py`).

Determinism: every random draw of a step comes from one `torch.Generator`, whose state is saved with the
adapter, the optimizer and the loss history; a run resumed from a checkpoint makes the same adapter, bit for
bit on a CPU, as one that never stopped. A checkpoint is written every `checkpoint_every` steps and when the run
is interrupted (Ctrl-C, Cancel, an error such as running out of memory) between two steps' updates; it is always
written through `durable`, so the previous one survives a crash or a full disk during the write.
"""
from __future__ import annotations

import contextlib
import errno
import io
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch

from ..errors import TalkingPoseError
from .. import durable, lora
from .data import ClipCache
from .recipe import OFFICIAL, Recipe, StepDraws, TrainingBatch, step_loss, training_scheduler

log = logging.getLogger("TalkingPose")

CHECKPOINT_FORMAT = "talkingpose-finetune-checkpoint/1"
TRAINING_ADAPTER = "talkingpose_training"
EVAL_SEED = 1234  # the fixed batch the loss is reported on


@dataclass
class FinetuneSettings:
    steps: int = 1000
    rank: int = 16
    alpha: float | None = None  # None: equal to rank
    lr: float = 1e-4
    batch: int = 4
    width: int = 512
    height: int = 512
    frames: int | None = None  # use the first N frames of the clip (None: all)
    crops: int = 4  # random resized crops encoded per frame
    seed: int = 0
    checkpoint_every: int = 200
    train_pose_guider: bool = False

    def __post_init__(self):
        if self.alpha is None:
            self.alpha = float(self.rank)
        if int(self.steps) != self.steps or self.steps < 1:
            raise TalkingPoseError(f"steps is {self.steps}; give a whole number of at least 1 (e.g. 1000).")
        if int(self.rank) != self.rank or self.rank < 1:
            raise TalkingPoseError(f"rank is {self.rank}; give a whole number of at least 1 (e.g. 16).")
        if not (self.lr == self.lr) or self.lr <= 0 or math.isinf(self.lr):
            raise TalkingPoseError(f"The learning rate is {self.lr}; it must be a positive number (e.g. 1e-4).")
        if not self.alpha > 0:
            raise TalkingPoseError(f"alpha is {self.alpha}; it must be positive (default: the rank).")
        if int(self.batch) != self.batch or self.batch < 1:
            raise TalkingPoseError(f"batch is {self.batch}; give a whole number of at least 1 (e.g. 4).")
        if self.frames is not None and self.frames < 1:
            raise TalkingPoseError(f"frames is {self.frames}; give at least 11 frames (or leave it out to use all).")
        if self.crops < 1:
            raise TalkingPoseError(f"crops is {self.crops}; encode at least one crop per frame.")
        if self.checkpoint_every < 1:
            raise TalkingPoseError(f"checkpoint_every is {self.checkpoint_every}; it must be at least 1.")
        from ..images import check_output_size

        check_output_size(self.width, self.height)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FinetuneSettings":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# Settings that must be equal for a checkpoint to continue (steps may grow; checkpoint_every may change).
_RESUME_KEYS = ("rank", "alpha", "lr", "batch", "width", "height", "frames", "crops", "seed", "train_pose_guider")


@dataclass
class FinetuneResult:
    adapter: lora.LoraAdapter
    losses: list[float]
    eval_before: float
    eval_after: float
    seconds: float  # of this call (a resumed run counts only its own steps)


def loss_summary(losses: list[float], points: int = 100) -> dict:
    """First/last/min loss, the mean of the first and last tenth, and the curve averaged down to <= `points`."""
    n = len(losses)
    tenth = max(1, n // 10)
    chunk = max(1, math.ceil(n / points))
    curve = [sum(losses[i:i + chunk]) / len(losses[i:i + chunk]) for i in range(0, n, chunk)]
    return {"steps": n, "first": losses[0], "last": losses[-1], "min": min(losses),
            "mean_first_tenth": sum(losses[:tenth]) / tenth, "mean_last_tenth": sum(losses[-tenth:]) / tenth,
            "curve_every": chunk, "curve": curve}


def add_training_adapter(networks, targets: dict[str, list[str]], rank: int, alpha: float, seed: int,
                         gradient_checkpointing: bool = False) -> list[torch.nn.Parameter]:
    """Inject a fresh float32 LoRA adapter (B = 0, so the networks compute exactly what they did) on `targets`
    and return its parameters, the only ones left trainable."""
    networks.requires_grad_(False)
    params = []
    # peft initialises A from the global RNG: seed it here, without disturbing the caller's stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for part in lora.UNETS:
            unet = getattr(networks, part)
            unet.add_adapter(lora.lora_config(rank, alpha, targets[part]), adapter_name=TRAINING_ADAPTER)
            unet.set_adapters([TRAINING_ADAPTER], weights=[1.0])
            unet.enable_adapters()
            for name, param in unet.named_parameters():
                if f".{TRAINING_ADAPTER}." in name or name.endswith(f".{TRAINING_ADAPTER}"):
                    param.data = param.data.float()
                    param.requires_grad_(True)
                    params.append(param)
            if gradient_checkpointing:
                unet.enable_gradient_checkpointing()
    return params


class LoraTrainer:
    """Fine-tunes `networks` (a TalkingPoseNetworks, base weights frozen) on `cache` with `settings`.

    On CUDA: base weights may be half precision; the adapters are float32 and the passes run under autocast
    (bfloat16 where supported, else float16 with a gradient scaler) with gradient checkpointing. On CPU:
    float32 throughout.
    """

    def __init__(self, networks, cache: ClipCache, settings: FinetuneSettings, recipe: Recipe = OFFICIAL,
                 gradient_checkpointing: bool | None = None, clip_info: dict | None = None):
        if networks.lora_stack and any(s != 0 for _, s in networks.lora_stack):
            raise TalkingPoseError("This model has a LoRA loaded; fine-tune the base model (without Load TalkingPose LoRA).")
        self.networks = networks
        self.cache = cache
        self.clip_info = dict(clip_info or {})  # where the clip came from, for the adapter's metadata
        self.settings = settings
        self.recipe = recipe
        self.scheduler = training_scheduler()
        self.device = networks.weights_device
        cuda = self.device.type == "cuda"
        if cuda:
            self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.autocast_dtype = None
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        self.gradient_checkpointing = cuda if gradient_checkpointing is None else gradient_checkpointing
        self.targets = lora.target_modules(networks)
        self.base_probe = lora.base_probe(networks, self.targets)
        self._pose_guider_base = None
        self.params = self._inject()
        self.optimizer = torch.optim.AdamW(
            self.params, lr=settings.lr, betas=recipe.adam_betas, weight_decay=recipe.adam_weight_decay, eps=recipe.adam_epsilon,
        )
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.losses: list[float] = []
        self.step = 0
        self.eval_before: float | None = None
        self.checkpoint_step: int | None = None  # the step of the checkpoint on the disk (saved or resumed)

    # -------------------------------------------------------------------------------------------- adapters
    def _inject(self) -> list[torch.nn.Parameter]:
        lora.activate(self.networks, ())  # no inference adapter may be active while training
        params = add_training_adapter(self.networks, self.targets, self.settings.rank, self.settings.alpha,
                                      self.settings.seed, self.gradient_checkpointing)
        if self.settings.train_pose_guider:
            guider = self.networks.pose_guider
            self._pose_guider_base = {k: v.detach().clone() for k, v in guider.state_dict().items()}
            guider.float().requires_grad_(True)
            params.extend(guider.parameters())
        return params

    def remove_adapter(self) -> None:
        """Take the training adapter out again (the networks are as before training; pose guider restored)."""
        nets = self.networks
        for part in lora.UNETS:
            unet = getattr(nets, part)
            if TRAINING_ADAPTER in getattr(unet, "peft_config", {}):
                unet.delete_adapters([TRAINING_ADAPTER])
            if self.gradient_checkpointing:
                unet.disable_gradient_checkpointing()
        if self._pose_guider_base is not None:
            dtype = nets.denoising_unet.conv_in.weight.dtype
            nets.pose_guider.load_state_dict(self._pose_guider_base)
            nets.pose_guider.to(dtype)
        nets.requires_grad_(False)
        lora.activate(nets, nets.lora_stack)

    def adapter_weights(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor] | None]:
        from peft.utils import get_peft_model_state_dict

        unets = {part: {k: v.detach().cpu().float().clone() for k, v in
                        get_peft_model_state_dict(getattr(self.networks, part), adapter_name=TRAINING_ADAPTER).items()}
                 for part in lora.UNETS}
        guider = None
        if self.settings.train_pose_guider:
            guider = {k: v.detach().cpu().float().clone() for k, v in self.networks.pose_guider.state_dict().items()}
        return unets, guider

    def _load_adapter_weights(self, unets: dict, guider: dict | None) -> None:
        from peft.utils import set_peft_model_state_dict

        for part, weights in unets.items():
            result = set_peft_model_state_dict(getattr(self.networks, part), weights, adapter_name=TRAINING_ADAPTER)
            if getattr(result, "unexpected_keys", None):
                raise TalkingPoseError(f"The checkpoint's adapter does not fit this model ({result.unexpected_keys[0]}).")
        if guider is not None:
            self.networks.pose_guider.load_state_dict(guider)

    # -------------------------------------------------------------------------------------------- loss
    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _loss(self, batch: TrainingBatch, draws: StepDraws, backward=None) -> torch.Tensor:
        with self._autocast():
            loss, _ = step_loss(self.networks, self.scheduler, batch, draws, self.recipe, backward=backward)
        return loss

    @torch.no_grad()
    def fixed_batch_loss(self) -> float:
        """The loss on one fixed, conditional batch of the clip (same pairs, crops, noise and timesteps every
        time): how well the current adapter fits the clip."""
        generator = torch.Generator().manual_seed(EVAL_SEED)
        batch, draws = self.cache.draw(generator, self.settings.batch, self.recipe, unconditional=False)
        return float(self._loss(batch, draws))

    # -------------------------------------------------------------------------------------------- checkpoints
    def checkpoint_state(self, rng_state: torch.Tensor) -> dict:
        unets, guider = self.adapter_weights()
        return {
            "format": CHECKPOINT_FORMAT,
            "settings": self.settings.as_dict(),
            "clip_key": self.cache.key(),
            "base_fingerprint": self.networks.base_fingerprint,
            "step": self.step,
            "unets": unets,
            "pose_guider": guider,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng_state.clone(),
            "losses": list(self.losses),
            "eval_before": self.eval_before,
        }

    def save_checkpoint(self, path: Path, rng_state: torch.Tensor) -> Path:
        """Serialised in memory, then written through `durable`: a full disk (or any write error) leaves the
        previous checkpoint as it was and no partial file, and is a sentence saying what was kept."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(self.checkpoint_state(rng_state), buffer)
        try:
            durable.write_bytes(path, buffer.getvalue())
        except OSError as exc:
            raise TalkingPoseError(f"Could not save the checkpoint of step {self.step} to {path} ({exc.strerror or exc}); "
                                   f"nothing of it is left on the disk. {self.kept_checkpoint(exc)}") from exc
        self.checkpoint_step = self.step
        return path

    def kept_checkpoint(self, exc: OSError) -> str:
        """What a failed save leaves to continue from, and how."""
        fix = "free some disk space" if exc.errno == errno.ENOSPC else "fix that"
        if self.checkpoint_step is None:
            return f"No checkpoint of this run is kept: {fix} and run the same command again (it starts at step 0)."
        return (f"The checkpoint of step {self.checkpoint_step} is kept: {fix} and continue with --resume (in "
                "ComfyUI: queue again with resume on).")

    def load_checkpoint(self, path: Path) -> None:
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise TalkingPoseError(f"The checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
                                   "delete it to start over.") from exc
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise TalkingPoseError(f"{path} is not a TalkingPose fine-tuning checkpoint.")
        saved = state["settings"]
        now = self.settings.as_dict()
        differs = [f"{k} {saved.get(k)!r} then, {now[k]!r} now" for k in _RESUME_KEYS if saved.get(k) != now[k]]
        if state["base_fingerprint"] != self.networks.base_fingerprint:
            differs.append("another base model")
        if state["clip_key"] != self.cache.key():
            differs.append("other frames or poses")
        if differs:
            raise TalkingPoseError(
                f"The checkpoint {path} belongs to another run (" + "; ".join(differs) + "). Use the same options "
                "to continue it, or delete it to start over."
            )
        if state["step"] > self.settings.steps:
            raise TalkingPoseError(f"The checkpoint is at step {state['step']}, beyond the {self.settings.steps} steps asked for; "
                                   f"ask for at least {state['step']}.")
        self._load_adapter_weights(state["unets"], state["pose_guider"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["rng"])
        self.losses = list(state["losses"])
        self.step = int(state["step"])
        self.checkpoint_step = self.step
        self.eval_before = state["eval_before"]

    # -------------------------------------------------------------------------------------------- training
    def _update(self, loss_holder: list) -> None:
        batch, draws = self.cache.draw(self.generator, self.settings.batch, self.recipe)

        def backward(loss):
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_holder.append(float(loss.detach()))

        self.optimizer.zero_grad(set_to_none=True)
        self._loss(batch, draws, backward)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, self.recipe.max_grad_norm)

    def train(self, checkpoint: Path | None = None, on_step: Callable[[int, int, float], None] | None = None) -> FinetuneResult:
        """Train up to `settings.steps`; `on_step(step, steps, loss)` after each step (may raise to stop: the
        state after that step is checkpointed). On any exception between updates the last finished step is
        checkpointed before the exception goes on."""
        started = time.perf_counter()
        first_step = self.step
        if self.eval_before is None:
            self.eval_before = self.fixed_batch_loss()
        rng_state = self.generator.get_state()
        updating = saving = False
        try:
            while self.step < self.settings.steps:
                holder: list[float] = []
                self._update(holder)
                updating = True  # parameters and optimizer change from here until the step is counted
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.step += 1
                self.losses.append(holder[0])
                rng_state = self.generator.get_state()
                updating = False
                if checkpoint is not None and self.step % self.settings.checkpoint_every == 0 and self.step < self.settings.steps:
                    saving = True  # a save that failed is not tried again below
                    self.save_checkpoint(checkpoint, rng_state)
                    saving = False
                if on_step is not None:
                    on_step(self.step, self.settings.steps, holder[0])
        except BaseException as exc:
            if checkpoint is not None and not updating and not saving and self.step > first_step:
                self.save_checkpoint(checkpoint, rng_state)
                log.info("Stopped after step %d; checkpoint saved to %s.", self.step, checkpoint)
            if isinstance(exc, torch.OutOfMemoryError):
                raise TalkingPoseError(
                    f"Out of {self.device.type.upper()} memory at batch {self.settings.batch}, "
                    f"{self.settings.width}×{self.settings.height}, rank {self.settings.rank}. Lower the batch "
                    "(--batch) or the size (--size), then continue with --resume"
                    + (" (the finished steps are in the checkpoint)." if checkpoint is not None and self.step else ".")
                ) from exc
            raise
        eval_after = self.fixed_batch_loss()
        return FinetuneResult(self.make_adapter(eval_after), list(self.losses), self.eval_before, eval_after,
                              time.perf_counter() - started)

    def make_adapter(self, eval_after: float | None = None) -> lora.LoraAdapter:
        unets, guider = self.adapter_weights()
        info = {
            "base_fingerprint": self.networks.base_fingerprint,
            "base_source": self.networks.source,
            "base_probe": self.base_probe,
            "recipe": self.recipe.as_dict(),
            "settings": self.settings.as_dict(),
            "clip": {**self.cache.summary(), **self.clip_info},
            "steps": self.step,
            "loss": loss_summary(self.losses) if self.losses else {},
            "fixed_batch_loss": {"before": self.eval_before, "after": eval_after},
            "pose_guider": "trained" if guider is not None else "base",
        }
        return lora.LoraAdapter(self.settings.rank, float(self.settings.alpha), unets, guider, info)
