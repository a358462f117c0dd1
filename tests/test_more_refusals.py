"""Cases found beyond issue 23's list, tried as a new user would: each failed before its fix (see the report)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_helpers import EXAMPLES, cli
from PIL import Image

from bdlib import MethodSettings, edit

IMAGE, MASK = EXAMPLES / "scene.png", EXAMPLES / "scene_mask.png"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"world": "toy"}, r"world must be a World .*load_world\('toy'\).*got str"),
        ({"settings": {"k": 3}}, r"settings must be a MethodSettings.*got dict.*k=3"),
        ({"lamda": 5.0}, r"unknown setting 'lamda'.*lam"),
        ({"mask": np.ones((32, 32), bool), "invert_mask": True}, r"mask is empty once inverted \(invert_mask"),
        ({"dilate": 40}, r"mask covers the whole image once dilated by 40 pixels \(dilate"),
    ],
)
def test_the_api_names_a_wrong_argument(random_toy_world, kwargs, message):
    args = {"world": random_toy_world, "image": IMAGE, "mask": MASK, "prompt": "a red circle", **kwargs}
    with pytest.raises(ValueError, match=message):
        edit(args.pop("world"), args.pop("image"), args.pop("mask"), args.pop("prompt"), **args)


def test_an_animated_picture_is_refused_not_cut_to_its_first_frame(tmp_path, random_toy_world):
    first = Image.open(IMAGE).convert("RGB")
    first.save(tmp_path / "anim.gif", save_all=True, append_images=[first.rotate(90)])
    with pytest.raises(ValueError, match=r"anim\.gif is animated \(2 frames\).*save the frame"):
        edit(random_toy_world, tmp_path / "anim.gif", MASK, "a red circle")


def test_a_file_that_is_no_checkpoint_is_never_said_to_be_deleted(tmp_path, capsys):
    """A user's picture given as --checkpoint: refused, and the advice is another path, not deleting it."""
    picture = tmp_path / "holiday.png"
    picture.write_bytes(IMAGE.read_bytes())
    code = cli("train", "oracle", "--max-steps", "1", "--checkpoint", picture)
    err = capsys.readouterr().err
    assert code == 2 and "another --checkpoint" in err and "delete it" not in err, err
    assert picture.read_bytes() == IMAGE.read_bytes()


def test_method_settings_still_accepts_its_own_fields(random_toy_world):
    result = edit(random_toy_world, IMAGE, MASK, "a red circle", settings=MethodSettings(respacing="10", k=2))
    assert result.images.shape == (1, 3, 32, 32) and torch.isfinite(result.images).all()


def test_demo_into_a_folder_suggests_a_file_name_in_it(tmp_path, capsys):
    code = cli("demo", "--out", tmp_path, "--steps", "2")
    err = capsys.readouterr().err
    assert code == 2 and "is a folder" in err and str(tmp_path / "demo.png") in err, err
