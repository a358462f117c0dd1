"""A slider panel that carries its precomputed pictures into the page, so it works without a kernel.

:class:`SweepPanel` is an ``ipywidgets.VBox``: a slider over a fixed grid of values, controls (guidance scale,
views, seed, prompt), a status line and a ``Stack`` of ``Image`` widgets, one PNG per grid value. The slider's
``index`` is linked to the stack's ``selected_index`` *in the browser* (``ipywidgets.jslink``), so moving the
slider swaps the picture with no round trip to Python. The images are part of the widget state that Jupyter
saves into an executed notebook (``metadata.widgets``), so the panel keeps working where no kernel runs: a
built site (ipywidgets' HTML manager), JupyterLab or VS Code with the kernel stopped, nbviewer-style renderers.

With a live kernel, changing a control computes the pictures of the new setting: the status says
"computing …" first (each widget update leaves the kernel at once, before the work starts), then the current
slider value is drawn (one edit), then the rest of the grid (one batch through the panel's ``draw_many``). An
error (a word outside the toy vocabulary, a bad value) is shown in the status line, in words, and the panel
keeps the pictures of the last setting that worked.

The panel is generic: ``draw(value, options)`` returns one :class:`Frame` and ``draw_many(values, options)``
returns the frames of several values; :mod:`bdlib.course.widgets` builds the λ and k panels on it.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ipywidgets
import matplotlib.pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


@dataclass(frozen=True)
class Frame:
    """One grid value drawn: its PNG, the figure's title and the numbers the figure shows."""

    png: bytes
    title: str = ""
    values: dict[str, Any] = field(default_factory=dict)


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes; a pyplot figure is closed afterwards."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    plt.close(fig)
    return buffer.getvalue()


def placeholder_png(width: int, height: int, text: str) -> bytes:
    """A light grey ``width`` x ``height`` PNG with ``text`` in the middle (a picture still being computed)."""
    fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="#eeeeee")
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="#555555")
    return figure_png(fig)


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) read from a PNG's header."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def value_label(value: Any) -> str:
    """How a grid value reads on the slider: ``2300.0`` -> "2300", ``0.25`` -> "0.25"."""
    return f"{value:g}" if isinstance(value, float) else str(value)


