"""Animated pictures of a diffusion chain: ``x_t``, ``x̂_0`` and the blend over the steps of an edit, or the
reverse chain of a sampler, as one GIF (or WebP) that a notebook shows inline and a built page shows as an image.

A chain is a list of per-step records, the :class:`~bdlib.core.algorithms.EditStep` s that
``bdlib.edit(..., callback=records.append)`` passes and the :class:`~bdlib.core.sampling.SampleStep` s that
:func:`bdlib.core.sampling.sample_progressive` yields: each holds batch tensors (B, 3, H, W) in [-1, 1] such as
``x_t``, ``pred_x0``, ``fg``, ``bg``, ``blend`` and ``x_prev``, the step's ``t`` (respaced index) and ``timestep``
(the original t). A frame shows one step: one column per key, one row per sample, every
image enlarged by an integer factor with nearest-neighbour (a 32 px toy image becomes 160 px, never blurred),
labelled once per column, with the step's ``t`` above.

    records = []
    result = edit(world, image, mask, prompt, callback=records.append)
    animate_chain(records)                                   # x_t, x̂_0 and the blend, shown inline
    animate_chain(records, path="figures/edit_chain.gif")    # and saved

Frames are drawn with matplotlib's Agg canvas (text only; the images are placed pixel for pixel with
``Figure.figimage``, so nothing is resampled) and encoded by imageio (Pillow's GIF and WebP writers).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bdlib.course.viz import to_numpy_image
from bdlib.runtime.files import write_file

LABELS = {
    "x_t": "$x_t$",
    "pred_x0": r"$\hat{x}_0$",
    "fg": "foreground",
    "bg": "noised input",
    "blend": "blend $x_{t-1}$",
    "x_prev": "$x_{t-1}$",
    "mean": r"$\mu(x_t)$",
}
EDIT_KEYS = ("x_t", "pred_x0", "x_prev")  # what an edit's animation shows by default (x_prev: the blend)
FORMATS = {"gif": "image/gif", "webp": "image/webp"}
GAP, HEADER, DPI = 8, 44, 100  # pixels between images, pixels of text above them, dots per inch of the canvas


@dataclass
class Animation:
    """An encoded animation: ``data`` (the file's bytes) in ``format`` ("gif" or "webp"), ``frames`` frames of
    ``size`` = (width, height) pixels; ``path`` where it was saved, if it was. Jupyter shows it inline."""

    data: bytes
    format: str
    frames: int
    size: tuple[int, int]
    path: Path | None = field(default=None)

    @property
    def mime_type(self) -> str:
        return FORMATS[self.format]

    def save(self, path: str | Path) -> Path:
        """Write the file atomically (creating its folder; :func:`bdlib.runtime.files.write_file`); remember where."""
        self.path = write_file(path, lambda tmp: tmp.write_bytes(self.data))
        return self.path

    def __repr__(self) -> str:
        where = f", saved to {self.path}" if self.path else ""
        width, height = self.size
        kib = len(self.data) / 1024
        return f"<{self.format.upper()} animation: {self.frames} frames, {width}x{height} px, {kib:.0f} KiB{where}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """The image itself (base64, as notebooks store images) and a one-line text for plain viewers."""
        return {self.mime_type: base64.b64encode(self.data).decode("ascii"), "text/plain": repr(self)}


def pick_steps(count: int, max_frames: int) -> list[int]:
    """At most ``max_frames`` indices into ``count`` steps, evenly spread, always with the first and the last."""
    if count < 1:
        raise ValueError("the chain has no records: pass the list that callback=records.append filled")
    if max_frames < 2 or count <= max_frames:
        return list(range(count)) if max_frames >= count else [count - 1]
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, max_frames)})


def enlarge(picture: np.ndarray, scale: int) -> np.ndarray:
    """An (H, W, 3) or (H, W) array in [0, 1] as (H·scale, W·scale, 3) uint8, each pixel a scale x scale block."""
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=2)
    block = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
    return (block * 255).round().clip(0, 255).astype(np.uint8)


def _tensor_at(record: Any, key: str, index: int) -> torch.Tensor:
    value = getattr(record, key, None)
    if not isinstance(value, torch.Tensor):
        present = sorted(name for name in dir(record) if isinstance(getattr(record, name, None), torch.Tensor))
        raise KeyError(f"the records have no picture {key!r}; they hold {present}")
    return value[index] if value.ndim == 4 else value


def chain_frames(
    records: Sequence[Any],
    keys: Sequence[str] = EDIT_KEYS,
    *,
    samples: Sequence[int] = (0,),
    labels: dict[str, str] | None = None,
    scale: int | None = None,
    max_frames: int = 30,
    title: str = "",
) -> list[np.ndarray]:
    """The frames of :func:`animate_chain` as (height, width, 3) uint8 arrays, one per picked step."""
    names = {**LABELS, **(labels or {})}
    steps = pick_steps(len(records), max_frames)
    size = int(_tensor_at(records[0], keys[0], samples[0]).shape[-1])
    scale = scale or max(1, -(-128 // size) + 1)  # at least 128 px per image; 32 px -> x5 = 160 px
    cell = size * scale
    width = GAP + len(keys) * (cell + GAP)
    height = HEADER + len(samples) * (cell + GAP)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    for c, key in enumerate(keys):  # column labels, drawn once
        centre = (GAP + c * (cell + GAP) + cell / 2) / width
        fig.text(centre, 1 - 32 / height, names.get(key, key), ha="center", va="center", fontsize=11)
    caption = fig.text(0.5, 1 - 12 / height, "", ha="center", va="center", fontsize=10)
    placed: list[list[Any]] = []
    for r, sample in enumerate(samples):
        row = []
        for c, key in enumerate(keys):
            block = enlarge(to_numpy_image(_tensor_at(records[0], key, sample)), scale)
            x0 = GAP + c * (cell + GAP)
            y0 = height - HEADER - (r + 1) * cell - r * GAP  # figimage counts pixels from the bottom
            row.append(fig.figimage(block, xo=x0, yo=y0, origin="upper", resize=False))
        placed.append(row)
    frames = []
    for i in steps:
        record = records[i]
        for r, sample in enumerate(samples):
            for c, key in enumerate(keys):
                placed[r][c].set_data(enlarge(to_numpy_image(_tensor_at(record, key, sample)), scale))
        when = f"t = {record.timestep}"
        caption.set_text(f"{title}  {when}  (step {i + 1} of {len(records)})".strip())
        canvas.draw()
        frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return frames


def encode(frames: Sequence[np.ndarray], fmt: str = "gif", fps: float = 8.0, hold_last: float = 1.5) -> bytes:
    """Frames (height, width, 3) uint8 as an endlessly looping GIF or WebP; the last frame stays ``hold_last`` s."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    durations = [1000.0 / fps] * len(frames)
    durations[-1] = max(durations[-1], 1000.0 * hold_last)
    options: dict[str, Any] = {"duration": durations, "loop": 0}
    if fmt == "webp":
        options["lossless"] = True
    buffer = io.BytesIO()
    iio.imwrite(buffer, np.stack(frames), extension=f".{fmt}", plugin="pillow", **options)
    return buffer.getvalue()


def animate_chain(
    records: Sequence[Any],
    keys: Sequence[str] = EDIT_KEYS,
    *,
    samples: int | Sequence[int] = 0,
    labels: dict[str, str] | None = None,
    scale: int | None = None,
    max_frames: int = 30,
    fps: float = 8.0,
    fmt: str = "gif",
    title: str = "",
    path: str | Path | None = None,
) -> Animation:
    """An animation of a chain's records: one frame per step (at most ``max_frames``, evenly picked, first and
    last always), one column per key (default ``x_t``, ``x̂_0`` and the blend of an edit), one row per sample.

    ``samples`` picks the batch rows to show (an index or a list); ``scale`` is the integer enlargement (default:
    the smallest giving ≥ 128 px, x5 for the toy world's 32 px); ``labels`` renames columns; ``path`` also saves
    the file. For a sampler's reverse chain pass ``keys=("x_t", "pred_x0")``.
    """
    rows = [samples] if isinstance(samples, int) else list(samples)
    frames = chain_frames(records, keys, samples=rows, labels=labels, scale=scale, max_frames=max_frames, title=title)
    height, width = frames[0].shape[:2]
    animation = Animation(encode(frames, fmt, fps), fmt, len(frames), (width, height))
    if path is not None:
        animation.save(path)
    return animation
