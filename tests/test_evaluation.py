"""The benchmark's plumbing on a random-weights world (quality is measured by `python -m bdlib evaluate`)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bdlib.commands.evaluate import results_table, tradeoff_figure
from bdlib.evaluation import default_settings, run_benchmark
from bdlib.worlds.toy.oracle import build_oracle


@pytest.fixture(scope="module")
def report(random_toy_world):
    torch.manual_seed(0)
    cheap = random_toy_world.defaults.with_(respacing="6", start_index=3, augmentations=2)
    world = dataclasses.replace(random_toy_world, oracle=build_oracle().eval(), defaults=cheap)
    rows = default_settings(world, fast=True)
    keep = {
        "alg2 default",
        "alg1 lam=0",
        "alg1 lam=10000",
        "alg2 scale=1000 aug=1",
        "alg2 k=2",
        "alg2 top-1 of 4 ranked",
    }
    return run_benchmark(world, n_tasks=5, seed=0, batch_size=8, settings=[r for r in rows if r.name in keep])


def test_every_setting_is_scored(report):
    names = [row["name"] for row in report["settings"]]
    assert names[0] == "alg2 default" and "alg2 top-1 of 4 ranked" in names and len(names) == 6
    for row in report["settings"]:
        assert set(row["per_kind"]) == {"add", "replace", "remove", "recolor", "background"}
        assert 0 <= row["text_match"] <= 1 and row["seconds_per_edit"] > 0


def test_algorithm2_background_exact_and_algorithm1_not(report):
    for row in report["settings"]:
        if row["name"].startswith("alg2"):
            assert row["bg_max_abs"] == 0, row["name"]
        else:
            assert row["bg_max_abs"] > 0, row["name"]


def test_tradeoff_figure_draws(report):
    fig = tradeoff_figure(report)
    assert len(fig.axes) == 3


def test_results_table_has_a_row_per_setting(report):
    table = results_table(report).splitlines()
    rows = [line for line in table if line.startswith("| alg")]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [r["name"] for r in report["settings"]]
    assert all(row.count("|") == table[2].count("|") for row in rows)  # every row fills every column
    assert "5 seeded toy editing tasks" in table[0]


def test_full_settings_cover_the_issue_and_the_speed_defaults(random_toy_world):
    names = [row.name for row in default_settings(random_toy_world)]
    assert sum(name.startswith("alg1 lam=") for name in names) >= 4
    assert {"alg2 scale=10000 aug=1", "alg2 scale=10000 aug=8", "alg2 official", "alg2 bf16"} <= set(names)
    assert "alg2 20 steps" in names  # twice the world's respacing ("10" in the test world)
