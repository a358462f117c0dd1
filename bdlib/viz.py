"""Plotting helpers: tensors in [-1, 1] to pictures, grids of labelled panels, small saved figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.backend_bases import FigureCanvasBase

from bdlib.files import Writer, write_file


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


def show_grid(
    rows: Sequence[Sequence[torch.Tensor]],
    titles: Sequence[Sequence[str]] | None = None,
    row_labels: Sequence[str] | None = None,
    panel_inches: float = 1.1,
    suptitle: str | None = None,
):
    """A figure with one panel per image (nearest-neighbour, no smoothing: toy images are 32 px)."""
    n_rows, n_cols = len(rows), max(len(row) for row in rows)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(panel_inches * n_cols, panel_inches * n_rows + 0.3), squeeze=False
    )
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            picture = to_numpy_image(row[c])
            ax.imshow(picture, interpolation="nearest", cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1)
            if titles is not None and c < len(titles[r]):
                ax.set_title(titles[r][c], fontsize=7)
        if row_labels is not None:
            axes[r][0].set_ylabel(row_labels[r], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=8)
    fig.tight_layout()
    return fig


def figure_writer(fig, dpi: int = 100) -> Writer:
    """A writer (:mod:`bdlib.files`) that saves ``fig`` at ``dpi`` in the format of the path's extension."""
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
