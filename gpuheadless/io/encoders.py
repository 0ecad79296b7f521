"""Encoders for single 2D images, ``(H, W, C)`` arrays already in a type the codec stores.

PNG, the PNM family, Sun raster (``ras``), Radiance RGBE (``hdr``) and Khoros VIFF (``xv``) are
written here from their published descriptions (no maintained Python library writes the last
three, and doing PNG/PNM here gives 16-bit and two-channel images that Pillow cannot write);
BMP, GIF and JPEG go through Pillow, TIFF through tifffile.
"""
from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np


def encode_image(stream: BinaryIO, image: np.ndarray, codec: str) -> None:
    """Write ``image`` (H, W, C) to the open binary ``stream`` in ``codec``."""
    if image.ndim != 3:
        raise ValueError(f"expected (H, W, C), got shape {image.shape}")
    writer = _ENCODERS.get(codec)
    if writer is None:
        raise ValueError(f"no encoder for {codec!r}")
    writer(stream, np.ascontiguousarray(image), codec)


def _png(stream: BinaryIO, image: np.ndarray, _codec: str) -> None:
    height, width, channels = image.shape
    depth = 16 if image.dtype == np.uint16 else 8
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]  # gray, gray+alpha, RGB, RGBA
    rows = image.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    stream.write(b"\x89PNG\r\n\x1a\n")
    stream.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)))
    stream.write(chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)))
    stream.write(chunk(b"IEND", b""))


def _pnm(stream: BinaryIO, image: np.ndarray, codec: str) -> None:
    height, width, channels = image.shape
    if codec == "pbm":  # P4: one bit per pixel, packed, 1 = set (non-zero)
        stream.write(f"P4\n{width} {height}\n".encode())
        stream.write(np.packbits(image[..., 0] != 0, axis=1).tobytes())
        return
    magic = "P5" if channels == 1 else "P6"
    maxval = 65535 if image.dtype == np.uint16 else 255
    stream.write(f"{magic}\n{width} {height}\n{maxval}\n".encode())
    stream.write(image.astype(">u2" if maxval > 255 else np.uint8).tobytes())


def _sun_raster(stream: BinaryIO, image: np.ndarray, _codec: str) -> None:
    height, width, channels = image.shape
    pixels = image[..., ::-1] if channels == 3 else image  # RT_STANDARD stores BGR
    row = pixels.reshape(height, width * channels)
    if row.shape[1] % 2:  # scanlines are padded to 16 bits
        row = np.concatenate([row, np.zeros((height, 1), np.uint8)], axis=1)
    data = row.astype(np.uint8).tobytes()
    stream.write(struct.pack(">8I", 0x59A66A95, width, height, 8 * channels, len(data), 1, 0, 0))
    stream.write(data)


def _radiance(stream: BinaryIO, image: np.ndarray, _codec: str) -> None:
    height, width, _ = image.shape
    stream.write(f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {height} +X {width}\n".encode())
    rgbe = _to_rgbe(image.astype(np.float64))
    if not 8 <= width < 0x8000:  # outside the run-length range scanlines are stored flat
        stream.write(rgbe.tobytes())
        return
    for y in range(height):  # new-style scanlines: 2, 2, width; each component as literal runs of <= 128
        stream.write(bytes((2, 2, width >> 8, width & 0xFF)))
        for component in range(4):
            values = rgbe[y, :, component]
            for start in range(0, width, 128):
                run = values[start:start + 128]
                stream.write(bytes((len(run),)) + run.tobytes())


def _to_rgbe(rgb: np.ndarray) -> np.ndarray:
    rgb = np.maximum(rgb, 0.0)
    brightest = rgb.max(axis=-1)
    mantissa, exponent = np.frexp(brightest)
    scale = np.where(brightest > 1e-32, mantissa * 256.0 / np.where(brightest > 0, brightest, 1.0), 0.0)
    out = np.zeros(rgb.shape[:-1] + (4,), np.uint8)
    out[..., :3] = np.clip(rgb * scale[..., None], 0, 255).astype(np.uint8)
    out[..., 3] = np.where(brightest > 1e-32, exponent + 128, 0).astype(np.uint8)
    return out


# Khoros VIFF 1.0 ("xvimage"): storage type codes of the data_storage_type field.
VIFF_STORAGE = {"uint8": 1, "int16": 2, "int32": 4, "float32": 5, "float64": 9}


def _viff(stream: BinaryIO, image: np.ndarray, _codec: str) -> None:
    """1024-byte header (identifier 0xAB, file type 1, release 1, version 3, big-endian data),
    then the bands one after the other, each row by row."""
    height, width, bands = image.shape
    header = bytearray(1024)
    header[0:5] = bytes((0xAB, 1, 1, 3, 0x2))  # 0x2: IEEE (big-endian) byte order
    comment = b"written by gpuheadless"
    header[8:8 + len(comment)] = comment
    fields = struct.pack(
        ">IIIiiffIIIIIIIIIIIIIIIIff",
        width, height, 0,          # row size, column size, subrow size
        0, 0,                      # start x, start y
        1.0, 1.0,                  # pixel size x, y
        1, 0,                      # location type implicit, location dimension
        1, bands,                  # images, data bands
        VIFF_STORAGE[image.dtype.name], 0,  # storage type, encoding raw
        0, 0, 0, 0, 0, 0, 0,       # map scheme none, map storage, map rows, cols, subrows, enable, per cycle
        0, 0, 0,                   # colour model none, two spare ints
        0.0, 0.0,                  # two spare floats
    )
    header[520:520 + len(fields)] = fields
    stream.write(bytes(header))
    stream.write(np.moveaxis(image, -1, 0).astype(image.dtype.newbyteorder(">")).tobytes())


def _pillow(stream: BinaryIO, image: np.ndarray, codec: str) -> None:
    from PIL import Image  # noqa: PLC0415

    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    picture.save(stream, format={"jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "gif": "GIF"}[codec])


def _tiff(stream: BinaryIO, image: np.ndarray, _codec: str) -> None:
    import tifffile  # noqa: PLC0415

    data = image[..., 0] if image.shape[-1] == 1 else image
    tifffile.imwrite(stream, data, photometric="minisblack", planarconfig="contig" if data.ndim == 3 else None)


_ENCODERS = {
    "png": _png,
    "pbm": _pnm, "pgm": _pnm, "ppm": _pnm, "pnm": _pnm,
    "ras": _sun_raster,
    "hdr": _radiance,
    "xv": _viff,
    "bmp": _pillow, "gif": _pillow, "jpeg": _pillow, "jpg": _pillow,
    "tif": _tiff, "tiff": _tiff,
}

