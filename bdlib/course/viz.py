"""Plotting helpers: tensors in [-1, 1] to pictures, grids of labelled panels, small saved figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.backend_bases import FigureCanvasBase

from bdlib.runtime.files import Writer, write_file


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """A (3, H, W) or (1, 3, H, W) tensor in [-1, 1] (or a (1, H, W) mask in [0, 1]) as an (H, W, C) array in [0, 1]."""
    image = image.detach().float().cpu()
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {image.shape[0]}: index it first")
        image = image[0]
    if image.shape[0] == 1:  # a mask: already in [0, 1]
        return image[0].clamp(0, 1).numpy()
    return ((image.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


MIN_PIXELS = 128  # every image is drawn at least this many screen pixels wide (toy images are 32 px: 4x or more)
DISPLAY_OVERSAMPLING = 4  # a panel gets at most this many image pixels per screen pixel: larger images are shrunk
DPI = 100  # the notebooks' and the saved figures' resolution
MAX_WIDTH_INCHES = 9.6  # a JupyterLab cell: wider rows wrap


def _wrap(rows, titles, row_labels, columns: int):
    """Cut rows longer than ``columns`` into several rows (their titles with them; the label on the first piece)."""
    out_rows, out_titles, out_labels = [], [], []
    for r, row in enumerate(rows):
        row_titles = list(titles[r]) if titles is not None and r < len(titles) else []
        for first in range(0, max(len(row), 1), columns):
            out_rows.append(list(row[first : first + columns]))
            out_titles.append(row_titles[first : first + columns])
            out_labels.append(row_labels[r] if row_labels is not None and first == 0 else "")
    return out_rows, out_titles, out_labels


def _for_display(image: torch.Tensor, largest: int) -> torch.Tensor:
    """``image`` shrunk (area average) so that its longer side is at most ``largest`` pixels: a panel shows no more,
    and a photo of many megapixels would otherwise cost gigabytes in the figure."""
    height, width = image.shape[-2:]
    if max(height, width) <= largest:
        return image
    scale = largest / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    batch = image if image.ndim == 4 else image[None]
    shrunk = torch.nn.functional.interpolate(batch.detach().float(), size=size, mode="area")
    return shrunk if image.ndim == 4 else shrunk[0]


def show_grid(
    rows: Sequence[Sequence[torch.Tensor]],
    titles: Sequence[Sequence[str]] | None = None,
    row_labels: Sequence[str] | None = None,
    panel_inches: float = 1.6,
    suptitle: str | None = None,
    max_width_inches: float = MAX_WIDTH_INCHES,
):
    """A figure with one panel per image, nearest-neighbour (no smoothing: toy images are 32 px).

    Each image is ``panel_inches`` wide at :data:`DPI` (at least :data:`MIN_PIXELS` screen pixels: a smaller panel is
    refused); a row wider than ``max_width_inches`` wraps onto the next lines.
    """
    if panel_inches * DPI < MIN_PIXELS:
        raise ValueError(
            f"panel_inches={panel_inches} draws an image {panel_inches * DPI:.0f} px wide: use at least "
            f"{MIN_PIXELS / DPI:g} in ({MIN_PIXELS} px), so that a 32-px image stays readable"
        )
    columns = max(1, int(max_width_inches / panel_inches + 1e-9))  # 9.6 // 1.6 is 5.0 in floating point
    rows, titles, row_labels = _wrap(rows, titles, row_labels, columns)
    n_rows, n_cols = len(rows), max(len(row) for row in rows)
    has_titles = any(any(t) for t in titles)
    height = panel_inches + (0.3 if has_titles else 0.05)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(panel_inches * n_cols, height * n_rows + (0.5 if suptitle else 0)),
        squeeze=False,
        dpi=DPI,
    )
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            picture = to_numpy_image(_for_display(row[c], round(panel_inches * DPI * DISPLAY_OVERSAMPLING)))
            ax.imshow(picture, interpolation="nearest", cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1)
            if c < len(titles[r]) and titles[r][c]:
                ax.set_title(titles[r][c], fontsize=9)
        if row_labels[r]:
            axes[r][0].set_ylabel(row_labels[r])
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def table(rows: Sequence[dict], digits: int = 3):
    """``rows`` (dicts with the same keys) as a Markdown table for a notebook (``IPython.display.Markdown``)."""
    from IPython.display import Markdown

    if not rows:
        return Markdown("(no rows)")
    keys = list(rows[0])

    def cell(value) -> str:
        if not isinstance(value, float):
            return str(value).replace("|", "\\|")  # a pipe inside a cell would end the cell
        tiny_or_huge = abs(value) >= 1e4 or (value != 0 and abs(value) < 1e-3)
        return f"{value:.{digits}g}" if tiny_or_huge else f"{value:.{digits}f}"

    lines = ["| " + " | ".join(cell(key) for key in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row.get(key)) for key in keys) + " |" for row in rows]
    return Markdown("\n".join(lines))


def figure_writer(fig, dpi: int = 100) -> Writer:
    """A writer (:mod:`bdlib.runtime.files`) that saves ``fig`` at ``dpi`` in the format of the path's extension."""
    return lambda path: fig.savefig(path, dpi=dpi)


def check_figure_path(path: str | Path) -> Path:
    """Refuse a figure path whose extension matplotlib cannot write (before any work is done)."""
    path = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in formats:
        raise ValueError(f"cannot write a figure as {path.name}: use one of .{', .'.join(sorted(formats))}")
    return path


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Save ``fig`` atomically (creating the folder; an existing file is replaced only by a complete one) and
    close it."""
    try:
        return write_file(path, figure_writer(fig, dpi))
    finally:
        plt.close(fig)
