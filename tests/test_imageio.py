"""Reading pictures: every mode Pillow opens gives the image a reference says, or a clear refusal (issue 16, item 2).

Each mode is written to a file (PNG, or TIFF for modes PNG cannot hold) or built in memory where no format
holds it, and compared with what the pixels mean: 16-bit values over 65535, 8-bit over 255, CMYK and the
other colour spaces by colours whose RGB value is not in doubt. Masks from arrays and from the same picture
as a file must agree.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from bdlib.runtime.imageio import load_image, load_mask

RNG = np.random.default_rng(0)


def png16(path, array: np.ndarray) -> None:
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit colour): (H, W, C) uint16, C = 1, 2, 3 or 4."""
    height, width, channels = array.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def as_unit(image: torch.Tensor) -> np.ndarray:
    """A loaded (1, 3, H, W) image in [-1, 1] as (H, W, 3) in [0, 1]."""
    return ((image[0].permute(1, 2, 0) + 1) / 2).numpy()


def test_16_bit_greyscale_is_read_to_the_last_bit(tmp_path):
    grey = RNG.integers(0, 65536, (6, 7)).astype(np.uint16)
    grey[0, 0], grey[0, 1] = 0, 65535
    Image.fromarray(grey).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode in ("I;16", "I")  # Pillow's 16-bit greyscale
    expected = np.repeat((grey / 65535)[..., None], 3, axis=2)
    np.testing.assert_allclose(as_unit(load_image(tmp_path / "grey16.png")), expected, atol=1e-6)
    int32 = Image.fromarray(grey.astype(np.int32))  # mode "I", as older Pillow opens 16-bit PNGs
    int32.save(tmp_path / "grey32.tif")
    np.testing.assert_allclose(as_unit(load_image(tmp_path / "grey32.tif")), expected, atol=1e-6)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_colour_is_read_at_8_bits(tmp_path, channels):
    array = RNG.integers(0, 65536, (5, 4, channels)).astype(np.uint16)
    png16(tmp_path / "colour16.png", array)
    colour = array[..., :3] if channels >= 3 else np.repeat(array[..., :1], 3, axis=2)
    expected = (colour >> 8) / 255  # Pillow keeps the high byte of each 16-bit value
    np.testing.assert_allclose(as_unit(load_image(tmp_path / "colour16.png")), expected, atol=1e-6)


def test_16_bit_masks_are_thresholded_at_half_their_range(tmp_path):
    grey = np.array([[0, 30000, 32767, 32768, 40000, 65535]], dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "mask16.png")
    assert load_mask(tmp_path / "mask16.png")[0, 0].tolist() == [[0, 0, 0, 1, 1, 1]]
    assert load_mask(grey)[0, 0].tolist() == [[0, 0, 0, 1, 1, 1]]  # the same array, the same mask


def _colours(picture: Image.Image, tmp_path, suffix: str | None) -> np.ndarray:
    """``load_image`` of ``picture``, through a file when ``suffix`` is given."""
    if suffix is not None:
        picture.save(tmp_path / f"picture{suffix}")
        assert Image.open(tmp_path / f"picture{suffix}").mode == picture.mode
        return as_unit(load_image(tmp_path / f"picture{suffix}"))
    return as_unit(load_image(picture))


