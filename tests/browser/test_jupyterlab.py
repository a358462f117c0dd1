"""Notebook 05 in a live JupyterLab on 127.0.0.1, driven with the mouse and the keyboard: Run All Cells from the
menu, drag the k slider (the picture changes), change the seed (the panel says "computing …" while the old
picture is still up, then shows a new one), type a word the toy world does not know (the panel says so), then shut
the kernel down from the menu: the slider still swaps the pictures."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from panel_checks import PICTURE_HASH_JS, check_panel_follows_slider, picture, wait_for_new_picture

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO_ROOT / "notebooks" / "05_blended_diffusion.py"
RUN_ALL_TIMEOUT_S = float(os.environ.get("BDLIB_RUN_ALL_TIMEOUT", 600))  # notebook 05, fast mode: about a minute

# Records every text the panel's status line shows, with (a hash of) the picture on screen at that moment.
WATCH_STATUS_JS = """(panel) => {
  const hash = PICTURE_HASH;
  const status = panel.querySelector('.widget-html');
  window.__bdlibStatus = [];
  const note = () => window.__bdlibStatus.push({text: status.innerText, picture: hash(panel), t: performance.now()});
  new MutationObserver(note).observe(status, {subtree: true, childList: true, characterData: true});
  note();
}""".replace("PICTURE_HASH", PICTURE_HASH_JS)
SAW_COMPUTING_THEN_READY_JS = """() => {
  const seen = window.__bdlibStatus;
  const computing = seen.findIndex(s => s.text.includes('computing'));
  return computing >= 0 && seen.slice(computing).some(s => /all \\d+ values .* ready/.test(s.text));
}"""


LAB_SETTINGS = {
    # every cell stays in the DOM (no windowing), and the notebook's kernel starts without a "Select Kernel" dialog
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 whose root holds notebook 05 (fast mode) on this interpreter's kernel."""
    import jupytext

    sys.path.insert(0, str(REPO_ROOT / "notebooks"))
    from run_notebooks import KERNEL_NAME, install_kernel_spec

    root = tmp_path_factory.mktemp("lab")
    install_kernel_spec(root / "jupyter")  # puts root/jupyter first on JUPYTER_PATH, inherited by the server
    notebook = jupytext.read(NOTEBOOK)
    notebook.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "bdlib", "language": "python"}
    jupytext.write(notebook, root / "05.ipynb", fmt="ipynb")
    port, token = free_port(), secrets.token_hex(16)
    for plugin, values in LAB_SETTINGS.items():
        path = root / "settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
    }
    command = [
        *(sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.port_retries=0"),
        *("--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", f"--IdentityProvider.token={token}"),
        *(f"--ServerApp.root_dir={root}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"),
        *("--LabApp.extension_manager=readonly", "--allow-root"),  # nothing to fetch from PyPI; CI runs as root
    ]
    log = open(root / "lab.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as reply:
                json.load(reply)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start: {(root / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield {"url": f"{base}/lab/tree/05.ipynb?token={token}", "log": root / "lab.log"}
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def run_all_cells(page) -> float:
    """Run > Run All Cells with the mouse, then wait until no cell is queued or running; returns the seconds."""
    page.locator(".jp-Notebook").wait_for(timeout=60000)
    page.wait_for_function(  # the status bar reads "bdlib (...) | Idle": the notebook's kernel is up
        "() => /bdlib.*\\|\\s*Idle/.test(document.querySelector('#jp-main-statusbar')?.innerText || '')",
        timeout=120000,
        polling=250,
    )
    start = time.monotonic()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.wait_for_function(  # every shown prompt has its number (a folded cell shows none), and the kernel is idle
        """() => {
          const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))
            .map(p => p.textContent.trim()).filter(t => t.length > 0);
          const idle = /\\|\\s*Idle/.test(document.querySelector('#jp-main-statusbar')?.innerText || '');
          return idle && prompts.length > 0 && prompts.every(t => /\\[\\d+\\]/.test(t));
        }""",
        timeout=RUN_ALL_TIMEOUT_S * 1000,
        polling=500,
    )
    return time.monotonic() - start


def test_notebook_05_panel_in_a_live_jupyterlab(page, lab, tmp_path):
    try:
        check_notebook_05(page, lab)
    except Exception:
        page.screenshot(path=tmp_path / "lab.png", full_page=True)
        print(f"screenshot: {tmp_path / 'lab.png'}; server log: {lab['log']}")
        raise


def check_notebook_05(page, lab) -> None:
    page.goto(lab["url"])
    seconds = run_all_cells(page)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Error")
    assert errors.count() == 0, errors.first.inner_text()
    panel = page.locator(".bdlib-panel").first
    panel.wait_for(timeout=30000)
    print(f"notebook 05 ran all cells in {seconds:.1f} s")

    # dragging k (and the arrow keys) swaps the picture in the browser
    for move in check_panel_follows_slider(page, panel):
        print(move)

    # a new seed: "computing …" while the old picture is still there, then the new picture, then "ready"
    before = picture(panel)
    panel.evaluate(WATCH_STATUS_JS)
    seed = panel.locator(".widget-dropdown", has_text="seed").locator("select")
    seed.click()  # opens the list (JupyterLab keeps the arrow keys for moving between cells)
    seed.select_option("1")  # picks "1" in it: the browser's input and change events, as a person's choice makes
    page.wait_for_function(SAW_COMPUTING_THEN_READY_JS, timeout=120000, polling=100)
    after = wait_for_new_picture(panel, before)
    statuses = page.evaluate("() => window.__bdlibStatus")
    computing = [s for s in statuses if "computing" in s["text"]]
    assert computing, f"the panel never said it was computing: {[s['text'] for s in statuses]}"
    assert computing[0]["picture"] == before, "'computing …' came only after the picture had already changed"
    ready = [s for s in statuses if re.search(r"all \d+ values .* ready", s["text"]) and s["t"] > computing[0]["t"]]
    assert ready and after != before, f"no new picture after the seed change: {[s['text'] for s in statuses]}"
    redrawn = next(s for s in statuses if s["picture"] != before)
    start = statuses[0]["t"]
    said, current, done = (x["t"] - start for x in (computing[0], redrawn, ready[-1]))
    print(
        f"seed change: 'computing' after {said:.0f} ms, the current value redrawn after {current:.0f} ms, "
        f"the whole grid after {done:.0f} ms"
    )

    # a word the toy world does not know: the panel says so, in words
    prompt = panel.locator("input[type=text]").first
    prompt.click()
    prompt.press("Control+a")
    prompt.type("a blue squa")
    prompt.press("Enter")
    status = panel.locator(".widget-html").first
    status.filter(has_text="unknown word").wait_for(timeout=60000)
    assert "squa" in status.inner_text()
    assert prompt.evaluate("e => e.scrollWidth <= e.clientWidth"), "the prompt box cuts its text off"

    # the kernel stopped (Kernel > Shut Down Kernel): the slider still swaps the pictures, in the browser alone
    page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Shut Down Kernel").first.click()
    no_kernel = "() => /No Kernel/.test(document.querySelector('#jp-main-statusbar')?.innerText || '')"
    page.wait_for_function(no_kernel, timeout=60000)
    for move in check_panel_follows_slider(page, panel):
        print("kernel stopped:", move)
