"""The messages a new user meets, one table (issue 23, "Unclear messages"): each case names its problem and its fix in
the command line's words, in one or two lines, with exit code 2 (or 0 where the command succeeds and only its words
were wrong before)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import EXAMPLES, cli

ROOT = Path(__file__).resolve().parent.parent


def _edit(tmp: Path, image=None, mask=None, *extra) -> list:
    return [
        "edit",
        "--image",
        image or EXAMPLES / "scene.png",
        "--mask",
        mask or EXAMPLES / "scene_mask.png",
        "--prompt",
        "a red circle",
        "--out",
        tmp / "out.png",
        *extra,
    ]


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.png")
    return tmp / "pipe.png"


def _unreadable(tmp: Path, monkeypatch) -> Path:
    """A picture the user may not read (simulated: the tests may run as root, who reads every file)."""
    from PIL import Image

    path = tmp / "locked.png"
    shutil.copy(EXAMPLES / "scene.png", path)
    real = Image.open

    def refuse(source, *args, **kwargs):
        if Path(source) == path:
            raise PermissionError(13, "Permission denied", str(path))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(Image, "open", refuse)
    return path


def _unreadable_weights(tmp: Path, monkeypatch) -> Path:
    """A weights file the user may not read (simulated as above)."""
    path = tmp / "w.pt"
    path.write_bytes(b"")
    real = open

    def refuse(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refuse)
    return path


def _without_toy_clip(tmp: Path, monkeypatch) -> None:
    from bdlib.worlds.toy import weights_io

    folder = tmp / "weights"
    shutil.copytree(weights_io.WEIGHTS_DIR, folder)
    (folder / "toy_clip.safetensors").unlink()
    monkeypatch.setattr(weights_io, "WEIGHTS_DIR", folder)


def _fake_benchmark(monkeypatch) -> None:
    from test_cli_refusals import GOOD_ROW  # one well-formed report row for every test that fakes a report

    import bdlib.commands.evaluate as evaluate_command

    monkeypatch.setattr(evaluate_command, "run_benchmark", lambda *a, **k: {"settings": [dict(GOOD_ROW)]})


# case: (the arguments, given tmp and monkeypatch; words the message must hold; words it must not; exit code)
CASES = {
    "/dev/null as --image": (
        lambda t, m: _edit(t, image="/dev/null"),
        ["/dev/null", "not a regular file"],
        ["does not exist"],
        2,
    ),
    "a FIFO as --mask": (
        lambda t, m: _edit(t, mask=_fifo(t)),
        ["pipe.png", "not a regular file"],
        ["does not exist"],
        2,
    ),
    "an unreadable --image": (
        lambda t, m: _edit(t, image=_unreadable(t, m)),
        ["cannot be read", "Permission denied", "permissions"],
        ["is not an image PIL can read"],
        2,
    ),
    "a folder as --init-from": (
        lambda t, m: ["train", "oracle", "--init-from", t, "--checkpoint", t / "c.pt"],
        ["--init-from", "is a folder", "give the path of a weight file"],
        ["[Errno"],
        2,
    ),
    "unreadable --init-from": (
        lambda t, m: ["train", "oracle", "--init-from", _unreadable_weights(t, m), "--checkpoint", t / "c.pt"],
        ["cannot be read", "Permission denied"],
        ["[Errno"],
        2,
    ),
    "a folder as --checkpoint": (
        lambda t, m: ["train", "oracle", "--checkpoint", t],
        ["is a folder", "oracle.pt"],
        ["result.png"],
        2,
    ),
    "a folder named like a paper checkpoint": (
        lambda t, m: (
            (t / "256x256_diffusion_uncond.pt").mkdir() or _edit(t, None, None, "--world", "paper", "--cache-dir", t)
        ),
        ["is a folder", "256x256_diffusion_uncond.pt", "python -m bdlib download paper"],
        ["was not found"],
        2,
    ),
    "missing toy weights": (
        lambda t, m: _without_toy_clip(t, m) or _edit(t),
        ["toy_clip.safetensors", "train toy-clip --export"],
        [],
        2,
    ),
    "--views 1000000": (
        lambda t, m: _edit(t, None, None, "--views", "1000000"),
        ["--views", "views"],
        ["close other programs"],
        2,
    ),
    "--k beyond the chain": (
        lambda t, m: _edit(t, None, None, "--k", "99"),
        ["--k 99", "from 0", "to 24"],
        ["start_index"],
        2,
    ),
    "--out .JSON": (
        lambda t, m: ["evaluate", "--tasks", "5", "--only", "alg2 turbo", "--out", t / "r.JSON"],
        ["unknown row"],
        [".json file"],
        2,
    ),
    "evaluate --only's time": (
        lambda t, m: (
            _fake_benchmark(m) or ["evaluate", "--tasks", "5", "--only", "alg2 default", "--out", t / "r.json"]
        ),
        ["wrote", " s"],
        ["0.0 min"],
        0,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_message_names_the_problem_and_the_fix(tmp_path, monkeypatch, capsys, case):
    make_args, wanted, unwanted, code = CASES[case]
    got = cli(*make_args(tmp_path, monkeypatch))
    out, err = capsys.readouterr()
    text = err if code else out
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert got == code, err
    assert 1 <= len(lines) <= 2 and "Traceback" not in err, text
    for word in wanted:
        assert word in text, (word, text)
    for word in unwanted:
        assert word not in text, (word, text)


def test_a_read_only_home_adds_no_lines_to_a_message(tmp_path):
    """matplotlib cannot make its folders under HOME (here: files stand where they would go, which stops root too)."""
    home = tmp_path / "home"
    home.mkdir()
    for name in (".config", ".cache"):
        (home / name).write_text("not a folder")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
    }
    env.update(HOME=str(home), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bdlib",
            "edit",
            "--image",
            "missing.png",
            "--mask",
            "m.png",
            "--prompt",
            "a red circle",
            "--out",
            str(tmp_path / "o.png"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: image file missing.png does not exist: check the path"]
    assert json.dumps(done.stdout) == '""'
