"""What ``edit`` writes and removes: only its own files, with names the file system takes, checked before the work."""

from __future__ import annotations

import os
import shutil

import pytest
from cli_helpers import FAST, cli


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


@pytest.mark.parametrize("length", [234, 240, 251])
def test_an_out_name_too_long_for_the_file_system_is_refused_before_the_edit(inputs, no_edit, capsys, length):
    image, mask = inputs
    out = image.parent / ("e" * length + ".png")
    assert cli("edit", "--image", image, "--mask", mask, "--prompt", "a red circle", "--out", out) == 2
    err = capsys.readouterr().err
    assert "too long" in err and "Traceback" not in err
    assert sorted(p.name for p in image.parent.iterdir()) == ["mask.png", "scene.png"]


def test_the_longest_out_name_that_fits_is_written(inputs, capsys):
    """Every name an edit writes, and the temporary name it writes first, fit the file system's limit exactly."""
    image, mask = inputs
    limit = os.pathconf(image.parent, "PC_NAME_MAX")
    longest = limit - len(".-XXXXXXXX.partial") - len("_figure.png")  # the figure's temporary name is the longest
    out = image.parent / ("e" * longest + ".png")
    assert cli("edit", "--image", image, "--mask", mask, "--prompt", "a red circle", "--out", out, *FAST) == 0
    assert out.exists()
    too_long = image.parent / ("f" * (longest + 1) + ".png")
    assert cli("edit", "--image", image, "--mask", mask, "--prompt", "a red circle", "--out", too_long, *FAST) == 2
    assert "shorten it by 1 character" in capsys.readouterr().err
