"""A small, resumable training loop shared by every toy model (DDPM, CLIP, noise-aware CLIP, oracle).

Each step draws fresh procedural scenes from a generator seeded by ``(seed, step)``, so a resumed run
sees exactly the data an uninterrupted run would have seen, and no data set is ever stored. The loop
stops after a wall-clock budget (``minutes``) or a step count, saves an atomic checkpoint every few
minutes, at the end and when it is stopped (Ctrl-C or SIGTERM), and keeps an exponential moving average
(EMA) of the weights. A save that fails (a full disk) leaves the previous checkpoint whole: a periodic one is
tried again later while training goes on; the final one stops the run with an :class:`OutputError` that says
which step the checkpoint on disk holds. The learning rate warms up linearly, stays constant and, when
``anneal_from`` and ``max_steps`` are set, decays along a half cosine to zero between those two steps.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from bdlib.runtime.files import OutputError, describe_os_error, write_file
from bdlib.runtime.randomness import check_seed
from bdlib.runtime.safe_load import load_safetensors, load_torch_file

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
    anneal_from: int | None = None  # cosine decay of the learning rate from this step to max_steps
    init_from: Path | None = None  # a new run starts from these weights (a checkpoint's EMA, or safetensors)
    ema_decay: float | None = 0.999
    grad_clip: float = 1.0
    bf16: bool = True
    device: str = "cpu"
    save_every_s: float = 180.0
    log_every: int = 50
    meta: dict = field(default_factory=dict)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator for one step's data: a function of ``(seed, step)`` only, ``seed · 1_000_003 + step`` taken
    modulo 2**64 (the generator's range; 1_000_003 is odd, so distinct seeds below 2**63 stay distinct)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % 2**64)


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of ``step``: linear warm-up, constant, then (optionally) a half-cosine to zero."""
    lr = config.lr * min(1.0, (step + 1) / config.warmup_steps)
    if config.anneal_from is not None and config.max_steps is not None and step >= config.anneal_from:
        progress = (step - config.anneal_from) / max(1, config.max_steps - config.anneal_from)
        lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return lr


def check_config(config: TrainConfig) -> None:
    """Raise a ValueError naming a seed, budget or schedule that cannot work."""
    check_seed(config.seed)
    if not math.isfinite(config.minutes):
        raise ValueError(f"minutes must be a finite number, got {config.minutes}")
    if config.minutes <= 0:
        raise ValueError(f"minutes must be positive, got {config.minutes}")
    if config.max_steps is not None and config.max_steps < 1:
        raise ValueError(f"max_steps must be a positive number of steps, got {config.max_steps}")
    if config.anneal_from is not None:
        if config.max_steps is None:
            raise ValueError("anneal_from needs max_steps: the cosine decay ends at max_steps")
        if not 0 <= config.anneal_from < config.max_steps:
            raise ValueError(f"anneal_from must be in [0, max_steps={config.max_steps}), got {config.anneal_from}")


class _StopRequest:
    """Turns Ctrl-C (SIGINT) and SIGTERM into a request to stop: the loop then saves and returns."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None  # the signal that asked to stop
        self._previous: dict = {}

    def __enter__(self) -> _StopRequest:
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals can only be caught there
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self.signum = int(signum)

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


CHECKPOINT_KEYS = ("model", "optimizer", "step", "elapsed_s", "history", "meta")  # what train() saves


def is_state_dict(value: object) -> bool:
    """True for a mapping of parameter names to tensors."""
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def fits(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> bool:
    """True if ``state_dict`` has exactly ``model``'s parameter and buffer names, with their shapes."""
    expected = model.state_dict()
    return set(state_dict) == set(expected) and all(state_dict[k].shape == v.shape for k, v in expected.items())


RESTART = "pass another --checkpoint to start a new run (a path where no file is yet)"


def read_checkpoint(path: Path, fix: str = RESTART) -> dict:
    """A checkpoint that :func:`train` saved, read as data only; anything else raises a ValueError naming ``path``,
    what it holds instead and ``fix``."""
    state = load_torch_file(path, "the training checkpoint", fix)
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a bdlib training checkpoint: it holds a {type(state).__name__}; {fix}")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing or not is_state_dict(state["model"]) or not (state.get("ema") is None or is_state_dict(state["ema"])):
        what = f"lacks {', '.join(missing)}" if missing else "its weights are not a mapping of names to tensors"
        raise ValueError(f"{path} is not a bdlib training checkpoint ({what}); {fix}")
    return state


