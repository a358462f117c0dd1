"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The reference numbers from the official code: ``<repo>/../shared/fixtures`` or ``$BDLIB_FIXTURES``."""
    path = Path(os.environ.get("BDLIB_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))
    if not (path / "guided_diffusion").is_dir():
        pytest.fail(
            f"reference fixtures not found at {path}: clone the repository next to shared/ "
            "(so that ../shared/fixtures exists) or set BDLIB_FIXTURES to the fixtures folder"
        )
    return path
