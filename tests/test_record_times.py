"""notebooks/record_times.py writes measured times into the lessons' headers and README, and nothing unmeasured."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "notebooks" / "record_times.py"


@pytest.fixture(scope="module")
def record_times():
    spec = importlib.util.spec_from_file_location("record_times", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def entry(seconds: float, status: str = "ok") -> dict:
    return {"seconds": seconds, "status": status}


def test_headers_and_readme_get_the_measured_times(record_times, tmp_path):
    for name in ("01_one", "02_two"):
        (tmp_path / f"{name}.py").write_text(f"# # {name}\n#\n# **Run time**: measured later.\n\n# %%\nx = 1\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "| `01_one.py` | ? |  first |\n| `02_two.py` | ? |  second |\n"
        "make notebooks                          # fast mode: old\n"
    )
    timings = {
        "fast": {"01_one": entry(10.2), "02_two": entry(30.0)},
        "full": {"01_one": entry(60), "02_two": entry(90)},
    }
    changed = record_times.update(timings, "test CPU", notebook_dir=tmp_path, readme_path=readme)
    assert changed == ["01_one.py", "02_two.py", "README.md"]
    assert "fast mode 10 s, full mode 60 s." in (tmp_path / "01_one.py").read_text()
    text = readme.read_text()
    assert "| `02_two.py` | 30 s / 90 s |  second |" in text
    assert "# fast mode: 10-30 s each, 0.7 min in all (test CPU)" in text


def test_refuses_unmeasured_or_failed_lessons(record_times, tmp_path):
    (tmp_path / "01_one.py").write_text("# **Run time**: x\n")
    readme = tmp_path / "README.md"
    readme.write_text("")
    with pytest.raises(SystemExit, match="no measured time for 01_one"):
        record_times.update({"fast": {"01_one": entry(1)}}, "x", notebook_dir=tmp_path, readme_path=readme)
    failed = {"fast": {"01_one": entry(1, "failed")}, "full": {"01_one": entry(2)}}
    with pytest.raises(SystemExit, match="failed in the last run"):
        record_times.update(failed, "x", notebook_dir=tmp_path, readme_path=readme)
    assert (tmp_path / "01_one.py").read_text() == "# **Run time**: x\n"
