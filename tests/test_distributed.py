"""torchrun with two CPU processes (gloo on 127.0.0.1): the same files and reports as one process, and a rank that
fails stops every rank with its message and writes nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ["--image", str(ROOT / "bdlib/examples/scene.png"), "--mask", str(ROOT / "bdlib/examples/scene_mask.png")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # this checkout's bdlib, also for scripts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, script: str = "-m bdlib") -> subprocess.CompletedProcess:
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        *script.split(),
    ]
    return subprocess.run([*launcher, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def bdlib_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bdlib", *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_edit_in_two_processes_writes_the_one_process_files(tmp_path):
    common = ["edit", "--world", "toy", *EXAMPLE, "--prompt", "a red circle", "--samples", "4", "--k", "8"]
    one = bdlib_cli(*common, "--batch-size", "2", "--out", str(tmp_path / "one" / "out.png"))
    two = torchrun(*common, "--out", str(tmp_path / "two" / "out.png"))  # one batch of 2 per rank
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert "in 2 processes" in two.stdout and two.stdout.count("edited in") == 1  # rank 0 reports, once
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(names) == 5
    for name in names:  # the same samples, the same ranking: identical files
        assert np.array_equal(pixels(tmp_path / "one" / name), pixels(tmp_path / "two" / name)), name


def test_evaluate_in_two_processes_equals_one_process(tmp_path):
    common = ["evaluate", "--tasks", "5", "--fast", "--batch-size", "2", "--only", "alg2 default", "remove: fill, k=6"]
    one = bdlib_cli(*common, "--out", str(tmp_path / "one.json"))
    two = torchrun(*common, "--out", str(tmp_path / "two.json"))
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    a, b = (json.loads((tmp_path / name).read_text())["settings"] for name in ("one.json", "two.json"))
    keys = ("text_match", "clean", "bg_max_abs", "bg_mean_abs", "fg_mean_abs", "seam", "clip_distance", "per_kind")
    assert [{k: row.get(k) for k in keys} for row in a] == [{k: row.get(k) for k in keys} for row in b]


@pytest.mark.parametrize("command", ["edit", "evaluate"])
def test_a_failing_rank_stops_every_rank_and_nothing_is_written(tmp_path, command):
    out = tmp_path / "out"
    args = {
        "edit": [
            "edit",
            "--world",
            "toy",
            *EXAMPLE,
            "--prompt",
            "a red circle",
            "--samples",
            "4",
            "--k",
            "4",
            "--out",
            str(out / "result.png"),
        ],
        "evaluate": [
            "evaluate",
            "--tasks",
            "5",
            "--fast",
            "--batch-size",
            "2",
            "--only",
            "alg2 k=6",
            "--out",
            str(out / "evaluation.json"),
        ],
    }[command]
    done = torchrun(*args, script=str(ROOT / "tests/helpers/fail_on_rank1.py"))
    assert done.returncode != 0
    assert "rank 1 of 2 failed" in done.stderr and "simulated failure on rank 1" in done.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["edit", *EXAMPLE, "--prompt", "a pink circle"], "unknown word(s) 'pink'"),
        (["edit", *EXAMPLE, "--prompt", "a red circle", "--k", "99"], "--k 99 is outside the chain"),
        (["evaluate", "--tasks", "5", "--fast", "--only", "alg2 turbo"], "unknown row(s) ['alg2 turbo']"),
    ],
)
def test_a_bad_input_stops_every_rank_before_the_group_with_one_message(tmp_path, args, words):
    """Each rank refuses the input before joining torchrun's group (tests/helpers/no_group.py fails if one joins) and
    exits with 2; rank 0 alone prints the message. torchrun itself then reports the failed ranks and exits with 1:
    its own report, which bdlib cannot change."""
    out = ["--out", str(tmp_path / ("r.json" if args[0] == "evaluate" else "r.png"))]
    done = torchrun(*args, *out, script=str(ROOT / "tests/helpers/no_group.py"))
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], done.stderr[-3000:]
    codes = {int(code) for code in re.findall(r"exitcode  : (-?\d+)", done.stderr)}  # torchrun's report of each rank
    assert 2 in codes and codes <= {2, -signal.SIGTERM}, done.stderr[-3000:]  # 2, or stopped by torchrun after one
    assert "internal error" not in done.stderr
    assert not list(tmp_path.iterdir())
