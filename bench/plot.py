"""A small line plot drawn with Pillow (no plotting library needed for one chart)."""
from __future__ import annotations

import math

from PIL import Image, ImageDraw

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def line_plot(path: str, series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str, title: str) -> None:
    """One line per series; x on a log scale, y linear from 0. Single points are drawn as markers."""
    width, height, left, right, top, bottom = 900, 560, 80, 260, 50, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    x_lo, x_hi = math.log10(min(xs)) - 0.1, math.log10(max(xs)) + 0.1
    y_hi = max(ys) * 1.1 or 1.0

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        px = left + (math.log10(x) - x_lo) / (x_hi - x_lo) * (width - left - right)
        py = height - bottom - y / y_hi * (height - top - bottom)
        return px, py

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for k in range(6):
        y = y_hi * k / 5
        _, py = to_pixel(10**x_lo, y)
        draw.line([left - 4, py, left, py], fill="black")
        draw.text((8, py - 6), f"{y:.2f}", fill="black")
    for exponent in range(math.floor(x_lo), math.ceil(x_hi) + 1):
        for mantissa in (1, 2, 5):
            x = mantissa * 10.0**exponent
            if x_lo <= math.log10(x) <= x_hi:
                px, _ = to_pixel(x, 0)
                draw.line([px, height - bottom, px, height - bottom + 4], fill="black")
                draw.text((px - 10, height - bottom + 8), f"{x:g}", fill="black")
    draw.text((left, 15), title, fill="black")
    draw.text(((width - right + left) // 2 - 60, height - 25), x_label, fill="black")
    draw.text((8, top - 25), y_label, fill="black")
    for i, (name, points) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pixels = [to_pixel(x, y) for x, y in sorted(points)]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=3)
        for px, py in pixels:
            draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=colour)
        draw.line([width - right + 15, top + 20 + 22 * i, width - right + 40, top + 20 + 22 * i], fill=colour, width=3)
        draw.text((width - right + 45, top + 14 + 22 * i), name, fill="black")
    image.save(path)
