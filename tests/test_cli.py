"""The command line: the demo writes its figure; bad arguments are refused with a usage message."""

from __future__ import annotations

import pytest
from PIL import Image

from bdlib.__main__ import main


def test_demo_writes_a_figure(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--out", str(out), "--steps", "10"]) == 0
    with Image.open(out) as image:
        assert image.width > 400 and image.height > 200
    assert "wrote" in capsys.readouterr().out


def test_unknown_command_and_choice_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["frobnicate"])
    with pytest.raises(SystemExit):
        main(["download", "imagenet"])
    assert "invalid choice" in capsys.readouterr().err
