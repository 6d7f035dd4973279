"""Text drawn into images the way memes and screenshots show it, for OCR tests, benches and demos.

    from moderator.demo.memes import render_meme
    image = render_meme("when the build is green on friday", np.random.default_rng(7))

`render_meme` draws a text into a 320-640 px RGB image in one of three layouts:

- ``classic``: white (sometimes yellow) letters with a black outline, mostly upper case, at the
  top and/or bottom of a busy photo-like, gradient or flat background;
- ``caption``: dark text on a light bar above a picture (the modern "caption meme" and many
  screenshots of posts);
- ``plain``: a text post: plain text in a contrasting colour on a flat or gradient background.

Fonts are the DejaVu faces that ship inside matplotlib (Sans, Sans Bold, Oblique, Serif, Serif
Bold/Italic, Mono), so nothing is downloaded. The text is word-wrapped to the width and the font
shrinks until it fits; text too long even at the smallest size makes the image taller rather
than being cut, so every character the font can draw is in the pixels. Characters the chosen
font has no glyph for (emoji, most non-Latin scripts) are left out instead of drawn as boxes.
The image may then be turned slightly, get pixel noise and go through a JPEG re-encode.

Everything random is drawn from `rng`: the same text, rng state and options give the same
pixels, on any machine with the same Pillow and matplotlib.
"""

from __future__ import annotations

import io
import random
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Layout = Literal["classic", "caption", "plain"]
LAYOUTS: tuple[Layout, ...] = ("classic", "caption", "plain")

FONTS: dict[str, str] = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "sans-oblique": "DejaVuSans-Oblique.ttf",
    "sans-bold-oblique": "DejaVuSans-BoldOblique.ttf",
    "serif": "DejaVuSerif.ttf",
    "serif-bold": "DejaVuSerif-Bold.ttf",
    "serif-italic": "DejaVuSerif-Italic.ttf",
    "mono": "DejaVuSansMono.ttf",
    "mono-bold": "DejaVuSansMono-Bold.ttf",
}
"""Font name → DejaVu file in matplotlib's data folder."""

MIN_SIDE, MAX_SIDE = 320, 640
MIN_FONT_SIZE = 16
_MARGIN = 0.05  # of the width, on every side of the text
_CLASSIC_FONTS = ("sans-bold", "sans-bold", "sans-bold", "sans-bold-oblique", "serif-bold")
_CAPTION_FONTS = ("sans", "sans", "sans-bold", "serif", "mono")
RGB = tuple[int, int, int]


