"""The command line: the demo writes its figure; bad arguments are refused with a usage message."""

from __future__ import annotations

import errno
import importlib
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from cli_helpers import EXAMPLES, FAST, cli
from PIL import Image

from bdlib.__main__ import main

edit_module = importlib.import_module("bdlib.edit")  # the module (the package's attribute ``edit`` is the function)


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
    args += ["--prompt", "a red circle", "--out", str(out), "--samples", "2", "--respacing", "10", "--k", "6"]
    assert main(args) == 0
    for path in (out, tmp_path / "edited_rank2.png", tmp_path / "edited_figure.png"):
        assert path.exists(), path
    with Image.open(out) as image:
        assert image.size == (32, 32)


def test_edit_command_refuses_bad_input_before_writing(tmp_path, capsys):
    base = ["edit", "--image", "bdlib/examples/scene.png", "--mask", "bdlib/examples/scene_mask.png"]
    assert main([*base, "--prompt", "a red circle", "--out", str(tmp_path / "x.jpg")]) == 2
    assert main([*base, "--prompt", "a pink circle", "--out", str(tmp_path / "x.png")]) == 2
    assert main([*base, "--prompt", "a red circle", "--out", str(tmp_path / "y.png"), "--respacing", "10"]) == 2
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


# ----------------------------------------------------------------------------- bad input: a clear error, nothing lost
# (the fixtures ``inputs`` and ``no_edit`` are in conftest.py)


def _short_error(err: str) -> None:
    """What a user sees for their mistake: one or two lines, no traceback, no progress bar."""
    lines = [line for line in err.strip().splitlines() if line]
    assert 1 <= len(lines) <= 2 and "Traceback" not in err and "editing" not in err, err
    assert len(err) < 700, err


@pytest.mark.parametrize(
    "extra",
    [
        ["--guidance-scale", "nan"],
        ["--guidance-scale", "inf"],
        ["--guidance-scale", "1e30"],
        ["--lam", "nan", "--algorithm", "local"],
        ["--lam", "1e30", "--algorithm", "local"],
        ["--seed", "-1"],
        ["--seed", str(2**64)],
        ["--dilate", "-5"],
        ["--device", "cuda:99"],
        ["--samples", "0"],
        ["--samples", "100000"],
        ["--views", "100000"],
    ],
)
def test_edit_refuses_bad_numbers_before_any_work(inputs, no_edit, capsys, extra):
    image, mask = inputs
    out = image.parent / "out.png"
    assert cli("edit", "--image", image, "--mask", mask, "--prompt", "a red circle", "--out", out, *extra) == 2
    _short_error(capsys.readouterr().err)
    assert sorted(p.name for p in image.parent.iterdir()) == ["mask.png", "scene.png"]


@pytest.mark.parametrize("prompt", [" ".join(f"zebra{i}" for i in range(1000)), " and ".join(["a red circle"] * 300)])
def test_a_very_long_prompt_gets_a_short_message_before_the_progress_bar(inputs, no_edit, capsys, prompt):
    image, mask = inputs
    assert cli("edit", "--image", image, "--mask", mask, "--prompt", prompt, "--out", image.parent / "o.png") == 2
    err = capsys.readouterr().err
    _short_error(err)
    assert err.count("zebra999") == 0 and "characters" in err  # the prompt is quoted once, cut short


def test_the_output_never_replaces_an_input(inputs, no_edit, capsys):
    image, mask = inputs
    before = image.read_bytes(), mask.read_bytes()
    (image.parent / "link.png").symlink_to(image)
    figure_clash = image.parent / "scene_figure.png"  # --out x.png also writes x_figure.png
    shutil.copy(image, figure_clash)
    folder = image.parent
    cases = [
        (image, image),
        (image, mask),
        (image, folder / "link.png"),
        (image, folder / "." / "mask.png"),
        (figure_clash, folder / "scene.png"),
    ]  # (--image, --out)
    for source, out in cases:
        assert cli("edit", "--image", source, "--mask", mask, "--prompt", "a red circle", "--out", out) == 2
        err = capsys.readouterr().err
        _short_error(err)
        assert "would overwrite the input" in err
    assert (image.read_bytes(), mask.read_bytes()) == before


