"""Check a widget round trip over the Jupyter protocol, as JupyterLab would drive it (no browser needed).

    python notebooks/widget_roundtrip.py [--notebook 04] [--timeout 600]

1. Start an ipykernel and run every code cell of a notebook in fast mode (``FAST = True`` after its
   ``parameters`` cell), as "Run All" does.
2. Find the panel's slider among the widget models the kernel opened (``comm_open`` on
   ``jupyter.widget``: what the frontend receives to draw the slider).
3. Send the kernel the message JupyterLab sends when a user drags the slider: a ``comm_msg`` with
   ``{"method": "update", "state": {"index": i}}`` for the slider's model.
4. Wait for the kernel's answer (widget state updates on iopub: the new figure in the Output widget),
   then ask the kernel for the slider's value and the figure's title, and check that both changed.

Prints one JSON line and exits 0 on success, 1 with the reason otherwise.
"""

from __future__ import annotations

import argparse
import ast
import json
import queue
import sys
import time
from pathlib import Path

import jupytext
from jupyter_client.manager import start_new_kernel

NOTEBOOKS = Path(__file__).resolve().parent
PANEL = "_bdlib_live_panel"  # the kernel variable this script binds to the notebook's last panel (04: λ, 05: k)
FIND_PANEL = (
    "import gc as _gc\n"
    "from bdlib.course.sweep_panel import SweepPanel as _SweepPanel\n"
    f"{PANEL} = [_o for _o in _gc.get_objects() if isinstance(_o, _SweepPanel)][-1]"
)


def code_cells(notebook: Path) -> list[str]:
    """The notebook's code cells, with ``FAST = True`` appended to the parameters cell."""
    cells = []
    for cell in jupytext.read(notebook).cells:
        if cell.cell_type != "code":
            continue
        source = cell.source
        if "parameters" in cell.metadata.get("tags", []):
            source += "\nFAST = True"
        cells.append(source)
    return cells


def evaluate(client, expression: str, timeout: float) -> object:
    """The value of ``expression`` in the kernel, sent back as JSON through ``user_expressions``."""
    reply = client.execute_interactive(
        "import json", timeout=timeout, user_expressions={"v": f"json.dumps({expression})"}, output_hook=lambda m: None
    )
    value = reply["content"].get("user_expressions", {}).get("v", {})
    if value.get("status") != "ok":
        raise RuntimeError(f"could not evaluate {expression!r} in the kernel: {value}")
    return json.loads(ast.literal_eval(value["data"]["text/plain"]))


def run(notebook: Path, timeout: float) -> dict:
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        opened: dict[str, dict] = {}
        for source in code_cells(notebook):
            reply = client.execute_interactive(
                source, timeout=timeout, output_hook=lambda msg: _collect_comms(msg, opened)
            )
            if reply["content"]["status"] != "ok":
                raise RuntimeError("\n".join(reply["content"].get("traceback", [])))
        sliders = {cid: m for cid, m in opened.items() if m["state"].get("_model_name") == "SelectionSliderModel"}
        if not sliders:
            raise RuntimeError("the kernel opened no SelectionSlider widget model: nothing for JupyterLab to draw")
        client.execute_interactive(FIND_PANEL, timeout=timeout, output_hook=lambda msg: None)  # however it was shown
        before = evaluate(client, f"[str({PANEL}.slider.value), {PANEL}.title, {PANEL}.slider.model_id]", timeout)
        comm_id = before[2]
        if comm_id not in sliders:
            raise RuntimeError(f"the panel's slider {comm_id} was never announced to the frontend (no comm_open)")
        state = sliders[comm_id]["state"]
        new_index = 0 if state.get("index", 0) != 0 else len(state["_options_labels"]) - 1
        # What JupyterLab sends when the user moves the slider to another position:
        message = client.session.msg(
            "comm_msg",
            {"comm_id": comm_id, "data": {"method": "update", "state": {"index": new_index}, "buffer_paths": []}},
        )
        client.shell_channel.send(message)
        updates = _drain_updates(client, deadline=time.time() + timeout)
        after = evaluate(client, f"[str({PANEL}.slider.value), {PANEL}.title, {PANEL}.slider.model_id]", timeout)
        if after[0] == before[0] or after[1] == before[1]:
            raise RuntimeError(f"the panel did not follow the slider: before {before[:2]}, after {after[:2]}")
        return {
            "notebook": notebook.name,
            "widget_models_opened": len(opened),
            "slider_before": before[0],
            "slider_after": after[0],
            "title_before": before[1],
            "title_after": after[1],
            "state_updates_from_kernel": updates,
            "ok": True,
        }
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _collect_comms(msg: dict, opened: dict[str, dict]) -> None:
    if msg["header"]["msg_type"] == "comm_open" and msg["content"].get("target_name") == "jupyter.widget":
        opened[msg["content"]["comm_id"]] = msg["content"]["data"]


def _drain_updates(client, deadline: float, quiet: float = 3.0) -> int:
    """Count the kernel's widget ``comm_msg`` updates until it has been quiet for ``quiet`` seconds."""
    count, last = 0, time.time()
    while time.time() < deadline and time.time() - last < quiet:
        try:
            msg = client.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            continue
        if msg["header"]["msg_type"] == "comm_msg":
            count, last = count + 1, time.time()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", default="04", help="number of the notebook with a live panel (04 or 05)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    matches = sorted(NOTEBOOKS.glob(f"{args.notebook}_*.py"))
    if not matches:
        print(f"no notebook {args.notebook}_*.py in {NOTEBOOKS}", file=sys.stderr)
        return 1
    try:
        result = run(matches[0], args.timeout)
    except RuntimeError as error:
        print(json.dumps({"notebook": matches[0].name, "ok": False, "error": str(error)[-2000:]}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
