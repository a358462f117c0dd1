"""A grid of λ or k values in one batch gives the same images as one edit per value."""

from __future__ import annotations

import pytest
import torch

from bdlib.edit import edit
from bdlib.grid import edit_grid
from bdlib.worlds.toy.tasks import example_task


@pytest.mark.parametrize(
    "field,values,extra",
    [
        ("k", [2, 6, 4], {}),
        ("k", [3, 6], {"official": True, "ddim": True}),
        ("lam", [0.0, 100.0, 1e4], {"algorithm": "local"}),
        ("lam", [10.0, 1e3], {"algorithm": "local", "official": True}),
    ],
)
def test_a_grid_equals_one_edit_per_value(random_toy_world, field, values, extra):
    task = example_task()
    records = []
    grid = edit_grid(
        random_toy_world, task.image, task.mask, "a red circle", field, values, seed=5, callback=records.append, **extra
    )
    for value, result in zip(values, grid, strict=True):
        alone = edit(random_toy_world, task.image, task.mask, "a red circle", seed=5, **{field: value}, **extra)
        torch.testing.assert_close(result.images, alone.images, rtol=0, atol=1e-4)
        torch.testing.assert_close(result.distances, alone.distances, rtol=0, atol=1e-5)
    if field == "k":  # one chain per k, each from its own start
        assert [r.t for r in records] == [t for k in values for t in range(k, -1, -1)]
    else:  # one chain for every λ, in one batch
        assert [r.t for r in records] == list(range(6, -1, -1)) and records[0].x_t.shape[0] == len(values)


def test_grid_refusals(random_toy_world):
    task = example_task()
    with pytest.raises(ValueError, match="λ only acts in Algorithm 1"):
        edit_grid(random_toy_world, task.image, task.mask, "a red circle", "lam", [1.0])
    with pytest.raises(ValueError, match="runs over one of"):
        edit_grid(random_toy_world, task.image, task.mask, "a red circle", "seed", [1])
    with pytest.raises(ValueError, match="k"):
        edit_grid(random_toy_world, task.image, task.mask, "a red circle", "k", [2, 99])
