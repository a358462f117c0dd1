"""bdlib.course.widgets with a random-weights toy world: figures, the result cache and a widget round trip."""

from __future__ import annotations

import base64

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

import bdlib.course.edit_cache as edit_cache
import bdlib.course.widgets as bw
from bdlib.worlds.toy.tasks import example_task

FAST = {"respacing": "10", "views": 1}  # 10-step chains, one CLIP view: about a second per edit


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
    real = edit_cache.edit

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(edit_cache, "edit", counting)
    return calls


def test_render_lambda_figure_and_cache(random_toy_world, task, cache, monkeypatch):
    calls = _count_edits(monkeypatch)
    fig = bw.render_lambda(random_toy_world, task, 1000.0, cache=cache, **FAST)
    title = bw.figure_title(fig)
    assert "λ = 1000" in title and "background change" in title
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


def test_chain_start_is_the_samplers_x_k(random_toy_world, task, cache):
    done = bw.cached_edit(random_toy_world, task, cache=cache, algorithm="blended", k=5, **FAST)
    settings = bw.resolve_edit_settings(random_toy_world, None, algorithm="blended", k=5, **FAST)
    x_k, timestep = bw.chain_start(random_toy_world, bw.as_input(task), 0, settings)
    assert torch.equal(x_k, done.start) and timestep == done.timestep


def test_grid_edits_runs_the_missing_values_in_one_call(random_toy_world, task, cache, monkeypatch):
    calls: list[list] = []
    real = edit_cache.edit_grid

    def counting(*args, **kwargs):
        calls.append(list(args[5]))
        return real(*args, **kwargs)

    monkeypatch.setattr(edit_cache, "edit_grid", counting)
    bw.cached_edit(random_toy_world, task, cache=cache, algorithm="blended", k=3, **FAST)
    done = bw.cached_edit_grid(random_toy_world, task, "k", [3, 5, 7], cache=cache, algorithm="blended", **FAST)
    assert calls == [[5, 7]]  # k = 3 was cached; the rest in one call
    assert [d.result.settings.k for d in done] == [3, 5, 7]
    alone = bw.cached_edit(random_toy_world, task, cache=bw.ResultCache(), algorithm="blended", k=7, **FAST)
    assert torch.allclose(done[2].result.images, alone.result.images, atol=1e-5)  # as edit() of one value
    assert torch.equal(done[2].start, alone.start)
    again = bw.cached_edit_grid(random_toy_world, task, "k", [3, 5, 7], cache=cache, algorithm="blended", **FAST)
    assert calls == [[5, 7]] and [a.result for a in again] == [d.result for d in done]


def test_lambda_panel_carries_a_picture_per_value(random_toy_world, task, cache):
    panel = bw.lambda_panel(random_toy_world, task, values=(0.0, 1000.0), value=0.0, cache=cache, **FAST)
    assert isinstance(panel, bw.ipywidgets.VBox)
    assert cache.misses == 2 and "λ = 0:" in panel.title  # the grid was precomputed
    assert all(bytes(image.value).startswith(b"\x89PNG") for image in panel.images)
    assert len({bytes(image.value) for image in panel.images}) == 2 and panel.stack.children == tuple(panel.images)
    # the browser swaps pictures without Python: the slider's index drives the stack's selected index
    assert (panel.link.source, panel.link.target) == ((panel.slider, "index"), (panel.stack, "selected_index"))
    before = panel.title
    panel.slider.value = 1000.0  # what a user's slider release does
    assert cache.misses == 2  # from the pictures already there (the browser's link shows picture 1)
    assert panel.title != before and "λ = 1000:" in panel.title and panel.values["lam"] == 1000.0
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle  # a still for plain viewers
    assert bundle["text/plain"].startswith("λ panel: 2 of 2 pictures")


