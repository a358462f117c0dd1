"""Reading images and masks from files, PIL images, arrays or tensors, and writing results.

Images become (1, 3, H, W) float tensors in [-1, 1]; masks become (1, 1, H, W) tensors of exactly 0 and
1 (1 = edit), thresholded at half of their value range (half of 255 for 8-bit files), never at "any
non-zero pixel", so JPEG noise and anti-aliased edges do not leak into the mask.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


def _open(source: str | os.PathLike, what: str) -> Image.Image:
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist: check the path")
    try:
        with Image.open(path) as handle:
            handle.load()
            return handle.copy()
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{what} file {path} is not an image PIL can read (PNG, JPEG, ...): {error}") from None


def load_image(source: ImageLike) -> torch.Tensor:
    """An RGB image as a (1, 3, H, W) float tensor in [-1, 1].

    Files and PIL images are converted to RGB (alpha dropped). Arrays are (H, W, 3) uint8 in [0, 255] or
    float in [0, 1]; tensors are (3, H, W) or (1, 3, H, W) floats already in [-1, 1].
    """
    if isinstance(source, (str, os.PathLike)):
        source = _open(source, "image")
    if isinstance(source, Image.Image):
        source = np.asarray(source.convert("RGB"))
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] not in (3, 4):
            raise ValueError(f"an image array must be (H, W, 3) or (H, W, 4), got shape {source.shape}")
        scale = 255.0 if source.dtype == np.uint8 else 1.0
        source = torch.from_numpy(np.array(source[..., :3])).float().div(scale).permute(2, 0, 1) * 2 - 1
    if not isinstance(source, torch.Tensor):
        raise ValueError(f"cannot read an image from {type(source).__name__}: give a path, PIL image, array or tensor")
    image = source.float()
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"an image tensor must be (3, H, W) or (1, 3, H, W), got shape {tuple(source.shape)}")
    if image.min() < -1.001 or image.max() > 1.001:
        raise ValueError("image tensors must hold values in [-1, 1] (convert with x * 2 - 1 from [0, 1])")
    return image.clamp(-1, 1)


def load_mask(source: ImageLike, invert: bool = False, official: bool = False) -> torch.Tensor:
    """A binary mask (1, 1, H, W) of 0/1 floats, 1 = edit; thresholded at half of the value range.

    Files and PIL images are read as greyscale (or their alpha channel if they have one and it is not
    constant); uint8 arrays are thresholded at 127.5, float arrays and tensors at 0.5. ``official=True`` reads
    a mask as the official code does: the red channel (of the RGB picture), any value above 0.
    """
    if isinstance(source, (str, os.PathLike)):
        source = _open(source, "mask")
    if official:
        return _official_mask(source, invert)
    if isinstance(source, Image.Image):
        alpha = np.asarray(source.getchannel("A")) if "A" in source.getbands() else None
        source = alpha if alpha is not None and alpha.min() != alpha.max() else np.asarray(source.convert("L"))
    if isinstance(source, np.ndarray):
        array = source if source.ndim == 2 else source[..., 0]
        half = 127.5 if array.dtype == np.uint8 else 0.5
        mask = torch.from_numpy((array > half).astype(np.float32))
    elif isinstance(source, torch.Tensor):
        mask = (source.float() > 0.5).float()
        mask = mask.reshape(mask.shape[-2:]) if mask.numel() == mask.shape[-1] * mask.shape[-2] else None
        if mask is None:
            raise ValueError(f"a mask tensor must hold one channel, (H, W) to (1, 1, H, W); got {tuple(source.shape)}")
    else:
        raise ValueError(f"cannot read a mask from {type(source).__name__}: give a path, PIL image, array or tensor")
    mask = mask[None, None]
    return 1 - mask if invert else mask


def _official_mask(source: Image.Image | np.ndarray | torch.Tensor, invert: bool) -> torch.Tensor:
    """The official reading (image_editor.py:149-157): RGB picture, red channel, ``> 0``."""
    if isinstance(source, Image.Image):
        array = np.asarray(source.convert("RGB"))[..., 0]
    elif isinstance(source, np.ndarray):
        array = source if source.ndim == 2 else source[..., 0]
    elif isinstance(source, torch.Tensor):
        array = source.detach().float().cpu().reshape(-1, *source.shape[-2:])[0].numpy()
    else:
        raise ValueError(f"cannot read a mask from {type(source).__name__}: give a path, PIL image, array or tensor")
    mask = torch.from_numpy((np.asarray(array) > 0).astype(np.float32))[None, None]
    return 1 - mask if invert else mask


def save_image(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write a (3, H, W) or (1, 3, H, W) image in [-1, 1] as an 8-bit PNG (creating the folder)."""
    image = image.detach().float().cpu()
    image = image[0] if image.ndim == 4 else image
    array = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path
