"""The object finder behind the toy DDPM's quality check, on real scenes where the truth is known."""

from __future__ import annotations

import torch

from bdlib.worlds.toy.sample_quality import connected_components, find_objects, judge_objects
from bdlib.worlds.toy.scenes import generate_scenes


def test_connected_components_separates_blobs():
    mask = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    mask[0, 0, :2, :2] = True
    mask[0, 0, 4:, 3:] = True
    mask[0, 0, 2, 5] = True  # a lone pixel: (3, 5) is empty, so it is not 4-connected to the second blob
    labels = connected_components(mask)[0]
    assert labels[0, 0] == labels[1, 1] != 0
    assert labels[4, 3] == labels[5, 5] != labels[0, 0]
    assert len(labels.unique()) == 4  # background + three 4-connected pieces


def test_finder_counts_every_object_of_real_scenes():
    scenes = generate_scenes(200, seed=11)
    masks, owners = find_objects(scenes.images)
    found = torch.bincount(owners, minlength=200)
    assert torch.equal(found, scenes.counts)
    assert masks.shape[1:] == (1, 32, 32)


def test_real_scenes_are_judged_clean_and_known():
    from bdlib.worlds.toy.oracle import load_oracle

    report = judge_objects(load_oracle(), generate_scenes(150, seed=12).images)
    assert report["objects_found"] >= 0.95 * report["candidates"]
    assert report["clean_known_fraction"] >= 0.95
    assert abs(sum(report["color_freq"].values()) - 100) < 0.5
