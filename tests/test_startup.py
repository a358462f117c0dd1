"""The command line's first moments: Ctrl-C while Python imports, a bogus MPLBACKEND and an unwritable HOME give
one short line, never a traceback or matplotlib's own warnings (issue 23, items 12 and 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Sends Ctrl-C (SIGINT) to this process when the module named in $BDLIB_TEST_INTERRUPT_AT is first imported: a
# user pressing Ctrl-C while the command line is still importing, at a moment the test chooses.
INTERRUPTING_SITECUSTOMIZE = """
import os, signal, sys

class _Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == os.environ.get("BDLIB_TEST_INTERRUPT_AT"):
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, _Interrupt())
"""


def bdlib_cli(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    full = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bdlib", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("module", ["torch", "matplotlib", "PIL"])
def test_ctrl_c_while_importing_exits_130_with_one_line(tmp_path, module):
    (tmp_path / "sitecustomize.py").write_text(INTERRUPTING_SITECUSTOMIZE)
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "BDLIB_TEST_INTERRUPT_AT": module}
    done = bdlib_cli("demo", "--out", str(tmp_path / "demo.png"), "--steps", "2", env=env)
    assert done.returncode == 130, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr and len(lines) == 1 and "stopped (Ctrl-C)" in lines[0], done.stderr
    assert not (tmp_path / "demo.png").exists()


def test_a_bogus_mplbackend_does_not_stop_the_command_line(tmp_path):
    done = bdlib_cli("demo", "--out", str(tmp_path / "demo.png"), "--steps", "2", env={"MPLBACKEND": "bogus"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "demo.png").exists() and "Traceback" not in done.stderr