def initial_weights(path: Path, name: str = "init_from") -> dict[str, torch.Tensor]:
    """The weights a new run starts from: a trainer checkpoint's EMA (else its model), or a safetensors file. ``name``
    names the argument in messages (``--init-from`` on the command line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{name} {path} does not exist: give a trainer checkpoint (.pt) or .safetensors")
    if path.suffix == ".safetensors":
        return load_safetensors(path, f"{name} file", "give another file")[0]
    state = load_torch_file(path, f"{name} file", "give another file")
    weights = state.get("ema") or state.get("model") if isinstance(state, dict) else None
    if not is_state_dict(weights):
        raise ValueError(f"{name} {path} is not a bdlib training checkpoint (no 'ema' or 'model' weights)")
    return weights


def _save_atomically(payload: dict, path: Path) -> None:
    """Write the checkpoint whole or not at all. It is serialised in memory first, so that a failed write (a full
    disk) raises the system's error (ENOSPC, with its number) rather than PyTorch's zip writer's own text."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_file(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def train(model: nn.Module, step_fn: StepFn, config: TrainConfig) -> dict:
    """Train ``model`` with AdamW until the time or step budget is spent; resume from ``config.checkpoint``.

    Ctrl-C or SIGTERM stops the run after the current step and saves the checkpoint first.

    Returns the final checkpoint payload: ``{"model", "ema", "optimizer", "step", "elapsed_s", "history", "meta"}``,
    plus ``"stopped_by"`` (not saved): the number of the signal that stopped the run, or None when it ran its budget.
    """
    check_config(config)
    device = torch.device(config.device)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema_decay) if config.ema_decay else None
    step, elapsed, history, saved = 0, 0.0, [], None
    init_from = None if config.init_from is None else str(config.init_from)
    if config.checkpoint.exists():
        state = read_checkpoint(config.checkpoint)
        if not fits(model, state["model"]):
            raise ValueError(f"the checkpoint {config.checkpoint} holds the weights of another model: {RESTART}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.model.load_state_dict(state["ema"])
        step, elapsed, history = state["step"], state["elapsed_s"], json.loads(state["history"])
        init_from = json.loads(state["meta"]).get("init_from") or init_from  # provenance survives resumes
        saved = step  # the step the checkpoint on disk holds
        print(f"resumed {config.checkpoint} at step {step} ({elapsed / 60:.1f} min trained)")
    elif config.init_from is not None:
        weights = initial_weights(config.init_from)
        if not fits(model, weights):
            raise ValueError(f"init_from {config.init_from} holds the weights of another model: give this model's")
        model.load_state_dict(weights)
        if ema is not None:
            ema.model.load_state_dict(model.state_dict())
        print(f"new run from the weights of {config.init_from}")

    def payload() -> dict:
        return {
            "model": model.state_dict(),
            "ema": None if ema is None else ema.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "elapsed_s": elapsed,
            "history": json.dumps(history),
            "meta": json.dumps(
                {
                    **config.meta,
                    "seed": config.seed,
                    "lr": config.lr,
                    "bf16": config.bf16,
                    "init_from": init_from,
                }
            ),
        }

    budget_s = config.minutes * 60
    start, last_save = time.time(), time.time()
    running: dict[str, float] = {}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else contextlib.nullcontext()
    with (
        tqdm(desc=config.checkpoint.stem, unit="step", initial=step, dynamic_ncols=True) as bar,
        _StopRequest() as stop,
    ):
        while time.time() - start < budget_s and (config.max_steps is None or step < config.max_steps):
            if stop.requested:
                print(f"stop requested: saving {config.checkpoint} at step {step}")
                break
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
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
                try:
                    _save_atomically(payload(), config.checkpoint)
                    saved = step
                except OutputError as error:  # the checkpoint on disk is whole: go on, try again next time
                    tqdm.write(
                        f"warning: could not save the checkpoint at step {step} ({error}); training goes on "
                        f"and tries again in {config.save_every_s:g} s",
                        file=sys.stderr,
                    )
                elapsed, last_save = elapsed_now, time.time()
    elapsed += time.time() - start
    final = payload()
    try:
        _save_atomically(final, config.checkpoint)
    except OutputError as error:
        reason = describe_os_error(error.__cause__) if isinstance(error.__cause__, OSError) else str(error)
        raise OutputError(
            f"could not save the checkpoint at step {step}: {reason}; "
            + (f"{config.checkpoint} keeps step {saved}" if saved is not None else "no checkpoint was saved")
            + ". Free some space (or pass another --checkpoint), then run the same command again to resume"
        ) from None
    return {**final, "stopped_by": stop.signum}
