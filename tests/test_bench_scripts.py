"""The benchmark scripts run end to end in their --smoke mode and write well-formed JSON records.

The smoke run takes about 15 s on a 2-core CPU that is busy with other work (the timeouts are generous
so that a loaded machine does not fail the test).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT_ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # scripts import this checkout's bdlib, not an installed one
GUIDED_STEP = REPO_ROOT / "benchmarks" / "bench_guided_step.py"


def load_script(path: Path) -> ModuleType:
    """Import a benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


REQUIRED_FIELDS = {
    "world",
    "device",
    "device_name",
    "batch",
    "precision",
    "views",
    "image_size",
    "seconds_per_step",
    "seconds_all",
    "peak_memory_mb",
    "peak_memory_kind",
    "unet_forward_tflop_per_image",
    "step_tflop",
    "achieved_tflops",
    "torch_version",
    "threads",
    "output_finite",
}


@pytest.fixture(scope="module")
def smoke_records(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    cmd = [
        sys.executable,
        str(GUIDED_STEP),
        "--smoke",
        "--device",
        "cpu",
        "--batch",
        "1",
        "--precision",
        "fp32",
        "bf16",
        "fp16",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=SCRIPT_ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipping fp16 on cpu" in result.stdout
    return json.loads(out.read_text())


def test_smoke_writes_one_record_per_configuration(smoke_records: list[dict]) -> None:
    # fp16 is skipped on the CPU, so 2 precisions remain.
    assert sorted((r["precision"], r["batch"]) for r in smoke_records) == [("bf16", 1), ("fp32", 1)]
    for r in smoke_records:
        assert REQUIRED_FIELDS <= r.keys(), REQUIRED_FIELDS - r.keys()
        assert r["world"] == "smoke" and r["device"] == "cpu" and r["views"] == 8
        assert r["image_size"] == 64
        assert r["seconds_per_step"] > 0 and len(r["seconds_all"]) == 1
        assert r["peak_memory_kind"] == "process_peak_rss" and r["peak_memory_mb"] > 0
        assert r["output_finite"] is True


def test_smoke_flop_counts_are_consistent(smoke_records: list[dict]) -> None:
    unet = smoke_records[0]["unet_forward_tflop_per_image"]
    assert unet > 0
    for r in smoke_records:
        assert r["unet_forward_tflop_per_image"] == unet  # counted once, on the meta device
        # A step is the UNet forward plus its input backward (about as many FLOPs again) plus CLIP.
        assert r["step_tflop"] > 2 * unet
        assert r["achieved_tflops"] == pytest.approx(r["step_tflop"] / r["seconds_per_step"])


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(GUIDED_STEP)


def test_step_flops_grow_linearly_with_batch(bench: ModuleType) -> None:
    meta_world = bench.build_world(smoke=True, image_size=64, device="meta")
    unet_1, step_1 = bench.count_flops(meta_world, 1)
    unet_3, step_3 = bench.count_flops(meta_world, 3)
    assert unet_3 == unet_1  # the UNet forward is always counted per image
    assert step_3 == pytest.approx(3 * step_1, rel=1e-9)
    assert 2 * unet_1 < step_1 < 3 * unet_1  # smoke CLIP is tiny next to the UNet


def test_cuda_request_without_a_gpu_names_the_fix(bench: ModuleType, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="--device cpu"):
        bench.main(["--smoke", "--device", "cuda", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def test_bad_image_size_is_refused(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--smoke", "--image-size", "100"])
    assert "multiple of 32" in capsys.readouterr().err


def test_edit_benchmark_writes_the_issue_fields_per_precision_and_batch(tmp_path: Path) -> None:
    bench_edit = load_script(REPO_ROOT / "benchmarks" / "bench_edit.py")
    out = tmp_path / "edit.json"
    args = [
        "--world",
        "toy",
        "--batch",
        "1",
        "2",
        "--precision",
        "fp32",
        "bf16",
        "--repeats",
        "1",
        "--max-steps",
        "2",
        "--official",
        "--out",
        str(out),
    ]
    bench_edit.run(bench_edit.parse_args(args))
    records = json.loads(out.read_text())
    assert [(r["precision"], r["batch"]) for r in records] == [("fp32", 1), ("fp32", 2), ("bf16", 1), ("bf16", 2)]
    for record in records:
        assert {
            "world",
            "device",
            "batch",
            "views",
            "steps",
            "seconds_per_edit",
            "seconds_per_step",
            "peak_memory_mb",
            "official_two_pass_seconds_per_edit",
        } <= set(record)
        assert record["timed_steps"] == 2 and record["extrapolated"] and len(record["seconds_all"]) == 1
        assert record["seconds_per_edit"] == pytest.approx(record["seconds_per_step"] * record["steps"])
        assert record["seconds_per_step"] > 0 and record["peak_memory_mb"] > 0
        assert record["device_name"] and record["first_edit_seconds"] > 0
        # counted FLOPs: steps × one step; the 2-sample edit counts twice the 1-sample edit's
        assert record["achieved_tflops"] == pytest.approx(
            record["counted_tflop_per_edit"] / record["seconds_per_edit"], rel=1e-3
        )
        peaks = record["gemm_peak_tflops"]
        assert set(peaks) == {"fp32", "bf16"} and min(peaks.values()) > 0
        for dtype, floor in record["floor_seconds_per_edit"].items():
            assert floor == pytest.approx(record["counted_tflop_per_edit"] / peaks[dtype], rel=1e-2)
    by_config = {(r["precision"], r["batch"]): r["counted_tflop_per_edit"] for r in records}
    assert by_config["fp32", 2] == pytest.approx(2 * by_config["fp32", 1], rel=1e-3)
    assert by_config["bf16", 1] == pytest.approx(by_config["fp32", 1], rel=1e-3)  # the same networks


def test_edit_benchmark_times_a_compiled_unet_beside_the_eager_one(tmp_path: Path) -> None:
    bench_edit = load_script(REPO_ROOT / "benchmarks" / "bench_edit.py")
    out = tmp_path / "edit.json"
    args = [
        "--world",
        "toy",
        "--batch",
        "1",
        "--repeats",
        "1",
        "--max-steps",
        "2",
        "--compile",
        "--compile-backend",
        "eager",
        "--out",
        str(out),
    ]  # eager: dynamo without inductor's codegen
    bench_edit.run(bench_edit.parse_args(args))
    eager, compiled = json.loads(out.read_text())
    assert (eager["compiled_unet"], compiled["compiled_unet"]) == (False, True)
    assert compiled["counted_tflop_per_edit"] == eager["counted_tflop_per_edit"] > 0
    assert compiled["seconds_per_edit"] > 0


def test_flop_count_matches_the_convolution_formula_forward_and_input_backward() -> None:
    load_script(REPO_ROOT / "benchmarks" / "bench_edit.py")  # puts benchmarks/ on sys.path
    from bench_common import FlopCount

    conv = torch.nn.Conv2d(8, 16, 3, padding=1).requires_grad_(False)
    x = torch.randn(2, 8, 10, 10, requires_grad=True)
    per_pass = 2 * 2 * 16 * 10 * 10 * 8 * 3 * 3  # 2 FLOPs per multiply-add, batch 2, 16 outputs, 8x3x3 taps
    with FlopCount() as forward:
        y = conv(x)
    with FlopCount() as backward:
        torch.autograd.grad(y.sum(), x)  # frozen weights: the input gradient only
    assert forward.flops == per_pass and backward.flops == per_pass


def test_precision_tolerance_finds_the_unet_far_more_sensitive_than_clip(tmp_path: Path) -> None:
    script = load_script(REPO_ROOT / "benchmarks" / "precision_tolerance.py")
    out = tmp_path / "tolerance.json"
    script.main(["--indices", "18", "--seeds", "0", "--out", str(out)])
    records = {r["precision"]: r for r in json.loads(out.read_text())}
    clip_only, everything = records["bf16-clip"], records["bf16"]
    assert clip_only["pred_x0_max_abs"] == 0  # the UNet stayed in float32
    assert 0 < clip_only["grad_relative_l2"] < 0.05 < everything["grad_relative_l2"]
    with pytest.raises(SystemExit):
        script.main(["--indices", "30", "--out", str(out)])


def test_gpu_check_dry_run_covers_every_section(tmp_path):
    """``benchmarks/gpu_check.py --device cpu --smoke``: the GPU check's CPU dry run, so the script cannot rot."""
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "gpu_check.py"),
            "--device",
            "cpu",
            "--smoke",
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        env=SCRIPT_ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = json.loads(out.read_text())
    statuses = {name: entry["status"] for name, entry in report["sections"].items()}
    assert done.returncode == 0 and set(statuses.values()) == {"ok"}, (statuses, done.stdout[-2000:])
    assert list(statuses) == list(load_script(REPO_ROOT / "benchmarks" / "gpu_check.py").SECTIONS)
    edits = report["sections"]["device_edits"]["result"]
    assert edits["blended ddpm"]["max_abs_255"] == 0 and edits["blended ddpm"]["same_ranking"]  # CPU vs CPU


def test_bench_distributed_runs_one_and_two_processes(tmp_path):
    script = load_script(REPO_ROOT / "benchmarks" / "bench_distributed.py")
    out = tmp_path / "distributed.json"
    record = script.main(
        [
            "--samples",
            "2",
            "--k",
            "3",
            "--processes",
            "1",
            "2",
            "--repeats",
            "1",
            "--estimate-step-seconds",
            "0.5",
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert [c["processes"] for c in record["configurations"]] == [1, 2]
    assert all(c["samples_per_second"] > 0 and c["wall_seconds"] > c["edit_seconds"] for c in record["configurations"])
    estimate = record["estimate"]
    assert estimate["label"].startswith("ESTIMATE") and estimate["1_gpus"] > estimate["4_gpus"] > estimate["8_gpus"]


def test_removal_recipes_script_scores_each_recipe(tmp_path):
    script = load_script(REPO_ROOT / "benchmarks" / "removal_recipes.py")
    out = tmp_path / "removal.json"
    record = script.main(
        [
            "--tasks",
            "10",
            "--only",
            "prior only, k=18",
            "RePaint 5 jumps, k=18",
            "away from object captions 300, k=18",
            "--out",
            str(out),
        ]
    )
    assert record["tasks"] == 2 and json.loads(out.read_text()) == record
    assert all(0 <= recipe["removed"] <= 1 for recipe in record["recipes"].values())


def test_batch_invariance_script_records_each_batching(tmp_path):
    script = load_script(REPO_ROOT / "benchmarks" / "batch_invariance.py")
    record = script.main(["--samples", "2", "--batch-sizes", "1", "--seeds", "0", "--out", str(tmp_path / "b.json")])
    (run,) = record["runs"]
    assert run["batch_size"] == 1 and len(run["max_abs_diff_per_sample"]) == 2 and isinstance(run["same_ranking"], bool)
    assert json.loads((tmp_path / "b.json").read_text()) == record


def test_panel_benchmark_times_both_panels_and_strategies(tmp_path):
    script = load_script(REPO_ROOT / "benchmarks" / "bench_panel.py")
    out = tmp_path / "panel.json"
    assert script.main(["--smoke", "--repeats", "1", "--strategies", "batch", "sequential", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"k/batch", "k/sequential", "lambda/batch", "lambda/sequential"}
    for times in summary.values():
        assert 0 < times["current_s_min"] <= times["current_s_max"] and times["grid_s_min"] >= times["current_s_min"]


def test_gpu_check_fails_when_the_device_edits_differ(monkeypatch):
    """The device section compares with the CPU and fails beyond 2/255: shown here with a 'device' whose UNet was
    perturbed by 1 % (the same run without the perturbation is the dry run's device_edits section, which passes)."""
    gpu_check = load_script(REPO_ROOT / "benchmarks" / "gpu_check.py")
    real = gpu_check.device_world

    def wrong(cpu, device):
        world = real(cpu, device)
        with torch.no_grad():
            for param in world.unet.parameters():
                param.mul_(1.01)
        return world

    monkeypatch.setattr(gpu_check, "device_world", wrong)
    with pytest.raises(gpu_check.DeviceMismatch, match=r"blended ddpm: \d+/255"):
        gpu_check.device_edits("cpu", smoke=True)
