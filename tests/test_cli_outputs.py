"""What ``edit`` writes and removes: only its own files, with names the file system takes, checked before the work."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

from bdlib.__main__ import main

edit_module = importlib.import_module("bdlib.edit")  # the module (the package's attribute ``edit`` is the function)
EXAMPLES = Path(__file__).resolve().parent.parent / "bdlib" / "examples"
FAST = ["--respacing", "10", "--k", "3"]


def cli(*args) -> int:
    try:
        return main([str(a) for a in args])
    except SystemExit as stop:
        return stop.code


@pytest.fixture
def inputs(tmp_path):
    image, mask = tmp_path / "scene.png", tmp_path / "mask.png"
    shutil.copy(EXAMPLES / "scene.png", image)
    shutil.copy(EXAMPLES / "scene_mask.png", mask)
    return image, mask


def test_only_rank_files_bdlib_wrote_are_removed(inputs, tmp_path):
    image, mask = inputs
    out = tmp_path / "x.png"
    args = ["edit", "--image", image, "--mask", mask, "--prompt", "a red circle", "--out", out, *FAST]
    assert cli(*args, "--samples", "3") == 0
    mine = tmp_path / "x_rank4.png"  # a user's picture that happens to be named like a result
    shutil.copy(image, mine)
    elsewhere = tmp_path / "keep" / "holiday.png"
    elsewhere.parent.mkdir()
    shutil.copy(image, elsewhere)
    link = tmp_path / "x_rank5.png"
    link.symlink_to(elsewhere)
    copied = tmp_path / "x_rank6.png"  # a bdlib result of another output name, copied by hand
    shutil.copy(tmp_path / "x_rank2.png", copied)
    before = {path: path.read_bytes() for path in (mine, elsewhere, copied)}
    assert cli(*args, "--samples", "1", "--seed", "1") == 0
    assert not (tmp_path / "x_rank2.png").exists() and not (tmp_path / "x_rank3.png").exists()  # bdlib's own: gone
    assert link.is_symlink() and {path: path.read_bytes() for path in (mine, elsewhere, copied)} == before
