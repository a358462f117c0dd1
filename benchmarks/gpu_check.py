"""The GPU check: everything that can only be verified on a GPU, in one script that writes one results file.

    python benchmarks/gpu_check.py --device cuda --out benchmarks/results/gpu_check_cuda.json     # make gpu-check
    python benchmarks/gpu_check.py --device cpu --smoke --out /tmp/gpu_check.json                 # the dry run

Sections (``--only`` runs some of them; each runs in its own process with a time limit, and a failure is
recorded, not hidden, and does not stop the others):

- ``environment``: torch, CUDA, cuDNN, the device's name and memory;
- ``tests``: the test suite (``pytest -q``);
- ``device_edits``: whole toy edits on the device (both algorithms, Algorithm 1 with LPIPS, DDPM and DDIM,
  official, noise-aware, x̂_0 gradient, 4 samples ranked, augmentations on) against the same edits on the CPU, after
  one untimed warm-up edit each. The same seed gives the same noise on every device and the toy world computes in
  float64, so only the rounding of other kernels differs: the section FAILS when a picture differs by more than
  2/255 or the ranking changes (on the CPU, 1 against 2 threads and batch sizes 1, 2, 4 give 0/255:
  ``benchmarks/results/thread_invariance_toy.json``). TF32 is off for these edits;
- ``notebooks_fast``, ``notebooks_full``: every lesson on the device, fast and full mode (lessons 01-08 use the
  toy world, 09 the paper's networks: the official checkpoints when downloaded, else random weights), with
  PyTorch's defaults (TF32 off for matrix products, on for cuDNN convolutions: lesson 09's float32 numbers on a GPU
  carry that rounding);
- ``bench_edit_paper``: whole paper-configuration edits at batch 1 and 4, fp32/bf16/fp16, with the official
  two-pass step in the same run (``benchmarks/bench_edit.py``);
- ``bench_guided_step``: one guided step of the paper configuration per precision and batch: bdlib's own step
  (``bdlib.core.variants.step``: the mask, the official two-pass step, the per-sample CPU draws and copies).

``--smoke`` is the CPU dry run that the tests execute so this script cannot rot: the same sections with tiny
settings (one test file, one notebook, a one-step toy benchmark).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = (
    "environment",
    "tests",
    "device_edits",
    "notebooks_fast",
    "notebooks_full",
    "bench_edit_paper",
    "bench_guided_step",
)
TAIL = 3000  # characters of output kept per section


def commands(device: str, smoke: bool, out_dir: Path) -> dict[str, list[str]]:
    """The command line of every subprocess section."""
    py = sys.executable
    notebooks = [py, "notebooks/run_notebooks.py", "--device", device, "--threads", "auto"]
    if smoke:
        return {
            "tests": [py, "-m", "pytest", "-q", "-x", "tests/test_randomness.py", "-k", "batching"],
            "device_edits": [py, __file__, "--device-edits", device, "--smoke"],
            "notebooks_fast": [*notebooks, "--only", "01", "--build-dir", str(out_dir / "nb_fast")],
            "notebooks_full": [*notebooks, "--only", "01", "--full", "--build-dir", str(out_dir / "nb_full")],
            "bench_edit_paper": [
                py,
                "benchmarks/bench_edit.py",
                "--world",
                "toy",
                "--device",
                device,
                "--batch",
                "1",
                "--max-steps",
                "1",
                "--repeats",
                "1",
                "--official",
                "--out",
                str(out_dir / "bench_edit.json"),
            ],
            "bench_guided_step": [
                py,
                "benchmarks/bench_guided_step.py",
                "--device",
                device,
                "--smoke",
                "--batch",
                "1",
                "--precision",
                "fp32",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--out",
                str(out_dir / "bench_guided_step.json"),
            ],
        }
    results = ROOT / "benchmarks" / "results"
    return {
        "tests": [py, "-m", "pytest", "-q"],
        "device_edits": [py, __file__, "--device-edits", device],
        "notebooks_fast": [*notebooks, "--build-dir", str(out_dir / "nb_fast")],
        "notebooks_full": [*notebooks, "--full", "--build-dir", str(out_dir / "nb_full")],
        "bench_edit_paper": [
            py,
            "benchmarks/bench_edit.py",
            "--world",
            "paper",
            "--device",
            device,
            "--batch",
            "1",
            "4",
            "--precision",
            "fp32",
            "bf16",
            "fp16",
            "--official",
            "--repeats",
            "3",
            "--out",
            str(results / f"edit_paper_{device.replace(':', '')}.json"),
        ],
        "bench_guided_step": [
            py,
            "benchmarks/bench_guided_step.py",
            "--device",
            device,
            "--out",
            str(results / f"guided_step_{device.replace(':', '')}.json"),
        ],
    }


def environment(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "python": sys.version.split()[0], "device": device}
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda, but torch.cuda.is_available() is False on this machine")
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info |= {
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
        }
    return info


#: Largest difference between a device's picture and the CPU's, in 1/255 (the toy world computes in float64).
TOLERANCE_255 = 2


class DeviceMismatch(RuntimeError):
    """A device's edit differs from the CPU's beyond the tolerance."""


def device_world(cpu, device: str):
    """A copy of the CPU world on ``device``."""
    import copy

    return copy.deepcopy(cpu).to(device)


def device_edits(device: str, smoke: bool) -> dict[str, Any]:
    """Whole toy edits on ``device`` against the CPU; raise :class:`DeviceMismatch` naming every case that differs
    by more than ``TOLERANCE_255`` or ranks differently (the measurements are printed first)."""
    import dataclasses

    import torch

    from bdlib import load_world
    from bdlib.edit import edit
    from bdlib.nets.lpips_adapter import load_lpips
    from bdlib.runtime.randomness import seeded_construction
    from bdlib.worlds.toy.tasks import example_task

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cases = {
        "blended ddpm": {},
        "blended ddim": {"ddim": True},
        "official": {"official": True},
        "local": {"algorithm": "local"},
        "local with LPIPS": {"algorithm": "local", "lpips_weight": 0.4},
        "noise-aware": {"noise_aware": True},
        "gradient x0": {"gradient": "pred_x0"},
    }
    if smoke:
        cases = {"blended ddpm": {}}
    cpu = load_world("toy")
    with seeded_construction(0):  # a random VGG trunk (no download), the same on both sides
        cpu = dataclasses.replace(cpu, lpips=load_lpips(pretrained=False).to(cpu.dtype))
    on_device = device_world(cpu, device)
    task = example_task()
    out, bad = {}, []
    for name, extra in cases.items():
        kwargs = dict(samples=2, seed=3, respacing="10", k=6, **extra) if smoke else dict(samples=4, seed=3, **extra)
        edit(on_device, task.image, task.mask, task.prompt, **{**kwargs, "samples": 1})  # warm-up, untimed
        start = time.perf_counter()
        result = edit(on_device, task.image, task.mask, task.prompt, **kwargs)
        seconds = time.perf_counter() - start
        reference = edit(cpu, task.image, task.mask, task.prompt, **kwargs)
        worst = int(((result.images - reference.images).abs() * 127.5).round().max())
        same_ranking = bool(torch.equal(result.order, reference.order))
        out[name] = {"max_abs_255": worst, "same_ranking": same_ranking, "device_seconds": round(seconds, 2)}
        if worst > TOLERANCE_255 or not same_ranking:
            bad.append(f"{name}: {worst}/255, ranking {'kept' if same_ranking else 'changed'}")
    print(json.dumps(out, indent=1))
    if bad:
        raise DeviceMismatch(f"the device's edits differ from the CPU's beyond {TOLERANCE_255}/255: " + "; ".join(bad))
    return out


def run_section(name: str, command: list[str], timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    result = None
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        output = done.stdout + done.stderr
        if name == "device_edits" and done.stdout.lstrip().startswith("{"):
            result = json.loads(done.stdout[: done.stdout.rindex("}") + 1])  # the measurements, printed as JSON
    except subprocess.TimeoutExpired as error:
        status, output = f"timed out after {timeout:g} s", str(error.stdout or "") + str(error.stderr or "")
    entry = {
        "status": status,
        "seconds": round(time.perf_counter() - start, 1),
        "command": command,
        "output_tail": output[-TAIL:],
    }
    return entry if result is None else entry | {"result": result}


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.with_suffix("")  # per-run folder for executed notebooks and smoke outputs
    report: dict[str, Any] = {
        "device": args.device,
        "smoke": args.smoke,
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "sections": {},
    }
    chosen = args.only or SECTIONS
    lines = commands(args.device, args.smoke, work)
    for name in chosen:
        print(f"[gpu-check] {name} ...", flush=True)
        if name == "environment":
            start = time.perf_counter()
            try:
                entry = {"status": "ok", **environment(args.device)}
            except Exception as error:  # recorded in the report
                entry = {"status": f"failed: {error}"}
            entry["seconds"] = round(time.perf_counter() - start, 1)
        else:
            entry = run_section(name, lines[name], args.timeout)
        report["sections"][name] = entry
        print(f"[gpu-check] {name}: {entry['status']} ({entry['seconds']} s)", flush=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(out)
    failed = [name for name, entry in report["sections"].items() if entry["status"] != "ok"]
    print(f"[gpu-check] wrote {out}; " + (f"FAILED: {', '.join(failed)}" if failed else "every section ok"))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu for the dry run")
    parser.add_argument("--smoke", action="store_true", help="tiny settings: the CPU dry run the tests execute")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per section (default 1800)")
    parser.add_argument("--out", default="benchmarks/results/gpu_check.json")
    parser.add_argument("--device-edits", metavar="DEVICE", help=argparse.SUPPRESS)  # the device_edits section
    args = parser.parse_args(argv)
    if args.device_edits:
        try:
            device_edits(args.device_edits, args.smoke)
        except DeviceMismatch as error:
            print(error, file=sys.stderr)
            return 1
        return 0
    report = run(args)
    return 0 if all(entry["status"] == "ok" for entry in report["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