def font_dir() -> Path:
    """matplotlib's folder of TrueType fonts (where the DejaVu faces are)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def render_meme(
    text: str,
    rng: np.random.Generator | random.Random,
    *,
    size: tuple[int, int] | None = None,
    layout: Layout | None = None,
    font: str | None = None,
    distort: bool = True,
    jpeg: bool | None = None,
) -> Image.Image:
    """`text` drawn into a new RGB image, every choice not given drawn from `rng`.

    size: (width, height); by default each side is drawn from 320-640 px. The height grows when
        the text does not fit even at 16 px, or when a ``caption`` bar would leave less than a
        third of the height for the picture (3 of 2,478 tweets went past 640 px).
    layout: ``classic``, ``caption`` or ``plain`` (see the module docstring); default: drawn.
    font: a key of `FONTS`; default: drawn to suit the layout.
    distort: allow a slight turn (up to 2.5 degrees) and pixel noise (each drawn, not always).
    jpeg: re-encode as JPEG (quality 35-90) and decode again: True, False, or None (drawn).
    """
    if isinstance(rng, np.random.Generator):
        gen = rng
    else:  # a random.Random (the demo's sample stream): one draw seeds the rest
        gen = np.random.default_rng(rng.getrandbits(128))
    if layout is None:
        layout = LAYOUTS[int(gen.integers(len(LAYOUTS)))]
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if font is None:
        choices = {"classic": _CLASSIC_FONTS, "caption": _CAPTION_FONTS}.get(layout, tuple(FONTS))
        font = choices[int(gen.integers(len(choices)))]
    if font not in FONTS:
        raise ValueError(f"font must be one of {sorted(FONTS)}, got {font!r}")
    width, height = size or (
        int(gen.integers(MIN_SIDE, MAX_SIDE + 1)),
        int(gen.integers(MIN_SIDE, MAX_SIDE + 1)),
    )
    path = font_dir() / FONTS[font]
    words = drawable(text, path).split()
    if layout == "classic":
        image = _classic(words, gen, path, width, height)
    elif layout == "caption":
        image = _caption(words, gen, path, width, height)
    else:
        image = _plain(words, gen, path, width, height)
    if distort:
        image = _distort(image, gen)
    if jpeg is None:
        jpeg = bool(gen.random() < 0.6)
    if jpeg:
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=int(gen.integers(35, 91)))
        image = Image.open(io.BytesIO(out.getvalue())).convert("RGB")
    return image


def drawable(text: str, font_path: Path) -> str:
    """`text` without the characters the font has no glyph for (whitespace kept)."""
    cmap = _codepoints(str(font_path))
    return "".join(c for c in text if c.isspace() or (ord(c) in cmap and c.isprintable()))


@cache
def _codepoints(font_path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(font_path, lazy=True) as face:
        return frozenset(face.getBestCmap())


@lru_cache(maxsize=256)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


# Layouts ---------------------------------------------------------------------------------------


def _classic(
    words: list[str], gen: np.random.Generator, path: Path, width: int, height: int
) -> Image.Image:
    if gen.random() < 0.8:
        words = [w.upper() for w in words]
    placement = ("top_bottom", "top", "bottom")[int(gen.choice(3, p=[0.5, 0.25, 0.25]))]
    if placement == "top_bottom" and len(words) >= 2:
        half = _half(words)
        blocks = [(words[:half], "top"), (words[half:], "bottom")]
    else:
        blocks = [(words, "bottom" if placement == "bottom" else "top")]
    fill: RGB = (255, 255, 255) if gen.random() < 0.85 else (255, 230, 40)
    start = max(MIN_FONT_SIZE, int(width / gen.uniform(6, 10)))
    region = 0.45 if len(blocks) == 2 else 0.9
    laid = [_fit(block, path, width, height * region, start) for block, _ in blocks]
    size = min(int(font.size) for font, _ in laid)
    laid = [_fit(block, path, width, height * region, size) for block, _ in blocks]
    needed = sum(_block_height(font, lines) for font, lines in laid) + 3 * _margin(width)
    height = max(height, int(needed))
    image = _background(gen, width, height, ("photo", "photo", "gradient", "flat"))
    draw = ImageDraw.Draw(image)
    stroke = max(1, round(size / 12))
    for (font, lines), (_, where) in zip(laid, blocks, strict=True):
        block = _block_height(font, lines)
        top = _margin(width) if where == "top" else height - _margin(width) - block
        _draw_lines(draw, lines, font, width, top, "center", fill, (0, 0, 0), stroke)
    return image


def _caption(
    words: list[str], gen: np.random.Generator, path: Path, width: int, height: int
) -> Image.Image:
    start = max(MIN_FONT_SIZE, int(width / gen.uniform(10, 16)))
    font, lines = _fit(words, path, width, height * 0.6, start)
    bar = _block_height(font, lines) + 2 * _margin(width)
    picture = max(int(height - bar), height // 3)
    height = int(bar + picture)
    shade = int(gen.integers(235, 256))
    image = Image.new("RGB", (width, height), (shade, shade, shade))
    photo = _background(gen, width, picture, ("photo", "photo", "gradient"))
    image.paste(photo, (0, int(bar)))
    ink = int(gen.integers(0, 50))
    align = "center" if gen.random() < 0.5 else "left"
    draw = ImageDraw.Draw(image)
    _draw_lines(draw, lines, font, width, _margin(width), align, (ink, ink, ink), None, 0)
    return image


def _plain(
    words: list[str], gen: np.random.Generator, path: Path, width: int, height: int
) -> Image.Image:
    start = max(MIN_FONT_SIZE, int(width / gen.uniform(6, 14)))
    font, lines = _fit(words, path, width, height * 0.8, start)
    block = _block_height(font, lines)
    height = max(height, int(block + 2 * _margin(width)))
    light = bool(gen.random() < 0.6)
    image = _background(gen, width, height, ("flat", "gradient"), light=light)
    ink = _colour(gen, light=not light)
    align = "center" if gen.random() < 0.5 else "left"
    top = (height - block) / 2
    _draw_lines(ImageDraw.Draw(image), lines, font, width, top, align, ink, None, 0)
    return image


# Text -------------------------------------------------------------------------------------------


def _half(words: list[str]) -> int:
    """Where to split the words into two blocks of about the same number of characters."""
    total, running = sum(len(w) + 1 for w in words), 0
    for index, word in enumerate(words):
        running += len(word) + 1
        if running >= total / 2:
            return max(1, min(index + 1, len(words) - 1))
    return len(words) // 2


def _margin(width: int) -> int:
    return max(8, round(width * _MARGIN))


def _fit(
    words: list[str], path: Path, width: int, max_height: float, start: int
) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest font size from `start` down to 16 whose wrapped lines fit; else 16."""
    usable = width - 2 * _margin(width)
    size = start
    while True:
        font = _font(path, size)
        lines = _wrap(words, font, usable)
        if size <= MIN_FONT_SIZE or _block_height(font, lines) <= max_height:
            return font, lines
        size = max(MIN_FONT_SIZE, int(size * 0.9))