@pytest.mark.parametrize(
    ("mode", "values", "rgb", "suffix"),
    [
        ("1", [0, 1], [(0, 0, 0), (255, 255, 255)], ".png"),
        ("L", [0, 200], [(0, 0, 0), (200, 200, 200)], ".png"),
        ("LA", [(10, 0), (250, 255)], [(10, 10, 10), (250, 250, 250)], ".png"),
        ("RGB", [(255, 0, 0), (1, 2, 3)], [(255, 0, 0), (1, 2, 3)], ".png"),
        ("RGBA", [(0, 255, 0, 0), (9, 8, 7, 200)], [(0, 255, 0), (9, 8, 7)], ".png"),
        ("CMYK", [(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)], [(255, 255, 255), (0, 255, 255), (0, 0, 0)], ".tif"),
        ("HSV", [(0, 255, 255), (85, 255, 255)], [(255, 0, 0), (0, 255, 0)], None),
    ],
)
def test_8_bit_modes_give_their_colours(tmp_path, mode, values, rgb, suffix):
    picture = Image.new(mode, (len(values), 1))
    for x, value in enumerate(values):
        picture.putpixel((x, 0), value)
    np.testing.assert_allclose(_colours(picture, tmp_path, suffix), np.array([rgb]) / 255, atol=1e-6)


@pytest.mark.parametrize(
    ("mode", "value", "rgb"),
    [
        ("YCbCr", (76, 85, 255), (255, 0, 0)),
        ("LAB", (255, 128, 128), (255, 255, 255)),
        ("LAB", (0, 128, 128), (0, 0, 0)),
    ],
)
def test_other_colour_spaces_give_their_colours(tmp_path, mode, value, rgb):
    picture = Image.new(mode, (1, 1), value)
    np.testing.assert_allclose(_colours(picture, tmp_path, ".tif"), np.array([[rgb]]) / 255, atol=2 / 255)


def test_palettes_with_transparency_give_their_colours_and_alpha(tmp_path):
    picture = Image.new("P", (3, 1))
    picture.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    for x in range(3):
        picture.putpixel((x, 0), x)
    picture.info["transparency"] = 0  # entry 0 (red) is transparent
    picture.save(tmp_path / "palette.png")
    np.testing.assert_allclose(as_unit(load_image(tmp_path / "palette.png")), [[[1, 0, 0], [0, 1, 0], [0, 0, 1]]])
    assert load_mask(tmp_path / "palette.png")[0, 0].tolist() == [[0, 1, 1]]  # the transparency is the mask's alpha
    pa = Image.new("PA", (2, 1))
    pa.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    pa.putpixel((0, 0), (0, 255))
    pa.putpixel((1, 0), (1, 0))
    np.testing.assert_allclose(as_unit(load_image(pa)), [[[1, 1, 1], [0, 0, 0]]])
    assert load_mask(pa)[0, 0].tolist() == [[1, 0]]


def test_float_pictures_in_0_1_are_read_and_others_refused(tmp_path):
    values = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "float.tif")
    np.testing.assert_allclose(as_unit(load_image(tmp_path / "float.tif")), np.repeat(values[..., None], 3, 2))
    Image.fromarray(values * 255).save(tmp_path / "float255.tif")
    with pytest.raises(ValueError, match=r"floating-point picture with values outside \[0, 1\]"):
        load_image(tmp_path / "float255.tif")
    with pytest.raises(ValueError, match="values outside 0..65535"):
        load_image(Image.fromarray(np.array([[-5, 70000]], dtype=np.int32)))


def test_modes_pillow_cannot_convert_are_refused():
    with pytest.raises(ValueError, match="mode La, which Pillow cannot convert"):
        load_image(Image.new("La", (2, 2)))


def test_mask_arrays_are_read_like_the_same_picture_in_a_file(tmp_path):
    green = np.zeros((4, 4, 3), np.uint8)
    green[1:3, 1:3, 1] = 255  # a green square on black: luma 150 of 255, above half
    alpha = np.zeros((4, 4, 4), np.uint8)
    alpha[..., :3] = 255  # white everywhere, the region in the alpha channel
    alpha[:2, :, 3] = 255
    grey_alpha = alpha[..., [0, 3]]
    for array, mode in ((green, "RGB"), (alpha, "RGBA"), (grey_alpha, "LA")):
        Image.fromarray(array, mode).save(tmp_path / "mask.png")
        from_file = load_mask(tmp_path / "mask.png")
        assert torch.equal(load_mask(array), from_file)
        assert torch.equal(load_mask(Image.fromarray(array, mode)), from_file)
        assert 0 < from_file.mean() < 1
    assert load_mask(green)[0, 0, 1:3, 1:3].eq(1).all() and load_mask(alpha)[0, 0, :2].eq(1).all()


