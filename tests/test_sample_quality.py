"""The toy DDPM's quality check: its object finder on real scenes (where the truth is known), and the
shipped DDPM on a small sample (the model card has the 512-sample numbers)."""

from __future__ import annotations

import torch

from bdlib.worlds.toy.sample_quality import connected_components, evaluate_toy_ddpm, find_objects, judge_objects
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


def test_shipped_toy_ddpm_samples_look_like_the_data():
    """A small version of the model card's check (128 samples, 25 steps): the floors with a margin for the
    smaller sample. The same check fails on random weights."""
    from bdlib.worlds.toy.ddpm import build_toy_ddpm, load_toy_ddpm
    from bdlib.worlds.toy.oracle import load_oracle

    oracle = load_oracle()
    report = evaluate_toy_ddpm(load_toy_ddpm(), n=128, seed=21, respacing="25", batch_size=128, oracle=oracle)
    assert report["generated"]["clean_known_fraction"] >= 0.9, report
    assert report["max_frequency_gap_points"] <= 15, report
    assert report["generated"]["objects_per_image"] >= 0.8 * report["real"]["objects_per_image"], report
    random = evaluate_toy_ddpm(build_toy_ddpm().eval(), n=16, seed=21, respacing="10", batch_size=16, oracle=oracle)
    assert random["generated"]["clean_known_fraction"] < 0.9 or random["max_frequency_gap_points"] > 15


MEAN_COLOUR_MSE_LIMIT = 0.1  # measured: 0.048 for the shipped (8-group) model, 0.59 for the 32-group one


def test_shipped_toy_ddpm_predicts_each_images_mean_colour():
    """The failure the 32-group toy DDPM had: with one channel per GroupNorm group its output head could not
    reproduce the per-channel mean of ε, so x̂_0's mean colour was off (mean squared error 0.59 at t = 800)
    and samples drifted to saturated backgrounds. The shipped model (8 groups) predicts it (model card)."""
    from bdlib.worlds.toy.ddpm import load_toy_ddpm, toy_diffusion

    model, diffusion = load_toy_ddpm(), toy_diffusion(None)
    x0 = generate_scenes(64, seed=22).images
    t = torch.full((64,), 800)
    x_t = diffusion.q_sample(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        eps = model(x_t, diffusion.model_timesteps(t))[:, :3]
    mean_error = (diffusion.pred_x0_from_eps(x_t, t, eps) - x0).mean(dim=(2, 3))  # (64, 3)
    assert float(mean_error.pow(2).mean()) < MEAN_COLOUR_MSE_LIMIT
