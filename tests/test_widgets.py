"""bdlib.widgets with a random-weights toy world: figures, the result cache and a widget round trip."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

import bdlib.widgets as bw
from bdlib.worlds.toy.tasks import example_task

FAST = {"respacing": "10", "augmentations": 1}  # 10-step chains, one CLIP view: about a second per edit


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny 32 px networks run fastest on one thread (and far faster on a busy CPU); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def task():
    return example_task()


@pytest.fixture()
def cache():
    return bw.ResultCache()


def _count_edits(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = bw.edit

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(bw, "edit", counting)
    return calls


def test_render_lambda_figure_and_cache(random_toy_world, task, cache, monkeypatch):
    calls = _count_edits(monkeypatch)
    fig = bw.render_lambda(random_toy_world, task, 1000.0, cache=cache, **FAST)
    title = bw.figure_title(fig)
    assert "λ = 1000" in title and "background error" in title
    assert len(fig.axes) == 4 and all(len(ax.images) == 1 for ax in fig.axes)
    width, height = fig.get_size_inches() * fig.dpi
    assert width <= 4 * 1.4 * 100 + 20 and height <= 260  # four images of 140 px each
    error = fig.bdlib_values["background_error"]
    assert error > 0 and f"{error:.4f}" in title  # Algorithm 1 never keeps the background exactly
    assert calls == [1] and (cache.hits, cache.misses) == (0, 1)
    plt.close(fig)

    again = bw.render_lambda(random_toy_world, task, 1000.0, cache=cache, **FAST)
    assert calls == [1] and (cache.hits, cache.misses) == (1, 1)  # a cache hit: no sampler run
    assert bw.figure_title(again) == title
    plt.close(again)

    other = bw.render_lambda(random_toy_world, task, 1000.0, cache=cache, seed=1, **FAST)
    assert calls == [1, 1] and cache.misses == 2  # a new seed is a new key
    plt.close(other)


def test_render_k_keeps_the_background_exactly(random_toy_world, task, cache):
    fig = bw.render_k(random_toy_world, task, 4, cache=cache, **FAST)
    title = bw.figure_title(fig)
    assert title.startswith("Algorithm 2, k = 4") and "outside 0\n" in title
    assert fig.bdlib_values["background_max"] == 0 and fig.bdlib_values["region_change"] > 0
    assert len(fig.axes) == 4
    plt.close(fig)
    done = bw.cached_edit(random_toy_world, task, cache=cache, algorithm="blended", k=4, **FAST)
    assert cache.hits == 1 and done.start.shape == (1, 3, 32, 32)


def test_metrics():
    image = torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    result = image.clone()
    result[..., :2, :] = 0.5  # inside the mask
    result[..., 3, 3] = 1.0  # one background pixel
    assert torch.allclose(bw.background_error(result, image, mask), torch.tensor([1.0 / 8]))
    assert torch.allclose(bw.region_change(result, image, mask), torch.tensor([0.5]))


def test_lambda_panel_round_trip(random_toy_world, task, cache):
    panel = bw.lambda_panel(random_toy_world, task, values=(0.0, 1000.0), value=0.0, cache=cache, **FAST)
    assert isinstance(panel, bw.ipywidgets.VBox)
    assert cache.misses == 2 and "λ = 0:" in panel.title  # the grid was precomputed
    before = panel.title
    panel.slider.value = 1000.0  # what a user's slider release does
    assert cache.misses == 2  # rendered from the cache
    assert panel.title != before and "λ = 1000:" in panel.title
    assert panel.figure.bdlib_values["lam"] == 1000.0


def test_k_panel_round_trip_and_controls(random_toy_world, task, cache):
    panel = bw.k_panel(random_toy_world, task, values=(3, 6), value=6, precompute=False, cache=cache, **FAST)
    assert panel.slider.options == (3, 6) and "k = 6" in panel.title and cache.misses == 1
    panel.slider.value = 3
    assert "k = 3" in panel.title and cache.misses == 2
    panel.controls["seed"].value = 1  # another seed: a new edit
    assert cache.misses == 3 and "k = 3" in panel.title
    panel.controls["prompt"].value = "a blue square"
    assert "'a blue square'" in panel.title


def test_oracle_scores(random_toy_world, task):
    from dataclasses import replace

    from bdlib.worlds.toy.oracle import build_oracle

    assert bw.oracle_scores(random_toy_world, task.image[None], task.mask[None], task.prompt) is None
    judged = replace(random_toy_world, oracle=build_oracle().eval())
    images = torch.stack([task.image, task.image])
    verdict = bw.oracle_scores(judged, images, task.mask[None], task.prompt)
    assert verdict["match"].shape == (2,) and verdict["score"].shape == (2,) and verdict["clean"].shape == (2,)
    nothing = bw.oracle_scores(judged, images, task.mask[None], "")  # a removal: "nothing here"
    assert torch.all((nothing["score"] >= 0) & (nothing["score"] <= 1))


def test_a_slider_moved_by_the_frontend_redraws_the_panel():
    """The Jupyter-protocol round trip of notebooks/widget_roundtrip.py: kernel, widget comms, redraw."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "notebooks" / "widget_roundtrip.py"
    spec = importlib.util.spec_from_file_location("widget_roundtrip", script)
    roundtrip = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(roundtrip)
    result = roundtrip.run(script.parent / "05_blended_diffusion.py", timeout=600)
    assert result["ok"] and result["slider_after"] != result["slider_before"]
    assert result["title_after"] != result["title_before"] and result["state_updates_from_kernel"] > 0


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_panels_and_cached_edits_refuse_a_bad_seed_up_front(random_toy_world, task, cache, seed):
    for make in (bw.lambda_panel, bw.k_panel):
        with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*63\)"):
            make(random_toy_world, task, precompute=False, cache=cache, seed=seed, **FAST)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*63\)"):
        bw.cached_edit(random_toy_world, task, seed=seed, cache=cache)