def test_a_lab_picture_has_no_alpha(tmp_path):
    picture = Image.new("LAB", (4, 1), (255, 128, 128))  # white everywhere
    picture.putpixel((0, 0), (255, 0, 128))  # its a* channel (band "A") varies: it is a colour, not transparency
    assert load_mask(picture)[0, 0].tolist() == [[1, 1, 1, 1]]


def test_float_and_integer_mask_arrays_hold_values_in_0_1():
    assert load_mask(np.array([[0.2, 0.7]]))[0, 0].tolist() == [[0, 1]]
    assert load_mask(np.array([[0, 1]], dtype=np.int64))[0, 0].tolist() == [[0, 1]]
    with pytest.raises(ValueError, match=r"must hold values in \[0, 1\] \(or be uint8"):
        load_mask(np.array([[0, 255]], dtype=np.int64))


# ------------------------------------------------------------------- EXIF orientation and sizes (issue 23, items 3, 5)
def _with_orientation(path, array: np.ndarray, orientation: int, **save) -> None:
    """Save ``array`` (H, W, 3 uint8) as stored pixels with an EXIF orientation tag (viewers rotate it on display)."""
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    Image.fromarray(array).save(path, exif=exif, **save)


def test_exif_orientation_is_applied_to_images_and_masks(tmp_path):
    """Orientation 6: the stored pixels are shown turned 90° clockwise; bdlib reads what the viewer shows."""
    stored = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    _with_orientation(tmp_path / "image.png", stored, 6)
    shown = np.rot90(stored, k=-1)  # 90° clockwise
    assert np.allclose(as_unit(load_image(tmp_path / "image.png")), shown / 255, atol=1e-6)
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[:8, :8] = 255  # top-left as stored: top-right as shown
    _with_orientation(tmp_path / "mask.png", mask, 6)
    read = load_mask(tmp_path / "mask.png")[0, 0].numpy()
    assert read[:8, -8:].all() and read.sum() == 64
    with Image.open(tmp_path / "image.png") as picture:  # a PIL image passed in is read the same way
        assert torch.equal(load_image(picture), load_image(tmp_path / "image.png"))


def test_a_mask_drawn_on_the_shown_jpeg_fits_it(tmp_path):
    """A 40x30 JPEG shown as 30x40 (orientation 6) and a 30x40 mask drawn on what the viewer showed."""
    from bdlib.edit import prepare_inputs

    _with_orientation(tmp_path / "photo.jpg", np.full((30, 40, 3), 128, np.uint8), 6, quality=95)
    mask = np.zeros((40, 30), np.uint8)
    mask[10:20, 5:15] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    image, mask_t = prepare_inputs(tmp_path / "photo.jpg", tmp_path / "mask.png")
    assert image.shape[-2:] == mask_t.shape[-2:] == (40, 30)


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG that declares ``width`` x ``height`` pixels but holds a few bytes (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


@pytest.mark.parametrize(("width", "height"), [(20000, 20000), (10000, 9000)])
def test_pictures_beyond_pillows_limit_are_refused_before_decoding(tmp_path, width, height):
    """20000x20000 is past Pillow's error limit (2 x MAX_IMAGE_PIXELS), 10000x9000 past its warning limit."""
    _png_header_only(tmp_path / "bomb.png", width, height)
    for read in (load_image, load_mask):
        # Pillow refuses to open the larger one at all, so its size is not known
        size = rf"({width}x{height} pixels \(90 megapixels\)|over 179 megapixels)"
        with pytest.raises(ValueError, match=rf"is {size}, and bdlib reads at most 89 megapixels.*scale it down"):
            read(tmp_path / "bomb.png")
