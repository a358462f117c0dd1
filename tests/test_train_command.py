"""``python -m bdlib train``: the shipped weights are replaced only when asked and only by a model that is not far
worse; a checkpoint or initial weights of another model are named as such; a full disk stops cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from cli_helpers import cli

from bdlib.worlds.toy import clip_model, trainer
from bdlib.worlds.toy.weights_io import weights_path


def short(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line and not line.startswith(("tiny", "\r"))]
    assert "Traceback" not in err and "internal error" not in err, err
    return "\n".join(lines[-2:])


@pytest.fixture
def shipped_untouched():
    """The package's toy CLIP weights are the same bytes after the test."""
    path = weights_path("toy_clip")
    before = path.read_bytes()
    yield
    assert path.read_bytes() == before, "the shipped weights were changed"


# ---------------------------------------------------------------------------------- item 2: export over shipped weights
def test_export_over_shipped_weights_needs_replace_shipped_before_training(
    tmp_path, monkeypatch, capsys, shipped_untouched
):
    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("training started"))
    assert cli("train", "toy-clip", "--max-steps", "2", "--checkpoint", tmp_path / "c.pt", "--export") == 2
    err = short(capsys.readouterr().err)
    assert "--replace-shipped" in err and "toy_clip.safetensors" in err
    assert not list(tmp_path.iterdir())


def test_export_refuses_a_model_far_below_the_shipped_one(tmp_path, monkeypatch, capsys, shipped_untouched):
    """Two steps of training: the toy CLIP's masked-object accuracy (stood in for by 0.06, as the probe measured) is
    far below the shipped 0.9995: nothing is exported, the checkpoint is kept, both numbers are named."""
    monkeypatch.setattr(clip_model, "evaluate_toy_clip", lambda model: {"masked": {"acc": 0.06}})
    monkeypatch.setattr(clip_model, "export_toy_clip", lambda *a, **k: pytest.fail("exported"))
    checkpoint = tmp_path / "c.pt"
    args = ["train", "toy-clip", "--max-steps", "2", "--checkpoint", checkpoint, "--export", "--replace-shipped"]
    assert cli(*args) == 2
    err = short(capsys.readouterr().err)
    assert "0.06" in err and "0.9995" in err and "0.05" in err and "not exported" in err
    assert torch.load(checkpoint, weights_only=True)["step"] == 2


def test_export_with_replace_shipped_writes_a_model_close_to_the_shipped_one(tmp_path, monkeypatch, capsys):
    exported = []
    monkeypatch.setattr(clip_model, "evaluate_toy_clip", lambda model: {"masked": {"acc": 0.97}})
    monkeypatch.setattr(clip_model, "export_toy_clip", lambda *a, **k: exported.append(a) or tmp_path / "w")
    args = ["train", "toy-clip", "--max-steps", "1", "--checkpoint", tmp_path / "c.pt", "--export", "--replace-shipped"]
    assert cli(*args) == 0 and len(exported) == 1
    assert cli("train", "toy-clip", "--max-steps", "1", "--replace-shipped") == 2  # no --export: no effect
    assert "--replace-shipped has no effect" in capsys.readouterr().err


# ------------------------------------------------------------------------- item 10: another model's weights are named
@pytest.fixture(scope="module")
def oracle_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("oracle") / "oracle.pt"
    assert cli("train", "oracle", "--max-steps", "1", "--checkpoint", path) == 0
    return path


@pytest.mark.parametrize("flag", ["--checkpoint", "--init-from"])
def test_weights_of_another_model_are_named(tmp_path, capsys, oracle_checkpoint, flag):
    copy = tmp_path / "mine.pt"
    copy.write_bytes(oracle_checkpoint.read_bytes())
    extra = [] if flag == "--checkpoint" else ["--checkpoint", tmp_path / "new.pt"]
    assert cli("train", "toy-clip", "--max-steps", "1", flag, copy, *extra) == 2
    err = short(capsys.readouterr().err)
    assert "holds oracle weights, not toy-clip" in err and str(copy) in err
    assert copy.read_bytes() == oracle_checkpoint.read_bytes() and not (tmp_path / "new.pt").exists()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ([1, 2, 3], "a list"),
        ({"weights": {}}, "lacks model"),
        ({"model": [1]}, "lacks optimizer"),
        (
            {
                "model": {"w": torch.zeros(2)},
                "optimizer": {},
                "step": 0,
                "elapsed_s": 0.0,
                "history": "[]",
                "meta": "{}",
            },
            "of no bdlib toy model",
        ),
    ],
)
def test_a_checkpoint_of_the_wrong_shape_is_refused(tmp_path, capsys, content, words):
    checkpoint = tmp_path / "c.pt"
    torch.save(content, checkpoint)
    before = checkpoint.read_bytes()
    assert cli("train", "oracle", "--max-steps", "1", "--checkpoint", checkpoint) == 2
    err = short(capsys.readouterr().err)
    assert words in err and str(checkpoint) in err
    assert checkpoint.read_bytes() == before


# ---------------------------------------------------------------------------------------- item 11: a full disk
def _disk_full(monkeypatch):
    """Every temporary file that bdlib.runtime.files creates from now on is on a full disk (a link to /dev/full:
    every write fails with ENOSPC, as on a full file system)."""
    import bdlib.runtime.files as files

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    real = files._staged

    def staged(path):
        tmp = real(path)
        tmp.unlink()
        tmp.symlink_to("/dev/full")
        return tmp

    monkeypatch.setattr(files, "_staged", staged)


def test_a_full_disk_at_the_final_save_stops_cleanly_and_keeps_the_checkpoint(
    tmp_path, monkeypatch, capsys, oracle_checkpoint
):
    checkpoint = tmp_path / "oracle.pt"
    checkpoint.write_bytes(oracle_checkpoint.read_bytes())
    _disk_full(monkeypatch)
    assert cli("train", "oracle", "--max-steps", "3", "--checkpoint", checkpoint) == 2
    err = short(capsys.readouterr().err)
    assert "disk is full" in err and "step 1" in err and "inline_container" not in err
    assert checkpoint.read_bytes() == oracle_checkpoint.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oracle.pt"]  # no temporary file left


def test_a_full_disk_at_a_periodic_save_warns_and_training_goes_on(tmp_path, monkeypatch, capsys):
    from torch import nn

    import bdlib.runtime.files as files

    failures = []
    real = files._staged

    def sometimes_full(path):
        tmp = real(path)
        if len(failures) < 2:  # the first two saves meet a full disk, then space is freed
            failures.append(path)
            tmp.unlink()
            tmp.symlink_to(os.devnull if not Path("/dev/full").exists() else "/dev/full")
        return tmp

    monkeypatch.setattr(files, "_staged", sometimes_full)

    def step(model, index, generator):
        return {"loss": model(torch.randn(4, 3, generator=generator)).pow(2).mean()}

    config = trainer.TrainConfig(tmp_path / "tiny.pt", minutes=5, max_steps=4, save_every_s=0.0, bf16=False)
    final = trainer.train(nn.Linear(3, 1), step, config)
    assert final["step"] == 4 and torch.load(tmp_path / "tiny.pt", weights_only=True)["step"] == 4
    assert capsys.readouterr().err.count("could not save the checkpoint") == 2
