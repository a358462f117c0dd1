"""The benchmark's plumbing on a random-weights world (quality is measured by `python -m bdlib evaluate`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import pytest
import torch

from bdlib.bench.evaluation import run_benchmark
from bdlib.bench.rows import default_settings
from bdlib.commands.evaluate import results_table, tradeoff_figure, update_rows
from bdlib.worlds.toy.oracle import build_oracle


@pytest.fixture(scope="module")
def cheap_world(random_toy_world):
    torch.manual_seed(0)
    cheap = random_toy_world.defaults.with_(respacing="6", k=3, views=2)
    return dataclasses.replace(random_toy_world, oracle=build_oracle().eval(), defaults=cheap)


@pytest.fixture(scope="module")
def report(cheap_world):
    world = cheap_world
    rows = default_settings(world, fast=True)
    keep = {
        "alg2 default",
        "alg1 lam=0",
        "alg1 lam=100000",
        "alg2 scale=1000 aug=1",
        "alg2 k=2",
        "alg2 top-1 of 4 ranked",
        "alg2 paste once at the end",
        "alg2 no blending, no paste",
        "remove: prior only, k=3",
    }
    return run_benchmark(world, n_tasks=5, seed=0, batch_size=8, settings=[r for r in rows if r.name in keep])


def test_every_setting_is_scored(report):
    names = [row["name"] for row in report["settings"]]
    assert names[0] == "alg2 default" and "alg2 top-1 of 4 ranked" in names and len(names) == 9
    for row in report["settings"]:
        expected = {"remove"} if row["name"].startswith("remove") else {"add", "replace", "recolor"}
        if not row["name"].startswith(("remove", "alg2 k=")):
            expected = {"add", "replace", "remove", "recolor", "background"}
        assert set(row["per_kind"]) == expected, row["name"]
        assert 0 <= row["text_match"] <= 1 and row["seconds_per_edit"] > 0


def test_algorithm2_background_exact_and_algorithm1_not(report):
    for row in report["settings"]:
        if row["name"] == "alg2 no blending, no paste" or row["name"].startswith("alg1"):
            assert row["bg_max_abs"] > 0, row["name"]
        else:
            assert row["bg_max_abs"] == 0, row["name"]
    by_name = {row["name"]: row for row in report["settings"]}
    assert by_name["alg2 default"]["bg_mean_before_paste"] == 0  # paper mode: the last blend is the clean input
    assert by_name["alg2 paste once at the end"]["bg_mean_before_paste"] > 0  # only the final paste fixes it


def test_tradeoff_figure_draws(report):
    fig = tradeoff_figure(report)
    assert len(fig.axes) == 6 and sum(ax.has_data() for ax in fig.axes) == 5


def test_results_table_has_a_row_per_setting(report):
    table = results_table(report).splitlines()
    rows = [line for line in table if line.startswith(("| alg", "| remove"))]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [r["name"] for r in report["settings"]]
    assert all(row.count("|") == table[2].count("|") for row in rows)  # every row fills every column
    assert "5 seeded toy editing tasks" in table[0]


def test_full_settings_cover_the_issue_and_the_speed_defaults(random_toy_world):
    names = [row.name for row in default_settings(random_toy_world)]
    lams = [name for name in names if name.startswith("alg1 lam=") and "scale" not in name]
    assert len(lams) >= 6 and "alg1 lam=0" in lams and "alg1 lam=100000" in lams  # five decades and beyond
    ks = [int(name.split("=")[1]) for name in names if name.startswith("alg2 k=")]
    assert ks == sorted(ks) and len(ks) >= 6
    expected = {"alg2 scale=10000 aug=1", "alg2 scale=10000 aug=8", "alg2 official", "alg2 bf16", "alg2 bf16-clip"}
    assert expected <= set(names)
    assert "alg2 20 steps" in names  # twice the world's respacing ("10" in the test world)


def test_only_reruns_the_named_rows_and_keeps_the_others(report, cheap_world, tmp_path):
    stale = json.loads(json.dumps(report))
    stale["settings"] = [row for row in stale["settings"] if row["name"] != "alg1 lam=0"]  # a missing row
    stale["settings"][0]["text_match"] = -1.0  # a stale "alg2 default"
    out = tmp_path / "evaluation.json"
    out.write_text(json.dumps(stale))
    args = argparse.Namespace(only=["alg2 default", "alg1 lam=0"], out=out, tasks=5, seed=0, fast=True, batch_size=8)
    updated = update_rows(cheap_world, args, time.time())
    by_name = {row["name"]: row for row in updated["settings"]}
    original = {row["name"]: row for row in report["settings"]}
    assert list(by_name) == [row["name"] for row in report["settings"]]  # the table's order, the row restored
    for name in ("alg2 default", "alg1 lam=0"):  # same tasks and seeds: the rerun repeats the first run
        for key in ("text_match", "clean", "bg_max_abs", "fg_mean_abs", "clip_distance", "seam"):
            assert by_name[name][key] == original[name][key], (name, key)
    assert by_name["alg2 k=2"] == original["alg2 k=2"]  # untouched
    assert updated["updates"][0]["rows"] == ["alg2 default", "alg1 lam=0"]
    assert "rows alg2 default, alg1 lam=0 rerun on" in results_table(updated)


def test_only_refuses_unknown_rows_other_tasks_and_a_missing_file(cheap_world, report, tmp_path):
    out = tmp_path / "evaluation.json"
    args = argparse.Namespace(only=["alg2 default"], out=out, tasks=5, seed=0, fast=True, batch_size=8)
    out.write_text(json.dumps(report))
    with pytest.raises(ValueError, match="unknown row"):
        update_rows(cheap_world, argparse.Namespace(**{**vars(args), "only": ["alg2 turbo"]}), time.time())
    with pytest.raises(ValueError, match="pass the same --tasks and --seed"):
        update_rows(cheap_world, argparse.Namespace(**{**vars(args), "tasks": 200}), time.time())
    assert json.loads(out.read_text()) == report  # nothing written on refusal
