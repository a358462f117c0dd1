"""Every command refuses bad input before its work: options that change nothing, damaged reports, a world that cannot
do what is asked. The refusal is exit code 2 with a short message; nothing is loaded, drawn or written first."""

from __future__ import annotations

import importlib

import pytest
from cli_helpers import EXAMPLES, cli, short

edit_module = importlib.import_module("bdlib.edit")  # the module (the package's attribute ``edit`` is the function)


@pytest.fixture
def nothing_loads(monkeypatch):
    """Fail the test if an edit loads a world or draws a sample: the refusal must come before both."""
    import bdlib.commands.edit as edit_command

    def started(*args, **kwargs):
        raise AssertionError("the work started although the input should have been refused")

    monkeypatch.setattr(edit_command, "load_world", started)
    monkeypatch.setattr(edit_module, "draw_samples", started)


@pytest.mark.parametrize(
    ("prompt", "extra", "words"),
    [
        ("a red circle", ["--lam", "5"], ["--lam", "Algorithm 1", "--algorithm local"]),
        ("a red circle", ["--lam", "1e9", "--algorithm", "blended"], ["--lam", "--algorithm local"]),
        ("a red circle", ["--cache-dir", "somewhere"], ["--cache-dir", "paper", "--world paper"]),
        ("a red circle", ["--random-weights"], ["--random-weights", "--world paper"]),
        ("a red circle", ["--no-fill"], ["--no-fill", '--prompt ""']),
        ("", ["--no-fill", "--official"], ["--no-fill", "official code has no fill"]),
        ("", ["--guidance-scale", "300"], ["--guidance-scale", "empty prompt"]),
        ("", ["--views", "4"], ["--views", "empty prompt"]),
        ("", ["--noise-aware"], ["--noise-aware", "empty prompt"]),
        ("a red circle", ["--noise-aware", "--world", "paper"], ["--noise-aware", "toy world", "--world toy"]),
    ],
)
def test_an_option_without_effect_is_refused_before_anything_loads(inputs, nothing_loads, capsys, prompt, extra, words):
    image, mask = inputs
    out = image.parent / "out.png"
    assert cli("edit", "--image", image, "--mask", mask, "--prompt", prompt, "--out", out, *extra) == 2
    err = short(capsys.readouterr().err)
    assert all(word in err for word in words), err
    assert "noise_aware=False" not in err  # the command line's words, not the Python API's
    assert sorted(p.name for p in image.parent.iterdir()) == ["mask.png", "scene.png"]


def test_the_api_refuses_lam_without_algorithm_1_and_noise_aware_without_its_clip(random_toy_world):
    from bdlib import edit

    image, mask = EXAMPLES / "scene.png", EXAMPLES / "scene_mask.png"
    with pytest.raises(ValueError, match="lam=5.0 has no effect.*algorithm='local'"):
        edit(random_toy_world, image, mask, "a red circle", lam=5.0)
    with pytest.raises(ValueError, match="guidance_scale=300.0 has no effect.*empty prompt"):
        edit(random_toy_world, image, mask, "", guidance_scale=300.0)
    with pytest.raises(ValueError, match="noise-aware CLIP"):  # random_toy_world has none
        edit(random_toy_world, image, mask, "a red circle", noise_aware=True)
    # official mode guides with a prompt of spaces (the official code tests prompt == ""): its scale counts there
    assert edit(random_toy_world, image, mask, "   ", official=True, guidance_scale=300.0, k=1).images.shape[0] == 1


# ------------------------------------------------------------------------- reports: read and checked before the work
GOOD_ROW = {
    "name": "alg2 default",
    "text_match": 0.5,
    "clean": 0.5,
    "bg_max_abs": 0.0,
    "bg_mean_abs": 0.0,
    "fg_mean_abs": 0.2,
    "clip_distance": 1.0,
    "seconds_per_edit": 0.1,
    "settings": {"k": 18},
    "per_kind": {"add": {"n": 1, "text_match": 0.5}},
}
DAMAGED_REPORTS = {
    "a row lacks its metrics": {"n_tasks": 5, "seed": 0, "settings": [GOOD_ROW, {"name": "alg2 k=6"}]},
    "a row is not a dict": {"n_tasks": 5, "seed": 0, "settings": [GOOD_ROW, ["alg2 k=6"]]},
    "settings is not a list": {"n_tasks": 5, "seed": 0, "settings": {"alg2 default": GOOD_ROW}},
    "the report is a list": [GOOD_ROW],
}


@pytest.mark.parametrize("case", sorted(DAMAGED_REPORTS))
def test_evaluate_only_refuses_a_report_with_damaged_rows_before_running(tmp_path, monkeypatch, capsys, case):
    import json

    import bdlib.commands.evaluate as evaluate_command

    monkeypatch.setattr(evaluate_command, "run_benchmark", lambda *a, **k: pytest.fail("the benchmark started"))
    report = tmp_path / "evaluation.json"
    report.write_text(json.dumps(DAMAGED_REPORTS[case]))
    before = report.read_bytes()
    assert cli("evaluate", "--tasks", "5", "--only", "alg2 default", "--out", report) == 2
    err = short(capsys.readouterr().err)
    assert "is not a bdlib evaluation report" in err and "python -m bdlib evaluate" in err
    assert report.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["evaluation.json"]


@pytest.mark.parametrize("content", ['{"n_tasks": 5, "se', '{"n_tasks": 5, "seed": 0, "settings": [{"name": "x"}]}'])
def test_figures_checks_evaluation_json_before_drawing_anything(tmp_path, monkeypatch, capsys, content):
    import bdlib.__main__ as entry
    import bdlib.commands.figures as figures_command

    def started(*args, **kwargs):
        raise AssertionError("a figure was made although evaluation.json is damaged")

    monkeypatch.setattr(entry, "main", started)  # the demo and the edit run through it
    monkeypatch.setattr(figures_command, "save_figure", started)
    (tmp_path / "evaluation.json").write_text(content)
    assert cli("figures", "--out", tmp_path) == 2
    err = short(capsys.readouterr().err)
    assert "evaluation.json" in err and "is not a bdlib evaluation report" in err
    assert [p.name for p in tmp_path.iterdir()] == ["evaluation.json"]
    assert (tmp_path / "evaluation.json").read_text() == content