def test_an_unwritable_destination_is_refused_before_the_edit(inputs, no_edit, capsys):
    image, mask = inputs
    blocker = image.parent / "results"
    blocker.write_text("a file where the output folder should be")
    assert cli("edit", "--image", image, "--mask", mask, "--prompt", "a red circle", "--out", blocker / "o.png") == 2
    err = capsys.readouterr().err
    _short_error(err)
    assert "is a file, not a folder" in err


def test_a_full_disk_keeps_the_earlier_result_whole(inputs, monkeypatch, capsys):
    image, mask = inputs
    out = image.parent / "edited.png"
    args = ["edit", "--image", image, "--mask", mask, "--prompt", "a red circle", "--out", out, *FAST]
    assert cli(*args, "--samples", "2") == 0
    before = {p.name: p.read_bytes() for p in image.parent.iterdir()}

    def disk_full(self, fp, *a, **k):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    assert cli(*args, "--samples", "2", "--seed", "1") == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in image.parent.iterdir()} == before  # every file as it was, no leftovers


def test_rank_files_of_an_earlier_run_with_more_samples_are_removed(inputs, capsys):
    image, mask = inputs
    out = image.parent / "edited.png"
    args = ["edit", "--mask", mask, "--prompt", "a red circle", "--out", out, *FAST]
    assert cli(*args, "--image", image, "--samples", "3") == 0
    assert (image.parent / "edited_rank3.png").exists()
    kept = image.parent / "edited_rank4.png"  # an input that happens to look like an old result
    shutil.copy(image, kept)
    assert cli(*args, "--image", kept, "--samples", "1") == 0
    names = sorted(p.name for p in image.parent.iterdir())
    assert names == ["edited.png", "edited_figure.png", "edited_rank4.png", "mask.png", "scene.png"]


