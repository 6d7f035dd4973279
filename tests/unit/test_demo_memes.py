"""render_meme: deterministic given its rng, meme-sized, and the text really is in the pixels."""

from __future__ import annotations

import random
from typing import cast

import numpy as np
import pytest
from PIL import Image

from moderator.demo.memes import (
    FONTS,
    LAYOUTS,
    MAX_SIDE,
    MIN_SIDE,
    Layout,
    drawable,
    font_dir,
    render_meme,
)

TEXT = "when the build is green on a friday afternoon"


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_same_rng_state_gives_the_same_pixels() -> None:
    for seed in range(6):
        a = render_meme(TEXT, np.random.default_rng(seed))
        b = render_meme(TEXT, np.random.default_rng(seed))
        assert a.size == b.size
        assert np.array_equal(pixels(a), pixels(b))
    # random.Random (the demo's sample stream) works the same way.
    c = render_meme(TEXT, random.Random(3))
    d = render_meme(TEXT, random.Random(3))
    assert np.array_equal(pixels(c), pixels(d))


def test_different_seeds_give_different_images() -> None:
    first, *others = [pixels(render_meme(TEXT, np.random.default_rng(seed))) for seed in range(4)]
    assert all(o.shape != first.shape or not np.array_equal(o, first) for o in others)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rgb_and_meme_sized(layout: Layout) -> None:
    for seed in range(5):
        image = render_meme(TEXT, np.random.default_rng(seed), layout=layout)
        assert image.mode == "RGB"
        assert MIN_SIDE <= image.width <= MAX_SIDE
        assert MIN_SIDE <= image.height <= MAX_SIDE


def test_given_size_is_kept_and_long_text_grows_the_height_instead_of_being_cut() -> None:
    image = render_meme(TEXT, np.random.default_rng(0), size=(400, 350), layout="plain")
    assert image.size == (400, 350)
    long_text = " ".join(["lengthy words that will not fit"] * 30)
    tall = render_meme(long_text, np.random.default_rng(0), size=(320, 320), layout="plain")
    assert tall.width == 320 and tall.height > 320


@pytest.mark.parametrize("layout", LAYOUTS)
def test_text_is_drawn(layout: Layout) -> None:
    """The same background (same rng) with and without the text: the text changes pixels."""

    def draw(text: str) -> Image.Image:
        rng = np.random.default_rng(11)
        return render_meme(
            text, rng, size=(480, 400), layout=layout, font="sans-bold", distort=False, jpeg=False
        )

    with_text, blank = draw(TEXT), draw("")
    changed = np.any(pixels(with_text) != pixels(blank), axis=-1)
    assert changed.mean() > 0.02  # a few percent of the pixels are letters
    assert pixels(with_text).std() > 10  # and the image is far from uniform


def test_every_font_draws() -> None:
    for name in FONTS:
        assert (font_dir() / FONTS[name]).is_file()
        image = render_meme("Hello 123", np.random.default_rng(0), font=name, layout="plain")
        assert pixels(image).std() > 5


def test_characters_without_a_glyph_are_left_out() -> None:
    path = font_dir() / FONTS["mono"]
    assert drawable("ok \u4e00\u4e8c done", path) == "ok  done"
    assert drawable("caf\u00e9 \u00fcber", path) == "caf\u00e9 \u00fcber"


def test_jpeg_and_options_are_checked() -> None:
    jpeg = render_meme(TEXT, np.random.default_rng(1), jpeg=True, size=(320, 320))
    png = render_meme(TEXT, np.random.default_rng(1), jpeg=False, size=(320, 320))
    assert not np.array_equal(pixels(jpeg), pixels(png))
    with pytest.raises(ValueError, match="layout"):
        render_meme(TEXT, np.random.default_rng(0), layout=cast(Layout, "poster"))
    with pytest.raises(ValueError, match="font"):
        render_meme(TEXT, np.random.default_rng(0), font="comic-sans")
