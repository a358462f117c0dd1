"""The command line: the demo writes its figure; bad arguments are refused with a usage message."""

from __future__ import annotations

import pytest
from PIL import Image

from bdlib.__main__ import main


def test_demo_writes_a_figure(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--out", str(out), "--steps", "10"]) == 0
    with Image.open(out) as image:
        assert 8 * 128 <= image.width <= 1050 and image.height > 3 * 128  # 8 noise levels, each image ≥ 128 px
    assert "wrote" in capsys.readouterr().out


def test_unknown_command_and_choice_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["frobnicate"])
    with pytest.raises(SystemExit):
        main(["download", "imagenet"])
    assert "invalid choice" in capsys.readouterr().err


def test_edit_command_writes_ranked_results_and_a_figure(tmp_path, capsys):
    out = tmp_path / "edited.png"
    args = ["edit", "--image", "bdlib/examples/scene.png", "--mask", "bdlib/examples/scene_mask.png"]
    args += ["--prompt", "a red circle", "--out", str(out), "--samples", "2", "--steps", "10", "--k", "6"]
    assert main(args) == 0
    for path in (out, tmp_path / "edited_rank2.png", tmp_path / "edited_figure.png"):
        assert path.exists(), path
    with Image.open(out) as image:
        assert image.size == (32, 32)


def test_edit_command_refuses_bad_input_before_writing(tmp_path, capsys):
    base = ["edit", "--image", "bdlib/examples/scene.png", "--mask", "bdlib/examples/scene_mask.png"]
    assert main([*base, "--prompt", "a red circle", "--out", str(tmp_path / "x.jpg")]) == 2
    assert main([*base, "--prompt", "a pink circle", "--out", str(tmp_path / "x.png")]) == 2
    assert main([*base, "--prompt", "a red circle", "--out", str(tmp_path / "y.png"), "--steps", "10"]) == 2
    err = capsys.readouterr().err
    assert ".png" in err and "pink" in err and "--k" in err
    assert not list(tmp_path.iterdir())


def test_train_command_runs_resumes_and_checks_arguments(tmp_path, capsys):
    checkpoint = tmp_path / "oracle.pt"
    args = ["train", "oracle", "--minutes", "0.05", "--checkpoint", str(checkpoint)]
    assert main(args) == 0 and checkpoint.exists()
    assert main(args) == 0  # resumes from the checkpoint
    assert "resumed" in capsys.readouterr().out
    assert main(["train", "oracle", "--minutes", "0"]) == 2
    assert main(["train", "oracle", "--anneal-from", "5", "--checkpoint", str(tmp_path / "x.pt")]) == 2
    assert "anneal_from needs max_steps" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_figures_command_regenerates_small_figures(tmp_path, capsys):
    from PIL import Image

    assert main(["figures", "--out", str(tmp_path)]) == 0
    names = {"demo.png", "edit_example_figure.png", "lambda_sweep.png", "k_sweep.png", "augmentations.png"}
    assert names <= {p.name for p in tmp_path.iterdir()}
    for name in names:
        assert Image.open(tmp_path / name).width <= 1050, name  # README width; each image ≥ 128 px (show_grid)
    assert "run `python -m bdlib evaluate`" in capsys.readouterr().out  # no evaluation.json here