def _wrap(words: list[str], font: ImageFont.FreeTypeFont, usable: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in words:
        while font.getlength(word) > usable:  # a word wider than the line (a URL): break it
            cut = _longest_prefix(word, font, usable)
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{line} {word}" if line else word
        if line and font.getlength(candidate) > usable:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def _longest_prefix(word: str, font: ImageFont.FreeTypeFont, usable: int) -> int:
    cut = 1
    while cut < len(word) and font.getlength(word[: cut + 1]) <= usable:
        cut += 1
    return cut


def _line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return int((ascent + descent) * 1.1)


def _block_height(font: ImageFont.FreeTypeFont, lines: list[str]) -> int:
    return _line_height(font) * len(lines)


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    lines: list[str],
    font: ImageFont.FreeTypeFont,
    width: int,
    top: float,
    align: str,
    fill: RGB,
    stroke_fill: RGB | None,
    stroke_width: int,
) -> None:
    step = _line_height(font)
    for index, line in enumerate(lines):
        left = (width - font.getlength(line)) / 2 if align == "center" else _margin(width)
        draw.text(
            (left, top + index * step),
            line,
            font=font,
            fill=fill,
            stroke_width=stroke_width,
            stroke_fill=stroke_fill,
        )


# Pixels -----------------------------------------------------------------------------------------


def _colour(gen: np.random.Generator, light: bool) -> RGB:
    """A random colour well on one side of mid-grey (luma above 190 or below 70)."""
    while True:
        r, g, b = (int(v) for v in gen.integers(0, 256, 3))
        luma = 0.299 * r + 0.587 * g + 0.114 * b
        if (light and luma > 190) or (not light and luma < 70):
            return r, g, b


def _background(
    gen: np.random.Generator,
    width: int,
    height: int,
    kinds: tuple[str, ...],
    light: bool | None = None,
) -> Image.Image:
    kind = kinds[int(gen.integers(len(kinds)))]
    if kind == "flat":
        tone = bool(gen.random() < 0.5) if light is None else light
        return Image.new("RGB", (width, height), _colour(gen, tone))
    if kind == "gradient":
        tone = bool(gen.random() < 0.5) if light is None else light
        a, b = np.array(_colour(gen, tone)), np.array(_colour(gen, tone))
        angle = gen.uniform(0, np.pi)
        ys, xs = np.mgrid[0:height, 0:width]
        t = xs * np.cos(angle) + ys * np.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        pixels = a * (1 - t[..., None]) + b * t[..., None]
        return Image.fromarray(pixels.astype(np.uint8), "RGB")
    return _photo(gen, width, height)


def _photo(gen: np.random.Generator, width: int, height: int) -> Image.Image:
    """Something photo-like: smooth colour fields, blurred blobs and grain."""
    cells = int(gen.integers(3, 8))
    coarse = gen.integers(0, 256, (cells, cells, 3)).astype(np.uint8)
    image = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(gen.integers(4, 14))):
        x, y = gen.uniform(-0.2, 1.0) * width, gen.uniform(-0.2, 1.0) * height
        w, h = gen.uniform(0.1, 0.5) * width, gen.uniform(0.1, 0.5) * height
        colour = tuple(int(v) for v in gen.integers(0, 256, 3))
        draw.ellipse((x, y, x + w, y + h), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(float(gen.uniform(2, 8))))
    grain = gen.normal(0, gen.uniform(2, 10), (height, width, 1))
    return Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8), "RGB")


def _distort(image: Image.Image, gen: np.random.Generator) -> Image.Image:
    if gen.random() < 0.5:
        edge = tuple(int(v) for v in np.asarray(image)[0].mean(axis=0))
        angle = float(gen.uniform(-2.5, 2.5))
        image = image.rotate(angle, Image.Resampling.BICUBIC, expand=False, fillcolor=edge)
    if gen.random() < 0.6:
        noise = gen.normal(0, gen.uniform(1, 8), (image.height, image.width, 3))
        image = Image.fromarray(
            np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8), "RGB"
        )
    return image
