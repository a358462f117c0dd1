"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The reference numbers from the official code: ``tests/fixtures`` (in the repository), or ``$BDLIB_FIXTURES``."""
    path = Path(os.environ.get("BDLIB_FIXTURES", Path(__file__).resolve().parent / "fixtures"))
    if not (path / "guided_diffusion").is_dir() or not (path / "blended_step").is_dir():
        pytest.fail(
            f"reference fixtures not found at {path}: they ship in tests/fixtures (restore them with git checkout), "
            "or set BDLIB_FIXTURES to a folder holding guided_diffusion/ and blended_step/"
        )
    return path


@pytest.fixture(scope="session")
def random_toy_world():
    """A toy world with RANDOM weights (no shipped files needed): for testing plumbing, not quality."""
    import torch

    from bdlib.core.settings import MethodSettings
    from bdlib.worlds.base import World
    from bdlib.worlds.toy.clip_model import build_toy_clip
    from bdlib.worlds.toy.ddpm import build_toy_ddpm, toy_diffusion
    from bdlib.worlds.toy.world import check_toy_prompt

    torch.manual_seed(0)
    return World(
        name="toy",
        unet=build_toy_ddpm().eval().requires_grad_(False),
        clip=build_toy_clip().eval().requires_grad_(False),
        image_size=32,
        make_diffusion=toy_diffusion,
        defaults=MethodSettings(respacing="10", k=6, lpips_weight=0.0, views=4),
        check_prompt=check_toy_prompt,
        description="toy world with random weights (tests)",
    )


@pytest.fixture
def inputs(tmp_path):
    """Copies of the example scene and mask in a fresh folder: (image, mask)."""
    import shutil

    from cli_helpers import EXAMPLES

    image, mask = tmp_path / "scene.png", tmp_path / "mask.png"
    shutil.copy(EXAMPLES / "scene.png", image)
    shutil.copy(EXAMPLES / "scene_mask.png", mask)
    return image, mask


@pytest.fixture
def no_edit(monkeypatch):
    """Fail the test if an edit starts drawing samples: a refusal must come before any work."""
    import importlib

    def started(*args, **kwargs):
        raise AssertionError("the edit started although the input should have been refused")

    monkeypatch.setattr(importlib.import_module("bdlib.edit"), "draw_samples", started)
