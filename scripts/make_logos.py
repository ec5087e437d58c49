"""Draws the kernel's logos once (committed as kernel-ext/logo/logo-{32x32,64x64}.png; the kernel includes
them): a rust-coloured rounded tile with rising white bars, a histogram. Run with the project's venv:

    .venv/bin/python scripts/make_logos.py
"""

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "kernel-ext" / "logo"
RUST = (0xB7, 0x41, 0x0E, 255)
WHITE = (255, 255, 255, 255)
# (left, top, width) of each bar on a 64-pixel tile; every bar ends at y = 52.
BARS = [(12, 40, 8), (24, 30, 8), (36, 20, 8), (48, 12, 6)]


def logo(size: int) -> Image.Image:
    big = 8 * size  # drawn large, then scaled down: smooth edges
    k = big / 64
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle([0, 0, big - 1, big - 1], radius=12 * k, fill=RUST)
    for left, top, width in BARS:
        draw.rectangle([left * k, top * k, (left + width) * k - 1, 52 * k - 1], fill=WHITE)
    return img.resize((size, size), Image.LANCZOS)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for size in (32, 64):
        path = OUT / f"logo-{size}x{size}.png"
        logo(size).save(path, optimize=True)
        print(f"wrote {path}")
