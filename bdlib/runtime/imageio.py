"""Reading images and masks from files, PIL images, arrays or tensors, and writing results.

Images become (1, 3, H, W) float tensors in [-1, 1]; masks become (1, 1, H, W) tensors of exactly 0 and
1 (1 = edit), thresholded at half of their value range (half of 255 for 8-bit files, of 65535 for 16-bit
ones), never at "any non-zero pixel", so JPEG noise and anti-aliased edges do not leak into the mask.

Every picture, from a file, a PIL image or an array, goes through one reading (:func:`picture_values`), so
the same picture gives the same image and the same mask whichever way it comes in. Pillow's 8-bit modes
(1-bit, grey, palette with or without transparency, RGB, RGBA, LA, CMYK, YCbCr, LAB, HSV, ...) are converted
by Pillow; 16-bit greyscale (``I;16``, and ``I`` holding 0..65535, as older Pillow reads 16-bit PNGs) is
divided by 65535 (Pillow's own conversion would clip it to white); 32-bit float pictures (``F``) are read
when they hold values in [0, 1]. Whatever cannot be read faithfully is refused with a message. Pixels must
be finite numbers, and a picture must have at least one pixel.

A picture is read as viewers show it: a photo's EXIF orientation tag (a phone held sideways) is applied to images
and masks alike, so a mask drawn on the picture as shown fits it. A file is refused before it is decoded when it
holds more pixels than Pillow's limit against decompression bombs (``PIL.Image.MAX_IMAGE_PIXELS``, 89.5 megapixels
unless changed): a small file can hold a picture that needs gigabytes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from bdlib.runtime.files import Writer, write_file
from bdlib.runtime.memory import check_read_memory

ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor

_GREY16 = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # "I": older Pillow's mode for 16-bit PNGs
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as Pillow's convert("L")
_FIX = "save it as an 8-bit or 16-bit PNG"


def _megapixels(pixels: float) -> str:
    return f"{pixels / 1e6:.0f} megapixels"


def _too_large(path: Path, what: str, size: str) -> ValueError:
    limit = Image.MAX_IMAGE_PIXELS
    return ValueError(
        f"the {what} file {path} is {size}, and bdlib reads at most {_megapixels(limit)} (Pillow's limit against "
        "decompression bombs, PIL.Image.MAX_IMAGE_PIXELS): scale it down (the toy world edits at 32x32 pixels, the "
        "paper's at 256x256)"
    )


def _open(source: str | os.PathLike, what: str) -> Image.Image:
    """The picture in a file, decoded, with its EXIF orientation applied; refused before decoding when Pillow's
    limit says it is too large (a small file can hold a huge picture)."""
    path = Path(source)
    if path.is_dir():
        raise ValueError(f"{what} file {path} is a folder: give the path of a picture (PNG, JPEG, ...)")
    if not path.exists():
        raise FileNotFoundError(f"{what} file {path} does not exist: check the path")
    if not path.is_file():
        raise ValueError(
            f"{what} file {path} is not a regular file (a device, a pipe or a socket): give the path of a "
            "picture file (PNG, JPEG, ...)"
        )
    try:
        with warnings.catch_warnings(record=True):  # over MAX_IMAGE_PIXELS Pillow only warns: checked below
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            handle = Image.open(path)
        with handle:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and handle.width * handle.height > limit:
                size = f"{handle.width}x{handle.height} pixels ({_megapixels(handle.width * handle.height)})"
                raise _too_large(path, what, size)
            check_read_memory((handle.height, handle.width), f"the {what} file {path}")
            if handle.format in ("GIF", "PNG", "WEBP") and getattr(handle, "is_animated", False):
                raise ValueError(
                    f"the {what} file {path} is animated ({handle.n_frames} frames), and bdlib edits one picture: save "
                    "the frame you want as a PNG and give that"
                )
            handle.load()
            return _shown(handle)
    except Image.DecompressionBombError:  # over twice MAX_IMAGE_PIXELS: Pillow refuses to open it
        raise _too_large(path, what, f"over {_megapixels(2 * Image.MAX_IMAGE_PIXELS)}") from None
    except PermissionError as error:
        raise ValueError(
            f"{what} file {path} cannot be read ({error.strerror or 'permission denied'}): check its permissions "
            f"(ls -l {path})"
        ) from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{what} file {path} is not an image PIL can read (PNG, JPEG, ...): {error}") from None


def exif_orientation(path: str | os.PathLike) -> int:
    """The EXIF orientation tag of a picture file (1: stored as shown; 2-8: turned or mirrored), without decoding it;
    1 for a file that has none or cannot be read."""
    try:
        with warnings.catch_warnings(), Image.open(path) as handle:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return int(handle.getexif().get(ExifTags.Base.Orientation, 1))
    except (OSError, ValueError, TypeError, Image.DecompressionBombError):
        return 1


def _shown(picture: Image.Image) -> Image.Image:
    """``picture`` as a viewer shows it: turned or mirrored by its EXIF orientation tag (a copy either way)."""
    if picture.getexif().get(ExifTags.Base.Orientation, 1) == 1:
        return picture.copy()
    return ImageOps.exif_transpose(picture)


def _check_size(height: int, width: int, what: str) -> None:
    if height == 0 or width == 0:
        raise ValueError(f"the {what} is {width}x{height} pixels (width x height): give a picture with pixels")


def _picture_values(picture: Image.Image, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A PIL image as float32 arrays in [0, 1]: colour (H, W, 3) and alpha (H, W), or None without one."""
    mode = picture.mode
    _check_size(picture.height, picture.width, what)
    if mode in _GREY16:
        grey = np.asarray(picture).astype(np.float32)
        if grey.min() < 0 or grey.max() > 65535:
            raise ValueError(f"the {what} is a 32-bit integer picture with values outside 0..65535: {_FIX}")
        return np.repeat(grey[..., None] / np.float32(65535), 3, axis=2), None
    if mode == "F":
        grey = np.asarray(picture, dtype=np.float32)
        if not np.isfinite(grey).all() or grey.min() < 0 or grey.max() > 1:
            raise ValueError(f"the {what} is a floating-point picture with values outside [0, 1]: {_FIX}")
        return np.repeat(grey[..., None], 3, axis=2), None
    has_alpha = mode in _ALPHA_MODES or "transparency" in picture.info
    try:
        converted = picture.convert("RGBA" if has_alpha else "RGB")
    except (ValueError, OSError) as error:
        raise ValueError(
            f"the {what} is in mode {mode}, which Pillow cannot convert to RGB ({error}): {_FIX}"
        ) from None
    array = np.asarray(converted).astype(np.float32) / np.float32(255)
    return array[..., :3], (array[..., 3] if has_alpha else None)


