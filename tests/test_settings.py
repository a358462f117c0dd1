"""bdlib.core.settings: every field of MethodSettings is checked when it is made, with a message naming the fix."""

from __future__ import annotations

import math

import pytest

from bdlib.core.settings import MAX_WEIGHT, MethodSettings, check_weight


def test_the_defaults_are_the_papers_and_with_changes_a_copy():
    settings = MethodSettings()
    assert (settings.algorithm, settings.respacing, settings.k, settings.views) == ("blended", "100", 74, 8)
    assert (settings.guidance_scale, settings.range_scale, settings.lam) == (1000.0, 50.0, None)
    changed = settings.with_(k=10)
    assert changed.k == 10 and settings.k == 74


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"algorithm": "global"}, "algorithm must be one of blended, local, got 'global'"),
        ({"distance": "l2"}, "distance must be one of spherical, cosine"),
        ({"gradient": "x0"}, "gradient must be one of"),
        ({"views": 0}, "views must be an integer >= 1"),
        ({"views": True}, "views must be an integer"),
        ({"k": 3.0}, "k must be an integer, got 3.0"),
        ({"guidance_scale": -1.0}, r"guidance_scale must be in \[0, 1e\+12\]"),
        ({"range_scale": math.nan}, "range_scale must be a finite number"),
        ({"lam": "big"}, "lam must be a number, got 'big'"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"blending": "never"}, "blending must be one of"),
        ({"noise_aware": True, "algorithm": "local"}, "use algorithm='blended' with noise_aware=True"),
        ({"official": True, "distance": "cosine"}, "official spherical distance"),
        ({"official": True, "gradient": "pred_x0"}, "official=True takes the gradient w.r.t. x_t"),
        ({"official": True, "noise_aware": True}, "the official code has no noise-aware CLIP"),
        ({"blending": "end", "algorithm": "local"}, "an ablation of Algorithm 2"),
        ({"noise_aware": True, "gradient": "pred_x0"}, "its gradient is w.r.t. x_t"),
    ],
)
def test_a_bad_setting_is_refused_with_its_fix(changes, match):
    with pytest.raises(ValueError, match=match):
        MethodSettings(**changes)
    with pytest.raises(ValueError, match=match):
        MethodSettings().with_(**changes)  # a copy is checked again


def test_weights_are_finite_numbers_in_range():
    assert check_weight("lam", 0) == 0.0 and check_weight("lam", MAX_WEIGHT) == MAX_WEIGHT
    for value in (True, None, "1", math.inf, -1e-9, MAX_WEIGHT * 2):
        with pytest.raises(ValueError, match="^lam must be"):
            check_weight("lam", value)
    assert MethodSettings(lam=None, lpips_weight=None).lam is None  # None means the mode's default