class SweepPanel(ipywidgets.VBox):
    """Slider + controls + status + a stack of one picture per grid value (see the module docstring).

    Attributes for code and tests: ``slider``, ``controls`` (name -> widget), ``status``, ``stack``, ``images``
    (one ``Image`` per grid value), ``frames`` (one :class:`Frame` or None per value), ``title`` and ``values``
    (of the slider's current value) and ``timings`` (seconds of the last update: ``current``, ``grid``).
    ``panel.slider.value = v`` selects ``v`` as a user would; ``panel.controls["seed"].value = 1`` recomputes.
    """

    def __init__(
        self,
        grid: Sequence[Any],
        value: Any,
        label: str,
        controls: dict[str, ipywidgets.Widget],
        draw: Callable[[Any, dict[str, Any]], Frame],
        draw_many: Callable[[Sequence[Any], dict[str, Any]], list[Frame]],
        *,
        precompute: bool = True,
    ) -> None:
        w = ipywidgets
        self.grid, self.label, self.controls = list(grid), label, controls
        self._draw, self._draw_many = draw, draw_many
        self.slider = w.SelectionSlider(
            options=[(value_label(v), v) for v in self.grid],
            value=value,
            description=label,
            continuous_update=True,  # the browser swaps pictures while the handle moves
            layout=w.Layout(width="420px"),
        )
        self.status = w.HTML(layout=w.Layout(min_height="1.6em"))
        self.frames: list[Frame | None] = [None] * len(self.grid)
        self.images = [w.Image(format="png") for _ in self.grid]
        self.stack = w.Stack(self.images, selected_index=self.slider.index)
        self.link = w.jslink((self.slider, "index"), (self.stack, "selected_index"))  # the browser swaps pictures
        self.button = w.Button(description="compute all values", tooltip="draw every slider value for these controls")
        self.timings: dict[str, float] = {}
        self._options = self.options()
        self._placeholder: bytes | None = None
        row = w.HBox(list(controls.values()), layout=w.Layout(flex_flow="row wrap"))
        super().__init__([w.HBox([self.slider, self.button]), row, self.status, self.stack])
        self.add_class("bdlib-panel")
        start = time.perf_counter()
        indices = range(len(self.grid)) if precompute else [self.slider.index]
        self._fill(list(indices), self._options)
        self._say(self._ready_text(time.perf_counter() - start))
        self.slider.observe(self._on_slider, names="index")
        for control in controls.values():
            control.observe(self._on_control, names="value")
        self.button.on_click(lambda _: self.precompute())

    # ------------------------------------------------------------------------------------------ reading

    def options(self) -> dict[str, Any]:
        """The current values of the controls, as keyword arguments of the draw functions."""
        return {name: control.value for name, control in self.controls.items()}

    @property
    def title(self) -> str:
        frame = self.frames[self.slider.index]
        return frame.title if frame is not None else ""

    @property
    def values(self) -> dict[str, Any]:
        frame = self.frames[self.slider.index]
        return dict(frame.values) if frame is not None else {}

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget view, plus the current picture as PNG for viewers that do not render widgets."""
        data = super()._repr_mimebundle_(**kwargs) or {}
        frame = self.frames[self.slider.index]
        if frame is not None:
            data["image/png"] = base64.b64encode(frame.png).decode("ascii")
        done = sum(f is not None for f in self.frames)
        current = f"{self.label} = {value_label(self.slider.value)}"
        data["text/plain"] = f"{self.label} panel: {done} of {len(self.grid)} pictures ({current})"
        return data

    # ------------------------------------------------------------------------------------------ updates

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#b00020" if error else "#444444"
        self.status.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def _ready_text(self, seconds: float) -> str:
        """What the status says once the pictures are there (true whichever value the slider shows later)."""
        done = sum(f is not None for f in self.frames)
        where = f"all {done} values" if done == len(self.grid) else f"{done} of {len(self.grid)} values"
        return f"{where} of {self.label} ready ({seconds:.1f} s): move the slider or press ← →"

    def _set(self, index: int, frame: Frame) -> None:
        self.frames[index] = frame
        self.images[index].value = frame.png

    def _blank(self, indices: Sequence[int]) -> None:
        """Grey "computing …" pictures for values whose frames belong to an older setting."""
        if self._placeholder is None:
            known = next((f for f in self.frames if f is not None), None)
            width, height = png_size(known.png) if known is not None else (640, 200)
            self._placeholder = placeholder_png(width, height, "computing …")
        for i in indices:
            self.frames[i] = None
            self.images[i].value = self._placeholder

    def _fill(self, indices: list[int], options: dict[str, Any], blank: bool = False) -> None:
        """Frames for ``indices``: the slider's value first (one draw) when it is among them, the rest in one batch
        (``blank``: show the rest as "computing …" while the batch runs: their old pictures are of another setting)."""
        current = self.slider.index
        start = time.perf_counter()
        if current in indices:
            self._set(current, self._draw(self.grid[current], options))
            self.timings["current"] = time.perf_counter() - start
            indices = [i for i in indices if i != current]
        if indices:
            if blank:
                self._blank(indices)
            ready = f"{self.label} = {value_label(self.grid[current])} ready"
            self._say(f"{ready}; computing the other {len(indices)} values of {self.label} in one batch …")
            for i, frame in zip(indices, self._draw_many([self.grid[i] for i in indices], options), strict=True):
                self._set(i, frame)
        self.timings["grid"] = time.perf_counter() - start
        self.button.layout.display = "none" if all(f is not None for f in self.frames) else None

    def _on_slider(self, change: dict[str, Any]) -> None:
        """The browser already shows the picture (the link runs there: the kernel does not set the stack, which
        would race a fast drag); the kernel draws a value only when it is missing."""
        index = change["new"]
        if self.frames[index] is None:
            self._say(f"computing {self.label} = {value_label(self.grid[index])} …")
            try:
                self._fill([index], self._options)
            except Exception as error:  # shown in the panel, in words
                self._say(f"could not draw {self.label} = {value_label(self.grid[index])}: {error}", error=True)
                return
        self._say(self._ready_text(self.timings.get("grid", 0.0)))

    def _on_control(self, change: dict[str, Any]) -> None:
        """A new setting: say so, keep the current picture until its replacement is ready, recompute the grid."""
        options = self.options()
        name = next((n for n, c in self.controls.items() if c is change["owner"]), "control")
        self._say(f"computing {self.label} = {value_label(self.slider.value)} for {name} = {change['new']!r} …")
        if isinstance(change["owner"], ipywidgets.Text):
            change["owner"].layout.width = text_width(str(change["new"]))
        previous = list(self.frames)
        try:
            self._fill(list(range(len(self.grid))), options, blank=True)
        except Exception as error:  # e.g. a word outside the toy vocabulary: say it, keep the last good pictures
            for i, frame in enumerate(previous):
                if frame is not None:
                    self._set(i, frame)
            self._say(f"could not compute {name} = {change['new']!r}. {error}", error=True)
            return
        self._options = options
        self._say(self._ready_text(self.timings["grid"]))

    def precompute(self) -> None:
        """Draw every grid value that is missing for the current controls (one batch)."""
        missing = [i for i, f in enumerate(self.frames) if f is None]
        if missing:
            self._say(f"computing {len(missing)} values of {self.label} in one batch …")
            self._fill(missing, self._options)
        self._say(self._ready_text(self.timings.get("grid", 0.0)))


def text_width(text: str) -> str:
    """A CSS width that shows ``text`` in a ``Text`` widget with its description (at least 24 characters)."""
    return f"calc({max(len(text) + 3, 24)}ch + 6em)"