def _array_values(array: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """An array as float32 arrays in [0, 1]: colour (H, W, 3) and alpha (H, W), or None without one.

    (H, W) and (H, W, 1) are grey, (H, W, 2) grey and alpha, (H, W, 3) RGB, (H, W, 4) RGBA. uint8 holds 0..255,
    uint16 0..65535; any other type (bool, other integers, floats) must already hold values in [0, 1].
    """
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"the {what} must be (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4), got {array.shape}")
    _check_size(array.shape[0], array.shape[1], what)
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        values = array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)
    elif array.dtype == bool or np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise ValueError(f"the {what} holds NaN or infinite values: give finite numbers in [0, 1]")
        if values.min() < 0 or values.max() > 1:
            raise ValueError(
                f"the {what} ({array.dtype}) must hold values in [0, 1] (or be uint8 for 0..255, uint16 for 0..65535), "
                f"got {values.min():g}..{values.max():g}"
            )
    else:
        raise ValueError(f"the {what} has dtype {array.dtype}: give uint8, uint16, bool or float values")
    channels = values.shape[2]
    colour = values[..., :3] if channels >= 3 else np.repeat(values[..., :1], 3, axis=2)
    alpha = values[..., -1] if channels in (2, 4) else None
    return colour, alpha


def picture_values(source: Image.Image | np.ndarray, what: str = "image") -> tuple[np.ndarray, np.ndarray | None]:
    """A PIL image or an array as float32 arrays in [0, 1]: colour (H, W, 3) and alpha (H, W) or None. A PIL image
    is read as a viewer shows it: its EXIF orientation applied (a photo taken upright is upright)."""
    if isinstance(source, Image.Image):
        return _picture_values(_shown(source), what)
    return _array_values(np.asarray(source), f"{what} array")