def test_a_new_setting_says_computing_first_then_redraws(random_toy_world, task, cache):
    panel = bw.k_panel(random_toy_world, task, values=(3, 6), value=6, cache=cache, **FAST)
    shown = {i: image.value for i, image in enumerate(panel.images)}
    messages: list[tuple[str, bool]] = []
    panel.status.observe(lambda c: messages.append((c["new"], panel.images[1].value == shown[1])), names="value")
    panel.controls["seed"].value = 1  # another seed: a new grid
    assert "computing k = 6 for seed = 1" in messages[0][0] and messages[0][1]  # said before the picture changed
    assert "ready" in messages[-1][0] and cache.misses == 4
    assert panel.images[1].value != shown[1] and panel.images[0].value != shown[0]
    assert set(panel.timings) == {"current", "grid"} and panel.timings["current"] <= panel.timings["grid"]


def test_an_error_is_shown_in_the_panel(random_toy_world, task, cache):
    panel = bw.k_panel(random_toy_world, task, values=(3, 6), value=6, cache=cache, **FAST)
    pictures = [image.value for image in panel.images]
    panel.controls["prompt"].value = "a blue squa"  # not a toy-world word
    assert "unknown word" in panel.status.value and "squa" in panel.status.value and "#b00020" in panel.status.value
    assert [image.value for image in panel.images] == pictures  # the last good pictures stay
    panel.controls["prompt"].value = "a blue square and a red circle"
    assert "ready" in panel.status.value and "'a blue square and a red circle'" in panel.title
    width = panel.controls["prompt"].layout.width
    assert width.startswith("calc(") and int(width[5:].split("ch")[0]) >= len("a blue square and a red circle")


def test_a_panel_without_precompute_draws_on_demand(random_toy_world, task, cache):
    panel = bw.k_panel(random_toy_world, task, values=(3, 6), value=6, precompute=False, cache=cache, **FAST)
    assert panel.frames[0] is None and cache.misses == 1 and panel.button.layout.display is None
    panel.slider.value = 3  # with a kernel, a missing value is computed when the slider reaches it
    assert "k = 3" in panel.title and cache.misses == 2 and panel.button.layout.display == "none"


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


def test_an_executed_notebook_carries_the_panel_into_the_page():
    """What a kernel-less page needs: the executed notebook's widget state holds one PNG per grid value, a stack
    that shows them, and a link from the slider's index to the stack's selected index (run in the browser)."""
    import nbformat
    from nbclient import NotebookClient

    code = (
        "from bdlib import load_world\n"
        "from bdlib.course.widgets import k_panel\n"
        "from bdlib.worlds.toy.tasks import example_task\n"
        "panel = k_panel(load_world('toy'), example_task(), values=(3, 6), value=6, respacing='10', views=1)\n"
        "panel"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(notebook, kernel_name="python3", timeout=600).execute()
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    models = {model_id: m for model_id, m in state.items()}
    by_name = {}
    for model_id, m in models.items():
        by_name.setdefault(m["model_name"], []).append(model_id)
    (stack_id,) = by_name["StackModel"]
    stack = models[stack_id]["state"]
    assert stack["selected_index"] == 1 and len(stack["children"]) == 2
    for child in stack["children"]:
        image = models[child.removeprefix("IPY_MODEL_")]
        assert image["model_name"] == "ImageModel"
        (buffer,) = image["buffers"]
        assert buffer["path"] == ["value"] and base64.b64decode(buffer["data"]).startswith(b"\x89PNG")
    links = [models[i]["state"] for i in by_name["LinkModel"]]
    to_stack = [link for link in links if link["target"] == [f"IPY_MODEL_{stack_id}", "selected_index"]]
    assert len(to_stack) == 1 and to_stack[0]["source"][1] == "index"
    output = notebook.cells[0].outputs[-1]["data"]
    assert output["application/vnd.jupyter.widget-view+json"]["model_id"] in models and "image/png" in output


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_panels_and_cached_edits_refuse_a_bad_seed_up_front(random_toy_world, task, cache, seed):
    for make in (bw.lambda_panel, bw.k_panel):
        with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*63\)"):
            make(random_toy_world, task, precompute=False, cache=cache, seed=seed, **FAST)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*63\)"):
        bw.cached_edit(random_toy_world, task, seed=seed, cache=cache)
