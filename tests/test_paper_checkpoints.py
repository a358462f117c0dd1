"""The paper world's checkpoint side: cache directory, registry, safe loading, state-dict checks, CLI."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn

from bdlib.commands import download as download_command
from bdlib.runtime.safe_load import DamagedFileError
from bdlib.worlds.paper import checkpoints as paper
from bdlib.worlds.paper.checkpoints import (
    DOWNLOAD_COMMAND,
    PAPER_FILES,
    PaperFile,
    StateDictMismatchError,
    check_state_dict,
    checkpoint_path,
    download_paper_weights,
    load_unet_state_dict,
    resolve_cache_dir,
)


class NotATensor:
    """An arbitrary object: ``weights_only`` loading must refuse to unpickle it."""

    def __init__(self) -> None:
        self.payload = "anything"


def small_model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_cache_dir_argument_beats_env_beats_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("BDLIB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_cache_dir() == tmp_path / "home" / ".cache" / "bdlib"
    monkeypatch.setenv("BDLIB_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert checkpoint_path("clip", must_exist=False) == tmp_path / "env" / "ViT-B-16.pt"


def test_checkpoint_path_finds_files_by_key_or_name(tmp_path: Path) -> None:
    expected = tmp_path / "256x256_diffusion_uncond.pt"
    expected.write_bytes(b"x")
    assert checkpoint_path("unet", tmp_path) == expected
    assert checkpoint_path("256x256_diffusion_uncond.pt", tmp_path) == expected
    with pytest.raises(ValueError, match="unknown paper checkpoint"):
        checkpoint_path("vae", tmp_path)


def test_missing_file_error_mentions_custom_cache_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        checkpoint_path("clip", tmp_path)
    assert f"{DOWNLOAD_COMMAND} --cache-dir {tmp_path}" in str(info.value)


def test_registry_matches_the_official_sources() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import clip

    clip_entry = PAPER_FILES["clip"]
    assert clip_entry.url == clip.clip._MODELS["ViT-B/16"]
    assert clip_entry.url.split("/")[-2] == clip_entry.sha256  # the clip package's own convention
    unet = PAPER_FILES["unet"]
    assert unet.url.endswith("/diffusion/jul-2021/256x256_diffusion_uncond.pt")
    assert unet.sha256 is not None and len(unet.sha256) == 64
    # 552,814,086 float32 parameters plus a small pickle container:
    assert 0 < unet.size - 552_814_086 * 4 < 1_000_000


def test_weights_only_loading(tmp_path: Path) -> None:
    model = small_model()
    path = tmp_path / "unet.pt"
    torch.save(model.state_dict(), path)
    state = load_unet_state_dict(path)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    check_state_dict(small_model(), state)  # fits: no error

    torch.save({"weights": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(DamagedFileError, match="pickled Python objects besides tensors") as info:
        load_unet_state_dict(tmp_path / "evil.pt")
    assert "weights_only=False" not in str(info.value)  # never the advice to run the file's code

    torch.save({"step": 3}, tmp_path / "not_a_state_dict.pt")
    with pytest.raises(ValueError, match="does not contain a state dict"):
        load_unet_state_dict(tmp_path / "not_a_state_dict.pt")


def test_check_state_dict_names_missing_unexpected_and_wrong_shapes() -> None:
    state = dict(small_model().state_dict())
    del state["2.bias"]
    state["3.weight"] = torch.zeros(1)
    state["0.weight"] = torch.zeros(5, 3)
    with pytest.raises(StateDictMismatchError) as info:
        check_state_dict(small_model(), state)
    message = str(info.value)
    assert "missing keys (1)" in message and "2.bias" in message
    assert "unexpected keys (1)" in message and "3.weight" in message
    assert "wrong shapes (1)" in message and "0.weight: checkpoint (5, 3) vs model (4, 3)" in message
    assert isinstance(info.value, ValueError)


def test_check_state_dict_truncates_long_lists() -> None:
    model = nn.Sequential(*[nn.Linear(1, 1) for _ in range(30)])
    with pytest.raises(StateDictMismatchError, match=r"missing keys \(60\)[\s\S]*and 40 more"):
        check_state_dict(model, {})


def test_download_paper_weights_offline_with_a_local_registry(tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "source.pt"
    source.write_bytes(b"pretend weights")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    fake = PaperFile("256x256_diffusion_uncond.pt", source.as_uri(), digest, source.stat().st_size, "test")
    monkeypatch.setitem(paper.PAPER_FILES, "unet", fake)
    paths = download_paper_weights(cache_dir=tmp_path / "cache", include=("unet",), progress=False)
    assert paths["unet"] == tmp_path / "cache" / "256x256_diffusion_uncond.pt"
    assert paths["unet"].read_bytes() == b"pretend weights"
    with pytest.raises(ValueError, match="unknown part"):
        download_paper_weights(cache_dir=tmp_path, include=("vae",))


def test_download_command_parses_and_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    parser = argparse.ArgumentParser()
    download_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["download", "paper", "--cache-dir", str(tmp_path), "--only", "unet", "clip"])
    assert args.what == "paper" and args.cache_dir == tmp_path and args.only == ["unet", "clip"]

    calls = []

    def fake(cache_dir=None, include=()):
        calls.append((cache_dir, tuple(include)))
        return {part: tmp_path / part for part in include}

    monkeypatch.setattr(paper, "download_paper_weights", fake)
    assert args.func(args) == 0
    assert calls == [(tmp_path, ("unet", "clip"))]

    def offline(cache_dir=None, include=()):
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(paper, "download_paper_weights", offline)
    assert args.func(args) == 2
    assert "connection reset by peer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["download", "toy"])


@pytest.mark.parametrize("content", [b"", b"\x80\x02}q\x00(X\x01\x00\x00\x00aq", b"PK\x03\x04 not a zip at all"])
def test_an_empty_or_corrupt_unet_checkpoint_is_named_with_the_download_command(tmp_path: Path, content) -> None:
    path = tmp_path / "256x256_diffusion_uncond.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="256x256_diffusion_uncond.pt cannot be read") as info:
        load_unet_state_dict(path)
    assert f"{DOWNLOAD_COMMAND} --cache-dir {tmp_path}" in str(info.value)
    message = str(info.value).replace(str(tmp_path), "DIR")
    assert "weights_only=False" not in message and len(message) < 300, message


def _no_unet(*args, **kwargs):
    raise AssertionError("the 552M-parameter UNet was built before the checkpoints were checked")


def test_a_missing_or_cut_checkpoint_is_reported_before_the_unet_is_built(tmp_path: Path, monkeypatch) -> None:
    from bdlib.worlds.paper import world as paper_world

    monkeypatch.setattr(paper_world, "paper_unet", _no_unet)
    with pytest.raises(FileNotFoundError, match=f"256x256_diffusion_uncond.pt .* {DOWNLOAD_COMMAND}"):
        paper_world.load_paper_world(cache_dir=tmp_path)
    (tmp_path / "256x256_diffusion_uncond.pt").write_bytes(b"the first bytes of a download that was cut")
    (tmp_path / "ViT-B-16.pt").write_bytes(b"a CLIP file")
    with pytest.raises(ValueError, match=r"damaged or incomplete: 42 bytes instead of 2,211,383,297"):
        paper_world.load_paper_world(cache_dir=tmp_path)
