"""The memory an edit needs, checked before it starts, and out-of-memory errors turned into advice.

An edit holds the input as read (image, mask and their copies), one batch of samples in flight (its working
memory grows with the batch: activations of the UNet and of CLIP's views kept for the backward pass) and every
finished result on the CPU (at the world's size and at the input's). :func:`check_edit_memory` compares an
estimate of all three with the free memory and refuses, with the numbers and a batch size that fits, what cannot
fit. A picture file is checked before it is decoded (:func:`check_read_memory`), from the size in its header.
The working memory is checked on the CPU only, where running out gets the process killed without a word (the
per-sample estimates are CPU measurements,
``World.sample_bytes_per_pixel``); on a GPU, PyTorch raises ``OutOfMemoryError``, which the command line
reports with the same advice (:func:`is_out_of_memory`).
"""

from __future__ import annotations

import torch

GIB = 2**30
_RESULT_COPIES = 3  # results at the world's size, at the input's size, and the ranked copy
#: Bytes per pixel of the input while it is read and held (the image and the mask decoded, as floats and as tensors):
#: measured 45 (peak RSS of reading a 6000x5000 PNG and its mask; an edit of it with 1 sample peaked 64 bytes per
#: pixel above the idle process: the input plus the result's 36).
INPUT_BYTES_PER_PIXEL = 48


def available_memory() -> int:
    """Bytes free for tensors on the CPU: free RAM plus free swap."""
    import psutil

    return int(psutil.virtual_memory().available + psutil.swap_memory().free)


def result_bytes(samples: int, input_hw: tuple[int, int], world_size: int) -> int:
    """Bytes that ``samples`` finished float32 RGB results take, at the input's size and at the world's."""
    height, width = input_hw
    return samples * 3 * 4 * (height * width + world_size * world_size) * _RESULT_COPIES


def input_bytes(input_hw: tuple[int, int]) -> int:
    """Bytes an input of ``input_hw`` pixels (height, width) takes while it is read and held."""
    return INPUT_BYTES_PER_PIXEL * input_hw[0] * input_hw[1]


def check_read_memory(input_hw: tuple[int, int], what: str) -> None:
    """Raise a ValueError if reading a picture of ``input_hw`` pixels cannot fit in the free memory (``what`` names
    the picture in the message), before any of it is decoded."""
    need, free = input_bytes(input_hw), available_memory()
    if need > free:
        raise ValueError(
            f"{what} is {input_hw[1]}x{input_hw[0]} pixels: it needs about {need / GIB:.1f} GiB of memory to read, "
            f"and {free / GIB:.1f} GiB are free: scale it down (the toy world edits at 32x32, the paper's at 256x256)"
        )


def check_edit_memory(
    sample_bytes: int, samples: int, batch: int, input_hw: tuple[int, int], world_size: int, device, views: int = 8
) -> None:
    """Raise a ValueError if the input and ``samples`` results (on the CPU) plus, on a CPU ``device``, a batch of
    ``batch`` samples in flight (``sample_bytes`` each, with ``views`` CLIP views; 0: unknown) cannot fit in the free
    memory."""
    free = available_memory()
    results = input_bytes(input_hw) + result_bytes(samples, input_hw, world_size)
    if results > free:
        raise ValueError(
            f"{samples} samples at {input_hw[1]}x{input_hw[0]} need about {results / GIB:.1f} GiB of memory for "
            f"the input and the results alone, and {free / GIB:.1f} GiB are free: ask for fewer samples, or scale "
            "the input down"
        )
    need = results + batch * sample_bytes
    if need <= free or torch.device(device).type != "cpu":
        return
    fits = (free - results) // sample_bytes if sample_bytes else batch
    if fits < 1:
        fix = "close other programs, or use a device with more memory"
        if views > 8:  # the estimate grows with the views above 8 (bdlib.edit.check_memory)
            fix = f"use fewer CLIP views (--views, or views=; now {views}, the default is 8)"
        raise ValueError(
            f"one sample needs about {sample_bytes / GIB:.1f} GiB of memory on {device} and {free / GIB:.1f} GiB are "
            f"free: {fix}"
        )
    raise ValueError(
        f"{batch} samples in one batch need about {need / GIB:.1f} GiB of memory on {device} and "
        f"{free / GIB:.1f} GiB are free: draw them in batches of {fits} or fewer (batch_size={fits}, or "
        f"--batch-size {fits} on the command line; the samples do not depend on the batch size)"
    )


def is_out_of_memory(error: BaseException) -> bool:
    """True for PyTorch's out-of-memory errors (CUDA, MPS, or the CPU allocator failing)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
