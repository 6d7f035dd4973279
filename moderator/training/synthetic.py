"""Generated multimodal data whose label provably needs both the image and the caption.

Each row is a PNG of one red or blue shape (random kind, place, size and background) and a
caption naming a colour. The label ("mismatch") is 1 when the caption's colour is not the
image's. Colours of image and caption are drawn independently, so either side alone carries no
information about the label (AUROC 0.5 in expectation); only their combination does.

    python -m moderator.training.synthetic OUT_DIR --rows 600
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CATEGORY = "mismatch"
COLOURS = {"red": (205, 30, 30), "blue": (30, 60, 210)}
SHAPES = ("circle", "square", "triangle")
TEMPLATES = (
    "look at this {colour} {shape}",
    "a {colour} {shape} again",
    "my favourite {colour} thing",
    "that one is {colour}",
    "{colour}, obviously",
    "nothing but {colour} here",
    "the {shape} is {colour}",
    "so {colour} today",
)
PNG_SIZE = 64


def draw(colour: str, shape: str, rng: np.random.Generator) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(170, 256, size=3))
    image = Image.new("RGB", (PNG_SIZE, PNG_SIZE), background)
    size = int(rng.integers(20, 44))
    x, y = (int(v) for v in rng.integers(2, PNG_SIZE - size - 2, size=2))
    box = (x, y, x + size, y + size)
    pen = ImageDraw.Draw(image)
    fill = COLOURS[colour]
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(x, y + size), (x + size, y + size), (x + size // 2, y)], fill=fill)
    noise = rng.normal(0, 8, (PNG_SIZE, PNG_SIZE, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_synthetic_dataset(directory: Path, rows: int = 600, seed: int = 0) -> Path:
    """Write images/*.png and data.jsonl ({"id", "img", "text", "label"}); returns the JSONL."""
    rng = np.random.default_rng(seed)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    lines = []
    for i in range(rows):
        image_colour = names[int(rng.integers(2))]
        caption_colour = names[int(rng.integers(2))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        caption_shape = SHAPES[int(rng.integers(len(SHAPES)))]
        path = f"images/{i:05d}.png"
        draw(image_colour, shape, rng).save(directory / path)
        text = template.format(colour=caption_colour, shape=caption_shape)
        label = int(image_colour != caption_colour)
        lines.append(json.dumps({"id": i, "img": path, "text": text, "label": label}))
    data = directory / "data.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_synthetic_dataset(args.directory, args.rows, args.seed))


if __name__ == "__main__":
    main()
