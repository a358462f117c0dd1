"""The toy DDPM: the paper's UNet class at a small width, trained on procedural 32x32 scenes.

It follows guided-diffusion's recipe, so that sampling in the toy world runs exactly the paper's code
path: a linear 1000-step schedule, a learned σ (6 output channels, the hybrid loss
``L_simple + L_vb``), EMA weights, and respacing at sampling time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from bdlib.core.diffusion import Diffusion, create_diffusion
from bdlib.nets.training_losses import hybrid_loss
from bdlib.nets.unet import UNetModel
from bdlib.worlds.toy.scenes import generate_scenes
from bdlib.worlds.toy.trainer import TrainConfig
from bdlib.worlds.toy.weights_io import export_checkpoint, load_shipped

#: ``UNetModel`` keywords of the toy DDPM (1.92 M parameters): levels at 32, 16 and 8 pixels, attention
#: at 8x8 (downsample rate 4), BigGAN up/down ResBlocks and scale-shift norm like the paper's model.
TOY_UNET_CONFIG: dict[str, Any] = {
    "image_size": 32,
    "in_channels": 3,
    "model_channels": 32,
    "out_channels": 6,
    "num_res_blocks": 2,
    "attention_resolutions": (4,),
    "dropout": 0.0,
    "channel_mult": (1, 2, 2),
    "num_head_channels": 32,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
    "norm_groups": 8,  # 4 channels per group at the first level; 32 groups would make it an instance norm
}
TOY_DIFFUSION_STEPS = 1000
TOY_DDPM_BATCH = 64
#: How the shipped toy DDPM was trained (bf16 autocast on CPU, AdamW, EMA of the weights).
TOY_DDPM_TRAINING: dict[str, Any] = {"lr": 3e-4, "ema_decay": 0.9995, "warmup_steps": 200, "grad_clip": 1.0}


def build_toy_ddpm() -> UNetModel:
    """A freshly initialised toy DDPM network."""
    return UNetModel(**TOY_UNET_CONFIG)


def toy_diffusion(respacing: str | None = "100") -> Diffusion:
    """The toy DDPM's diffusion (linear, 1000 steps, learned σ), respaced for sampling."""
    return create_diffusion(TOY_DIFFUSION_STEPS, "linear", respacing=respacing, learn_sigma=True)


def toy_ddpm_step_fn(batch_size: int = TOY_DDPM_BATCH, device: str | torch.device = "cpu"):
    """A :mod:`trainer` step function: fresh scenes, uniform ``t``, the hybrid loss averaged over the batch."""
    diffusion = toy_diffusion(respacing=None)

    def step(model: nn.Module, step_index: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        x0 = generate_scenes(batch_size, generator=generator).images.to(device)
        t = torch.randint(0, diffusion.num_steps, (batch_size,), generator=generator).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        x_t = diffusion.q_sample(x0, t, noise)
        terms = hybrid_loss(diffusion, model(x_t, diffusion.model_timesteps(t)), x0, x_t, t, noise)
        return {name: value.mean() for name, value in terms.items()}

    return step


def toy_ddpm_train_config(checkpoint: Path, minutes: float, **overrides) -> TrainConfig:
    """The recommended :class:`TrainConfig` of the toy DDPM (batch size ``TOY_DDPM_BATCH``)."""
    return TrainConfig(
        checkpoint=Path(checkpoint),
        minutes=minutes,
        **{**TOY_DDPM_TRAINING, "meta": {"batch_size": TOY_DDPM_BATCH}, **overrides},
    )


def export_toy_ddpm(checkpoint: Path, metrics: dict, path: Path | None = None) -> Path:
    """Ship the EMA weights of a training checkpoint as ``weights/toy_ddpm.safetensors`` (with its metrics)."""
    return export_checkpoint(checkpoint, "toy_ddpm", TOY_UNET_CONFIG, metrics, path)


def load_toy_ddpm(device: str | torch.device = "cpu") -> UNetModel:
    """The shipped toy DDPM (EMA weights), eval mode, frozen (gradients still flow to ``x_t``)."""
    return load_shipped("toy_ddpm", build_toy_ddpm, device)
