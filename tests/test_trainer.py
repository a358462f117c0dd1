"""The shared toy training loop: learning-rate schedule, budget checks, stopping on a signal, resuming."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from torch import nn

from bdlib.worlds.toy.trainer import TrainConfig, learning_rate, step_generator, train


def _config(tmp_path, **overrides) -> TrainConfig:
    base = {"checkpoint": tmp_path / "tiny.pt", "minutes": 5.0, "lr": 1e-2, "warmup_steps": 4, "bf16": False}
    return TrainConfig(**{**base, **overrides})


def _regression_step(model: nn.Module, step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    x = torch.randn(16, 3, generator=generator)
    target = x @ torch.tensor([1.0, -2.0, 0.5])
    return {"loss": (model(x).squeeze(1) - target).pow(2).mean()}


def test_learning_rate_warms_up_holds_and_anneals_to_zero(tmp_path) -> None:
    config = _config(tmp_path, max_steps=100, anneal_from=60)
    assert learning_rate(config, 0) == pytest.approx(1e-2 / 4)
    assert learning_rate(config, 3) == pytest.approx(1e-2)
    assert learning_rate(config, 59) == pytest.approx(1e-2)
    assert learning_rate(config, 80) == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert learning_rate(config, 100) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(_config(tmp_path), 10_000) == pytest.approx(1e-2)  # no anneal: constant


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"minutes": 0}, "minutes must be positive"),
        ({"max_steps": 0}, "max_steps must be a positive"),
        ({"anneal_from": 10}, "anneal_from needs max_steps"),
        ({"anneal_from": 10, "max_steps": 10}, r"anneal_from must be in \[0, max_steps=10\)"),
    ],
)
def test_impossible_budgets_are_refused(tmp_path, overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        train(nn.Linear(3, 1), _regression_step, _config(tmp_path, **overrides))
    assert not (tmp_path / "tiny.pt").exists()


def test_sigterm_stops_after_the_current_step_and_saves(tmp_path) -> None:
    def step_fn(model, step, generator):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return _regression_step(model, step, generator)

    previous = signal.getsignal(signal.SIGTERM)
    final = train(nn.Linear(3, 1), step_fn, _config(tmp_path, max_steps=50))
    assert final["step"] == 3
    assert torch.load(tmp_path / "tiny.pt", weights_only=True)["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back


def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path) -> None:
    def stopped_at_8(model, step, generator):
        if step == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return _regression_step(model, step, generator)

    torch.manual_seed(0)
    straight = train(nn.Linear(3, 1), _regression_step, _config(tmp_path / "a", max_steps=12, anneal_from=6))
    torch.manual_seed(0)
    assert train(nn.Linear(3, 1), stopped_at_8, _config(tmp_path / "b", max_steps=12, anneal_from=6))["step"] == 8
    torch.manual_seed(0)
    resumed = train(nn.Linear(3, 1), _regression_step, _config(tmp_path / "b", max_steps=12, anneal_from=6))
    assert resumed["step"] == straight["step"] == 12
    for key, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][key], value)
    for key, value in straight["ema"].items():
        torch.testing.assert_close(resumed["ema"][key], value)


@pytest.mark.parametrize("kind", ["checkpoint", "safetensors"])
def test_a_new_run_can_start_from_trained_weights(tmp_path, kind) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    first = train(nn.Linear(3, 1), _regression_step, _config(tmp_path / "first", max_steps=30))
    source = tmp_path / "first" / "tiny.pt"
    if kind == "safetensors":
        source = tmp_path / "weights.safetensors"
        save_file(first["ema"], str(source))
    torch.manual_seed(1)  # a different initialisation, replaced by the given weights
    second = train(nn.Linear(3, 1), _regression_step, _config(tmp_path / "second", max_steps=1, init_from=source, lr=0))
    for key, value in first["ema"].items():
        torch.testing.assert_close(second["model"][key], value)
    resumed = train(nn.Linear(3, 1), _regression_step, _config(tmp_path / "second", max_steps=2))
    assert json.loads(resumed["meta"])["init_from"] == str(source)  # provenance survives a resume
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(nn.Linear(3, 1), _regression_step, _config(tmp_path / "third", init_from=tmp_path / "missing.pt"))


def test_a_stopped_run_says_which_signal_stopped_it(tmp_path) -> None:
    def step_fn(model, step, generator):
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return _regression_step(model, step, generator)

    assert train(nn.Linear(3, 1), step_fn, _config(tmp_path, max_steps=50))["stopped_by"] == signal.SIGINT
    assert train(nn.Linear(3, 1), _regression_step, _config(tmp_path / "b", max_steps=2))["stopped_by"] is None


def test_seeds_up_to_2_to_the_63_give_distinct_step_data() -> None:
    big = 2**63 - 1
    assert torch.rand(3, generator=step_generator(big, 5)).shape == (3,)  # no overflow
    draws = [torch.rand(3, generator=step_generator(seed, 5)) for seed in (big, big - 1)]
    assert not torch.equal(*draws)
    same_as_before = torch.Generator().manual_seed(3 * 1_000_003 + 7)  # small seeds keep their data (resumable runs)
    assert torch.equal(torch.rand(2, generator=step_generator(3, 7)), torch.rand(2, generator=same_as_before))


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_a_seed_out_of_range_is_refused(tmp_path, seed) -> None:
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*63\)"):
        train(nn.Linear(3, 1), _regression_step, _config(tmp_path, seed=seed, max_steps=1))
    assert not (tmp_path / "tiny.pt").exists()


def test_damaged_checkpoints_and_initial_weights_are_named(tmp_path) -> None:
    checkpoint = tmp_path / "tiny.pt"
    checkpoint.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=r"tiny\.pt cannot be read.*pass another --checkpoint to start a new run"):
        train(nn.Linear(3, 1), _regression_step, _config(tmp_path, max_steps=1))
    for name, data in (("w.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}"), ("w.pt", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=f"{name} (cannot be read|is damaged)"):
            train(nn.Linear(3, 1), _regression_step, _config(tmp_path / "new", max_steps=1, init_from=tmp_path / name))


def test_every_trainable_model_names_functions_that_exist():
    from bdlib.commands.train import TRAINABLES

    for name, trainable in TRAINABLES.items():
        for part in ("build", "step_fn", "config", "evaluate", "export"):
            assert callable(trainable.get(part)), (name, part)
