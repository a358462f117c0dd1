"""The noise-aware toy CLIP (GLIDE-style): an image encoder that reads a noised image ``x_t`` and its ``t``.

GLIDE (Nichol et al. 2022, sec. 2.3) guides with a CLIP trained on noised images, so that the guidance
gradient is taken on ``x_t`` itself instead of on an estimate of ``x_0``. This model is the toy CLIP of
:mod:`bdlib.worlds.toy.clip_model` (own weights, own text encoder) whose image blocks are FiLM-modulated by a
time embedding::

    e(t) = MLP(sinusoidal(t))                      t on the original scale, 0..999 (float)
    h    = GroupNorm(conv(h)) · (1 + γ_k(e)) + β_k(e)  in every residual block k

It is trained contrastively like the toy CLIP, on ``x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε`` over the toy DDPM's 1000
steps (``toy_diffusion(None)``, linear schedule), with the same mix of full scenes and masked single objects
(the mask is applied to ``x_t``: outside = 0) and the same augmentations. ``t`` is drawn as ``⌊1000 u²⌋``
rather than uniformly: on the linear schedule ``ᾱ_500 ≈ 0.08`` and ``ᾱ_750 ≈ 0.003``, so late steps carry
almost no signal and, drawn uniformly, their irreducible loss swamped the gradient (in a 20-minute run with
uniform ``t`` the model learned colour but reached only 54 % shape accuracy on clean images). FiLM layers
start at zero, so the network starts as an unconditioned toy CLIP.

Interface: that of :class:`~bdlib.worlds.toy.clip_model.ToyClip` except that the image side takes the
timesteps: ``encode_image(x_t, timesteps)`` and ``encode_pixels(pixels, timesteps)``, with ``timesteps``
(B,) or a number, on the original 0..999 scale (``Diffusion.model_timesteps`` gives them for a respaced
diffusion).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bdlib.nets.unet_blocks import timestep_embedding
from bdlib.runtime.precision import at_least_float32

from . import tokenizer as tok
from .clip_model import (
    EVAL_SEED,
    ToyClip,
    caption_targets,
    class_metrics,
    contrastive_loss,
    single_and_masked_sets,
    training_views,
    write_json,
    zero_shot,
)
from .ddpm import toy_diffusion
from .region_views import warp_part
from .scenes import generate_scenes
from .trainer import TrainConfig
from .weights_io import export_checkpoint, load_shipped

TOY_NOISE_AWARE_CLIP_CONFIG: dict = {
    "width": 32,
    "embed_dim": 128,
    "text_width": 128,
    "text_layers": 2,
    "text_heads": 4,
    "time_dim": 128,
}
TOY_NOISE_AWARE_CLIP_BATCH = 128
TOY_NOISE_AWARE_CLIP_TRAINING: dict = {
    "seed": 2,
    "lr": 1e-3,
    "weight_decay": 0.01,
    "warmup_steps": 200,
    "ema_decay": 0.998,
    "bf16": True,
}
EVAL_TIMESTEPS: tuple[int, ...] = (0, 250, 500, 750, 900)
T_POWER = 2.0
"""Training draws ``t = floor(T · u^T_POWER)``, ``u ~ U(0, 1)``: half the batch below t = 250, 13 % above 750."""


class NoiseAwareToyClip(ToyClip):
    """Toy CLIP over ``(x_t, t)``; see the module docstring."""

    def __init__(
        self,
        width: int = 32,
        embed_dim: int = 128,
        text_width: int = 128,
        text_layers: int = 2,
        text_heads: int = 4,
        time_dim: int = 128,
    ) -> None:
        super().__init__(width, embed_dim, text_width, text_layers, text_heads, cond_dim=time_dim)
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))

    def _timesteps(self, timesteps: torch.Tensor | float, batch: int) -> torch.Tensor:
        t = torch.as_tensor(timesteps, dtype=torch.float32, device=self.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"give one timestep per image or a single number: {batch} images, {t.numel()} timesteps")
        return t

    def encode_pixels(self, pixels: torch.Tensor, timesteps: torch.Tensor | float) -> torch.Tensor:
        """Embed prepared input (normalised ``x_t``, 32x32) at original-scale ``timesteps``; float32 (float64 for a
        float64 network), (B, D)."""
        self._check_pixels(pixels)
        t = self._timesteps(timesteps, pixels.shape[0])
        dtype = at_least_float32(next(self.parameters()).dtype)
        cond = self.time_mlp(timestep_embedding(t, self.time_dim, dtype=dtype))
        return self.visual(pixels.to(self.device), cond).to(dtype)

    def encode_image(self, images_pm1: torch.Tensor, timesteps: torch.Tensor | float) -> torch.Tensor:
        """Image embeddings of noised images ``x_t`` (B, 3, H, W) at ``timesteps``; float32 (B, D). Not normalised."""
        return self.encode_pixels(self.preprocess(images_pm1), timesteps)


def build_toy_noise_aware_clip() -> NoiseAwareToyClip:
    """A freshly initialised noise-aware toy CLIP (``TOY_NOISE_AWARE_CLIP_CONFIG``)."""
    return NoiseAwareToyClip(**TOY_NOISE_AWARE_CLIP_CONFIG)


def toy_noise_aware_clip_step_fn(
    batch_size: int = TOY_NOISE_AWARE_CLIP_BATCH, device: str | torch.device = "cpu", warp_fraction: float = 0.5
):
    """A trainer step: fresh scenes noised to uniform ``t``, the view mix on ``x_t``, contrastive loss."""
    diffusion = toy_diffusion(None)

    def step(model: nn.Module, step_index: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        batch = generate_scenes(batch_size, generator=generator)
        t = (diffusion.num_steps * torch.rand(batch_size, generator=generator) ** T_POWER).long()
        noise = torch.randn(batch.images.shape, generator=generator)
        x_t = diffusion.q_sample(batch.images, t, noise)
        views, captions = training_views(batch, generator, images=x_t)
        views = warp_part(views, generator, warp_fraction).to(device)
        distinct, index = caption_targets(captions)
        text = model.text(tok.tokenize(distinct).to(device))
        image = model.encode_pixels(views, diffusion.model_timesteps(t).to(device))
        loss, acc = contrastive_loss(image, text, index.to(device), model.logit_scale)
        return {"loss": loss, "acc": acc, "logit_scale": model.logit_scale.detach().exp()}

    return step


def toy_noise_aware_clip_train_config(checkpoint: Path, minutes: float, **overrides) -> TrainConfig:
    """The recommended :class:`TrainConfig` (batch size: ``TOY_NOISE_AWARE_CLIP_BATCH``)."""
    return TrainConfig(
        checkpoint=Path(checkpoint),
        minutes=minutes,
        **{**TOY_NOISE_AWARE_CLIP_TRAINING, "meta": {"batch_size": TOY_NOISE_AWARE_CLIP_BATCH}, **overrides},
    )


def evaluate_toy_noise_aware_clip(
    model: NoiseAwareToyClip,
    n: int = 2100,
    seed: int = EVAL_SEED,
    timesteps: tuple[int, ...] = EVAL_TIMESTEPS,
    out: Path | None = None,
) -> dict:
    """Zero-shot 21-way accuracy of ``x_t`` at each of ``timesteps``: ``single`` (one object, whole image) and
    ``masked`` (an object of a 3-object scene; box + 2 px; the mask applied to ``x_t``)."""
    model = model.eval()
    diffusion = toy_diffusion(None)
    sets = single_and_masked_sets(n, seed)
    metrics: dict = {"n": n, "seed": seed}
    for name, (images, labels, masks) in sets.items():
        noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed + 3))
        metrics[name] = {}
        for step in timesteps:
            t = torch.full((images.shape[0],), step, dtype=torch.long)
            x_t = diffusion.q_sample(images, t, noise) * masks  # = q_sample(x0) ⊙ m
            metrics[name][str(step)] = class_metrics(zero_shot(model, x_t, diffusion.model_timesteps(t)), labels)
    return write_json(metrics, out)


def export_toy_noise_aware_clip(checkpoint: Path, metrics: dict, path: Path | None = None) -> Path:
    """Ship the EMA weights of a training checkpoint as ``weights/toy_noise_aware_clip.safetensors`` (with metrics)."""
    return export_checkpoint(checkpoint, "toy_noise_aware_clip", TOY_NOISE_AWARE_CLIP_CONFIG, metrics, path)


def load_toy_noise_aware_clip(device: str | torch.device = "cpu") -> NoiseAwareToyClip:
    """The shipped noise-aware toy CLIP, eval mode, frozen (gradients still flow to ``x_t``)."""
    return load_shipped("toy_noise_aware_clip", build_toy_noise_aware_clip, device)