def test_demo_keeps_its_old_figure_when_writing_fails(tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    out = tmp_path / "demo.png"
    out.write_bytes(b"the previous figure")

    def disk_full(self, fname, *a, **k):
        with open(fname, "wb") as handle:
            handle.write(b"half a figure")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", disk_full)
    assert cli("demo", "--out", out, "--steps", "2") == 2
    assert "No space left on device" in capsys.readouterr().err
    assert out.read_bytes() == b"the previous figure" and [p.name for p in tmp_path.iterdir()] == ["demo.png"]


@pytest.mark.parametrize(
    "command",
    [["demo", "--steps", "2"], ["train", "oracle", "--max-steps", "1"], ["evaluate", "--tasks", "5"], ["figures"]],
)
@pytest.mark.parametrize("seed", ["-1", str(2**63)])
def test_every_command_refuses_a_bad_seed_before_running(tmp_path, capsys, command, seed):
    out = ["--checkpoint", tmp_path / "c.pt"] if command[0] == "train" else ["--out", tmp_path / "x"]
    if command[0] == "demo":
        out = ["--out", tmp_path / "x.png"]
    elif command[0] == "evaluate":
        out = ["--out", tmp_path / "x.json"]
    assert cli(*command, *out, "--seed", seed) == 2
    err = capsys.readouterr().err
    _short_error(err)
    assert "seed must be in [0, 2**63)" in err and not list(tmp_path.iterdir())


def test_evaluate_checks_its_outputs_and_report_before_the_benchmark(tmp_path, monkeypatch, capsys):
    import bdlib.commands.evaluate as evaluate_command

    def started(*args, **kwargs):
        raise AssertionError("the benchmark started although its output was refused")

    monkeypatch.setattr(evaluate_command, "run_benchmark", started)
    (tmp_path / "file").write_text("not a folder")
    assert cli("evaluate", "--tasks", "5", "--out", tmp_path / "file" / "evaluation.json") == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    damaged = tmp_path / "evaluation.json"
    damaged.write_text('{"n_tasks": 5, "se')
    assert cli("evaluate", "--tasks", "5", "--out", damaged, "--only", "alg2 default") == 2
    err = capsys.readouterr().err
    _short_error(err)
    assert "is not a bdlib evaluation report" in err and damaged.read_text() == '{"n_tasks": 5, "se'


def test_train_stopped_by_sigterm_saves_exits_143_and_never_exports(tmp_path, monkeypatch, capsys):
    from bdlib.worlds.toy import oracle

    real_step_fn, done = oracle.oracle_step_fn, []

    def stopping_step_fn(device="cpu"):
        step = real_step_fn(device=device)

        def run(model, index, generator):
            if index == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return step(model, index, generator)

        return run

    monkeypatch.setattr(oracle, "oracle_step_fn", stopping_step_fn)
    monkeypatch.setattr(oracle, "evaluate_oracle", lambda model: done.append("evaluated") or {})
    monkeypatch.setattr(oracle, "export_oracle", lambda *args, **kwargs: done.append("exported") or tmp_path)
    checkpoint = tmp_path / "oracle.pt"
    export = ["--export", "--replace-shipped"]
    assert cli("train", "oracle", "--max-steps", "50", "--checkpoint", checkpoint, *export) == 143
    assert done == [] and torch.load(checkpoint, weights_only=True)["step"] == 2
    assert "nothing exported" in capsys.readouterr().err


STOPPING_EDIT = """
import importlib, os, signal, sys, time
from bdlib.__main__ import main

def stop(*args, **kwargs):
    if sys.argv[1] == "int":
        raise KeyboardInterrupt
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)

importlib.import_module("bdlib.edit").draw_samples = stop
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(("how", "code"), [("int", 130), ("term", 143)])
def test_a_stopped_edit_exits_130_or_143_and_writes_nothing(inputs, how, code):
    image, mask = inputs
    args = ["edit", "--image", image, "--mask", mask, "--prompt", "a red circle", "--out", image.parent / "o.png"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(EXAMPLES.parent.parent)}
    done = subprocess.run(
        [sys.executable, "-c", STOPPING_EDIT, how, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == code, done.stderr
    assert "stopped" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in image.parent.iterdir()) == ["mask.png", "scene.png"]


def test_an_internal_error_is_exit_1_with_a_short_note(inputs, monkeypatch, capsys):
    image, mask = inputs

    def bug(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(edit_module, "draw_samples", bug)
    args = ["edit", "--image", image, "--mask", mask, "--prompt", "a red circle", "--out", image.parent / "o.png"]
    assert cli(*args) == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and "bug" in err and "BDLIB_DEBUG=1" in err and "Traceback" not in err
    monkeypatch.setenv("BDLIB_DEBUG", "1")
    assert cli(*args) == 1
    assert "Traceback" in capsys.readouterr().err


def test_random_weights_are_labelled_loudly(tmp_path, capsys, monkeypatch, random_toy_world):
    """--random-weights (paper world; here a random toy world stands in for the 552M UNet) says so in stderr and in
    the figure, and is refused for the toy world, which ships trained weights."""
    import dataclasses

    import bdlib.commands.edit as edit_command

    labelled = dataclasses.replace(random_toy_world, capabilities=frozenset({"random_weights"}))
    seen = {}

    def fake_load_world(name, **kwargs):
        seen.update(name=name, **kwargs)
        return labelled

    monkeypatch.setattr(edit_command, "load_world", fake_load_world)
    out = tmp_path / "paper.png"
    args = [
        "edit",
        "--world",
        "paper",
        "--random-weights",
        "--image",
        "bdlib/examples/scene.png",
        "--mask",
        "bdlib/examples/scene_mask.png",
        "--prompt",
        "a red circle",
        "--k",
        "2",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert seen["name"] == "paper" and seen["random_weights"] is True
    assert "RANDOM WEIGHTS" in capsys.readouterr().err and (tmp_path / "paper_figure.png").exists()
    args[2] = "toy"
    err = capsys.readouterr().err if main(args) == 2 else "not refused"
    assert "--random-weights has no effect here" in err and "--world paper" in err
