"""The 2D codecs without a reader in gpuheadless (Sun raster, Radiance HDR, Khoros VIFF) and PNM,
written through the export writer and decoded here independently, on small generated images."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image

from gpuheadless.io.encoders import encode_image
from gpuheadless.io.writers import open_writer


def export(tmp_path, codec, image, axes):
    path = tmp_path / f"out.{codec}"
    writer = open_writer(codec, str(path), "", image.shape, image.dtype, axes, {})
    writer.write(tuple(slice(None) for _ in image.shape), image)
    writer.commit()
    return path.read_bytes()


def gray(shape=(5, 7), dtype=np.uint8):
    return (np.arange(np.prod(shape)) * 3 % 250 + 1).astype(dtype).reshape(shape)


@pytest.mark.parametrize("channels", [1, 3])
def test_sun_raster_holds_the_pixels_in_padded_rows(channels, tmp_path):
    """Header magic, size and depth; rows padded to 16 bits; RGB stored as BGR; Pillow reads it back."""
    image = gray((5, 7, channels))
    data = export(tmp_path, "ras", image, "yxc")
    magic, width, height, depth, length, kind, _, _ = struct.unpack(">8I", data[:32])
    assert (magic, width, height, depth, kind) == (0x59A66A95, 7, 5, 8 * channels, 1)
    row = 7 * channels + (7 * channels) % 2
    assert length == 5 * row and len(data) == 32 + length
    rows = np.frombuffer(data[32:], np.uint8).reshape(5, row)[:, :7 * channels].reshape(5, 7, channels)
    np.testing.assert_array_equal(rows[..., ::-1] if channels == 3 else rows, image)
    back = np.asarray(Image.open(tmp_path / "out.ras"))
    np.testing.assert_array_equal(back.reshape(image.shape), image)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_viff_stores_bands_big_endian_after_a_1024_byte_header(dtype, tmp_path):
    """Khoros VIFF: identifier 0xAB, size and band count in the header, then band after band."""
    image = np.stack([gray((5, 7), dtype), gray((5, 7), dtype) * 2], axis=-1)
    data = export(tmp_path, "xv", image, "yxc")
    assert data[0] == 0xAB and len(data) == 1024 + image.size * np.dtype(dtype).itemsize
    width, height = struct.unpack(">II", data[520:528])
    bands = struct.unpack(">I", data[520 + 40:520 + 44])[0]
    assert (width, height, bands) == (7, 5, 2)
    stored = np.frombuffer(data[1024:], np.dtype(dtype).newbyteorder(">")).reshape(2, 5, 7)
    np.testing.assert_array_equal(np.moveaxis(stored, 0, -1), image)


def decode_radiance(data: bytes) -> np.ndarray:
    """(H, W, 3) float64 from a Radiance file of new-style run-length scanlines or flat RGBE."""
    header, _, rest = data.partition(b"\n\n")
    assert header.startswith(b"#?RADIANCE") and b"FORMAT=32-bit_rle_rgbe" in header
    size, _, body = rest.partition(b"\n")
    _, height, _, width = size.split()
    height, width = int(height), int(width)
    rgbe = np.zeros((height, width, 4), np.uint8)
    if not 8 <= width < 0x8000:
        rgbe[:] = np.frombuffer(body, np.uint8).reshape(height, width, 4)
    else:
        pos = 0
        for y in range(height):
            assert body[pos:pos + 4] == bytes((2, 2, width >> 8, width & 0xFF))
            pos += 4
            for component in range(4):
                x = 0
                while x < width:
                    count = body[pos]
                    assert 0 < count <= 128  # literal runs only
                    rgbe[y, x:x + count, component] = np.frombuffer(body[pos + 1:pos + 1 + count], np.uint8)
                    pos += 1 + count
                    x += count
    exponent = rgbe[..., 3].astype(np.int32)
    scale = np.where(exponent > 0, np.ldexp(1.0, exponent - 136), 0.0)
    return (rgbe[..., :3] + 0.5) * scale[..., None] * (exponent[..., None] > 0)


@pytest.mark.parametrize("width", [5, 140])
def test_radiance_hdr_stores_rgbe_within_its_8_bit_mantissa(width, tmp_path):
    """Radiance RGBE: each pixel within 1% of its brightest component; black stays black; flat rows
    below 8 pixels, run-length scanlines (literal runs of at most 128) from 8 on."""
    rng = np.random.default_rng(0)
    image = rng.uniform(0.01, 50.0, (3, width, 3)).astype(np.float32)
    image[0, 0] = 0
    back = decode_radiance(export(tmp_path, "hdr", image, "yxc"))
    assert back.shape == image.shape and not back[0, 0].any()
    err = np.abs(back - image).max(axis=-1) / np.maximum(image.max(axis=-1), 1e-9)
    assert err[image.max(axis=-1) > 0].max() < 0.01


def test_pnm_family_round_trips_through_pillow(tmp_path):
    """PGM (8 and 16 bit) and PPM store the values exactly."""
    for codec, image in (("pgm", gray((5, 7), np.uint8)), ("pgm", gray((5, 7), np.uint16) * 200),
                         ("ppm", gray((5, 7, 3))), ("pnm", gray((5, 7)))):
        export(tmp_path, codec, image, "yxc" if image.ndim == 3 else "yx")
        back = np.asarray(Image.open(tmp_path / f"out.{codec}"))
        np.testing.assert_array_equal(back.reshape(image.shape), image)


def test_encoder_refuses_wrong_shapes_and_unknown_codecs(tmp_path):
    """The encoder takes (H, W, C) images in a known codec only."""
    with open(tmp_path / "x", "wb") as stream:
        with pytest.raises(ValueError, match="expected"):
            encode_image(stream, np.zeros((4, 5), np.uint8), "png")
        with pytest.raises(ValueError, match="no encoder"):
            encode_image(stream, np.zeros((4, 5, 1), np.uint8), "webp")