def load_image(source: ImageLike) -> torch.Tensor:
    """An RGB image as a (1, 3, H, W) float tensor in [-1, 1].

    Files, PIL images and arrays are read by :func:`picture_values` (alpha dropped): arrays are (H, W) grey,
    (H, W, 3) RGB or (H, W, 4) RGBA, uint8 in [0, 255], uint16 in [0, 65535] or floats in [0, 1]. Tensors are
    (3, H, W) or (1, 3, H, W) floats already in [-1, 1]. NaN, infinities and empty pictures are refused.
    """
    if isinstance(source, (str, os.PathLike)):
        source = _open(source, "image")
    if isinstance(source, (Image.Image, np.ndarray)):
        colour, _ = picture_values(source, "image")
        source = torch.from_numpy(np.ascontiguousarray(colour)).permute(2, 0, 1) * 2 - 1
    if not isinstance(source, torch.Tensor):
        raise ValueError(f"cannot read an image from {type(source).__name__}: give a path, PIL image, array or tensor")
    image = source.detach().float().cpu()
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"an image tensor must be (3, H, W) or (1, 3, H, W), got shape {tuple(source.shape)}")
    _check_size(image.shape[2], image.shape[3], "image")
    if not torch.isfinite(image).all():
        raise ValueError("the image tensor holds NaN or infinite values: give finite values in [-1, 1]")
    if image.min() < -1.001 or image.max() > 1.001:
        raise ValueError("image tensors must hold values in [-1, 1] (convert with x * 2 - 1 from [0, 1])")
    return image.clamp(-1, 1)


def load_mask(source: ImageLike, invert: bool = False, red_above_zero: bool = False) -> torch.Tensor:
    """A binary mask (1, 1, H, W) of 0/1 floats, 1 = edit; thresholded at half of the value range.

    Files, PIL images and arrays are read by :func:`picture_values`, the same way: their alpha channel if they
    have one and it is not constant, else their luma (ITU-R 601-2), above one half (127.5 of 255). Tensors hold
    one channel, (H, W) to (1, 1, H, W), thresholded at 0.5. ``red_above_zero=True`` reads a mask as the official
    code does (:mod:`bdlib.core.official`): the red channel of the RGB picture, any value above 0.
    """
    if isinstance(source, (str, os.PathLike)):
        source = _open(source, "mask")
    if isinstance(source, (Image.Image, np.ndarray)):
        colour, alpha = picture_values(source, "mask")
        if red_above_zero:
            values, half = colour[..., 0], 0.0
        else:
            use_alpha = alpha is not None and alpha.min() != alpha.max()
            values, half = (alpha if use_alpha else colour @ _LUMA), 0.5
        mask = torch.from_numpy((values > half).astype(np.float32))
    elif isinstance(source, torch.Tensor):
        values = source.detach().float().cpu()
        if values.ndim < 2 or values.numel() != values.shape[-1] * values.shape[-2]:
            raise ValueError(f"a mask tensor must hold one channel, (H, W) to (1, 1, H, W); got {tuple(source.shape)}")
        _check_size(values.shape[-2], values.shape[-1], "mask")
        if not torch.isfinite(values).all():
            raise ValueError("the mask tensor holds NaN or infinite values: give values in [0, 1]")
        mask = (values.reshape(values.shape[-2:]) > (0 if red_above_zero else 0.5)).float()
    else:
        raise ValueError(f"cannot read a mask from {type(source).__name__}: give a path, PIL image, array or tensor")
    mask = mask[None, None]
    return 1 - mask if invert else mask


def image_writer(image: torch.Tensor, text: Mapping[str, str] | None = None) -> Writer:
    """A writer (:mod:`bdlib.runtime.files`) of a (3, H, W) or (1, 3, H, W) image in [-1, 1] as an 8-bit picture, in the
    format of the path's extension (PNG for ``.png``). ``text`` goes into a PNG's text chunks (:func:`png_text`)."""
    image = image.detach().float().cpu()
    image = image[0] if image.ndim == 4 else image
    array = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(array)
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)  # iTXt: UTF-8, so a prompt is stored as typed

    def write(path: Path) -> None:
        picture.save(path, pnginfo=info) if Path(path).suffix.lower() == ".png" else picture.save(path)

    return write


def png_text(path: str | os.PathLike) -> dict[str, str]:
    """The text chunks of a PNG file that come before its pixels (what :func:`image_writer` writes); ``{}`` for a file
    that is not a PNG or cannot be read. The pixels are not decoded."""
    try:
        with Image.open(path) as handle:
            if handle.format != "PNG":
                return {}
            return {key: str(value) for key, value in handle.info.items() if isinstance(value, str)}
    except (OSError, ValueError, Image.DecompressionBombError):
        return {}


def save_image(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write a (3, H, W) or (1, 3, H, W) image in [-1, 1] as an 8-bit PNG, atomically (creating the folder; an
    existing file is replaced only by a complete one)."""
    return write_file(path, image_writer(image))
