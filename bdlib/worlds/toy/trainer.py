"""A small, resumable training loop shared by every toy model (DDPM, CLIP, noise-aware CLIP, oracle).

Each step draws fresh procedural scenes from a generator seeded by ``(seed, step)``, so a resumed run
sees exactly the data an uninterrupted run would have seen, and no data set is ever stored. The loop
stops after a wall-clock budget (``minutes``) or a step count, saves an atomic checkpoint every few
minutes and at the end, and keeps an exponential moving average (EMA) of the weights.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

# A step function: (model, step index, generator seeded for that step) -> {"loss": scalar, ...metrics}
StepFn = Callable[[nn.Module, int, torch.Generator], dict[str, torch.Tensor]]


class EMA:
    """``θ_ema ← d θ_ema + (1 - d) θ`` with ``d = min(decay, (1 + n) / (10 + n))`` (warm-up for early steps)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1 - d)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)


@dataclass
class TrainConfig:
    """What a run needs besides its model and step function."""

    checkpoint: Path
    minutes: float
    seed: int = 0
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    max_steps: int | None = None
    ema_decay: float | None = 0.999
    grad_clip: float = 1.0
    bf16: bool = True
    device: str = "cpu"
    save_every_s: float = 180.0
    log_every: int = 50
    meta: dict = field(default_factory=dict)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator for one step's data: a function of ``(seed, step)`` only."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _save_atomically(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def train(model: nn.Module, step_fn: StepFn, config: TrainConfig) -> dict:
    """Train ``model`` with AdamW until the time or step budget is spent; resume from ``config.checkpoint``.

    Returns the final checkpoint payload: ``{"model", "ema", "optimizer", "step", "elapsed_s", "history", "meta"}``.
    """
    device = torch.device(config.device)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema_decay) if config.ema_decay else None
    step, elapsed, history = 0, 0.0, []
    if config.checkpoint.exists():
        state = torch.load(config.checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.model.load_state_dict(state["ema"])
        step, elapsed, history = state["step"], state["elapsed_s"], json.loads(state["history"])
        print(f"resumed {config.checkpoint} at step {step} ({elapsed / 60:.1f} min trained)")

    def payload() -> dict:
        return {
            "model": model.state_dict(),
            "ema": None if ema is None else ema.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "elapsed_s": elapsed,
            "history": json.dumps(history),
            "meta": json.dumps({**config.meta, "seed": config.seed, "lr": config.lr, "bf16": config.bf16}),
        }

    budget_s = config.minutes * 60
    start, last_save = time.time(), time.time()
    running: dict[str, float] = {}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else contextlib.nullcontext()
    with tqdm(desc=config.checkpoint.stem, unit="step", initial=step, dynamic_ncols=True) as bar:
        while time.time() - start < budget_s and (config.max_steps is None or step < config.max_steps):
            for group in optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, (step + 1) / config.warmup_steps)
            with autocast:
                metrics = step_fn(model, step, step_generator(config.seed, step))
            optimizer.zero_grad(set_to_none=True)
            metrics["loss"].backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update(model, step)
            step += 1
            for key, value in metrics.items():
                running[key] = running.get(key, 0.0) + float(value.detach())
            if step % config.log_every == 0:
                now = elapsed + time.time() - start
                history.append(
                    {
                        "step": step,
                        "minutes": round(now / 60, 2),
                        **{k: v / config.log_every for k, v in running.items()},
                    }
                )
                bar.set_postfix({k: f"{v / config.log_every:.4f}" for k, v in running.items()})
                running = {}
            bar.update(1)
            if time.time() - last_save > config.save_every_s:
                elapsed_now, elapsed = elapsed, elapsed + time.time() - start
                _save_atomically(payload(), config.checkpoint)
                elapsed, last_save = elapsed_now, time.time()
    elapsed += time.time() - start
    final = payload()
    _save_atomically(final, config.checkpoint)
    return final
