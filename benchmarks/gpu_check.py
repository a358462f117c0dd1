"""The GPU check: everything that can only be verified on a GPU, in one script that writes one results file.

    python benchmarks/gpu_check.py --device cuda --out benchmarks/results/gpu_check_cuda.json     # make gpu-check
    python benchmarks/gpu_check.py --device cpu --smoke --out /tmp/gpu_check.json                 # the dry run

Sections (``--only`` runs some of them; each runs in its own process with a time limit, and a failure is
recorded, not hidden, and does not stop the others):

- ``environment``: torch, CUDA, cuDNN, the device's name and memory;
- ``tests``: the test suite (``pytest -q``);
- ``device_edits``: whole toy edits on the device (both algorithms, DDPM and DDIM, official, noise-aware,
  x̂_0 gradient, 4 samples ranked, augmentations on) against the same edits on the CPU: the same seed gives
  the same noise on every device, so only float rounding differs (largest difference reported);
- ``notebooks_fast``, ``notebooks_full``: every lesson on the device, fast and full mode (lessons 01-08 use the
  toy world, 09 the paper's networks: the official checkpoints when downloaded, else random weights);
- ``bench_edit_paper``: whole paper-configuration edits at batch 1 and 4, fp32/bf16/fp16, with the official
  two-pass step in the same run (``benchmarks/bench_edit.py``);
- ``bench_guided_step``: one guided step of the paper configuration per precision and batch.

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
SECTIONS = ("environment", "tests", "device_edits", "notebooks_fast", "notebooks_full", "bench_edit_paper",
            "bench_guided_step")  # fmt: skip
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
            "bench_edit_paper": [py, "benchmarks/bench_edit.py", "--world", "toy", "--device", device, "--batch", "1",
                                 "--max-steps", "1", "--repeats", "1", "--official",
                                 "--out", str(out_dir / "bench_edit.json")],  # fmt: skip
            "bench_guided_step": [py, "benchmarks/bench_guided_step.py", "--device", device, "--smoke", "--batch", "1",
                                  "--precision", "fp32", "--repeats", "1", "--warmup", "0",
                                  "--out", str(out_dir / "bench_guided_step.json")],  # fmt: skip
        }
    results = ROOT / "benchmarks" / "results"
    return {
        "tests": [py, "-m", "pytest", "-q"],
        "device_edits": [py, __file__, "--device-edits", device],
        "notebooks_fast": [*notebooks, "--build-dir", str(out_dir / "nb_fast")],
        "notebooks_full": [*notebooks, "--full", "--build-dir", str(out_dir / "nb_full")],
        "bench_edit_paper": [py, "benchmarks/bench_edit.py", "--world", "paper", "--device", device, "--batch", "1",
                             "4", "--precision", "fp32", "bf16", "fp16", "--official", "--repeats", "3",
                             "--out", str(results / f"edit_paper_{device.replace(':', '')}.json")],  # fmt: skip
        "bench_guided_step": [py, "benchmarks/bench_guided_step.py", "--device", device.split(":")[0],
                              "--out", str(results / f"guided_step_{device.replace(':', '')}.json")],  # fmt: skip
    }


def environment(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "python": sys.version.split()[0], "device": device}
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda, but torch.cuda.is_available() is False on this machine")
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info |= {"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "name": props.name,
                 "memory_gib": round(props.total_memory / 2**30, 1), "count": torch.cuda.device_count()}  # fmt: skip
    return info


def device_edits(device: str, smoke: bool) -> dict[str, Any]:
    """Whole toy edits on ``device`` against the CPU: the largest difference of each case's ranked images."""
    import copy

    import torch

    from bdlib import load_world
    from bdlib.edit import edit
    from bdlib.worlds.toy.tasks import example_task

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cases = {"blended ddpm": {}, "blended ddim": {"ddim": True}, "official": {"official": True},
             "local": {"algorithm": "local"}, "noise-aware": {"noise_aware": True},
             "gradient x0": {"gradient": "pred_x0"}}  # fmt: skip
    if smoke:
        cases = {"blended ddpm": {}}
    cpu = load_world("toy")
    on_device = copy.deepcopy(cpu).to(device)
    task = example_task()
    out = {}
    for name, extra in cases.items():
        kwargs = dict(samples=2, seed=3, respacing="10", k=6, **extra) if smoke else dict(samples=4, seed=3, **extra)
        start = time.perf_counter()
        result = edit(on_device, task.image, task.mask, task.prompt, **kwargs)
        seconds = time.perf_counter() - start
        reference = edit(cpu, task.image, task.mask, task.prompt, **kwargs)
        out[name] = {"max_abs_diff": float((result.images - reference.images).abs().max()),
                     "same_ranking": bool(torch.equal(result.order, reference.order)),
                     "device_seconds": round(seconds, 2)}  # fmt: skip
    return out


def run_section(name: str, command: list[str], timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    result = None
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        output = done.stdout + done.stderr
        if name == "device_edits" and done.returncode == 0:
            result = json.loads(done.stdout)  # the section prints its measurements as JSON
    except subprocess.TimeoutExpired as error:
        status, output = f"timed out after {timeout:g} s", str(error.stdout or "") + str(error.stderr or "")
    entry = {"status": status, "seconds": round(time.perf_counter() - start, 1), "command": command,
             "output_tail": output[-TAIL:]}  # fmt: skip
    return entry if result is None else entry | {"result": result}


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.with_suffix("")  # per-run folder for executed notebooks and smoke outputs
    report: dict[str, Any] = {"device": args.device, "smoke": args.smoke, "started": time.strftime("%Y-%m-%d %H:%M"),
                              "sections": {}}  # fmt: skip
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
        print(json.dumps(device_edits(args.device_edits, args.smoke), indent=1))
        return 0
    report = run(args)
    return 0 if all(entry["status"] == "ok" for entry in report["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
