"""Generated video posts whose label sits in one frame among harmless ones (#14).

Each post is a short clip (MP4, H.264, written with PyAV) or a folder of PNG frames, of
`frames` frames of one coloured shape on a noisy background. Harmless frames show any shape
in red, green or blue except a red triangle; a positive post ("harmful") has one frame, at a
random position, showing a red triangle. Captions are harmless and independent of the label,
so only that one frame tells the label: pooling the frames' scores is what is measured.

    python -m moderator.training.synthetic_video OUT_DIR --posts 400
    moderator train OUT_DIR/data.jsonl --image-field none --label-field label \\
        --category harmful --image-size 64 --frame-pooling attention --out ckpt
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

CATEGORY = "harmful"
SIDE = 64
COLOURS = {"red": (205, 30, 30), "green": (30, 160, 60), "blue": (30, 60, 210)}
SHAPES = ("circle", "square", "triangle")
BAD = ("red", "triangle")
CAPTIONS = ("watch this", "my weekend", "new clip", "look at that", "so good", "again")


def frame(colour: str, shape: str, rng: np.random.Generator) -> np.ndarray:
    """One SIDE x SIDE RGB frame: a shape of `colour` on a noisy light background."""
    background = tuple(int(v) for v in rng.integers(150, 256, size=3))
    image = Image.new("RGB", (SIDE, SIDE), background)
    size = int(rng.integers(14, 30))
    x, y = (int(v) for v in rng.integers(2, SIDE - size - 2, size=2))
    pen = ImageDraw.Draw(image)
    fill = COLOURS[colour]
    if shape == "circle":
        pen.ellipse((x, y, x + size, y + size), fill=fill)
    elif shape == "square":
        pen.rectangle((x, y, x + size, y + size), fill=fill)
    else:
        pen.polygon([(x, y + size), (x + size, y + size), (x + size // 2, y)], fill=fill)
    noise = rng.normal(0, 10, (SIDE, SIDE, 3))
    return np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)


def harmless(rng: np.random.Generator) -> tuple[str, str]:
    while True:
        pick = (
            list(COLOURS)[int(rng.integers(len(COLOURS)))],
            SHAPES[int(rng.integers(len(SHAPES)))],
        )
        if pick != BAD:
            return pick


def clip_frames(label: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    picks = [harmless(rng) for _ in range(count)]
    if label:
        picks[int(rng.integers(count))] = BAD
    return [frame(colour, shape, rng) for colour, shape in picks]


def mp4(frames: list[np.ndarray]) -> bytes:
    """H.264 MP4 at 10 frames/s, near-lossless (crf 12): colours survive the 4:2:0 chroma."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as muxer:
        stream = muxer.add_stream("h264", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIDE, SIDE, "yuv420p"
        stream.options = {"crf": "12"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                muxer.mux(packet)
        for packet in stream.encode():
            muxer.mux(packet)
    return out.getvalue()


def write_video_dataset(
    directory: Path,
    posts: int = 400,
    frames: int = 8,
    seed: int = 0,
    positive_share: float = 0.5,
    folder_every: int = 4,
) -> Path:
    """Write videos/*.mp4, frames/NNNNN/*.png (every `folder_every`-th post; 0: none) and
    data.jsonl ({"id", "text", "video" | "frames", "label"}); returns the JSONL."""
    rng = np.random.default_rng(seed)
    (directory / "videos").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(posts):
        label = int(rng.random() < positive_share)
        clip = clip_frames(label, frames, rng)
        row: dict[str, object] = {"id": i, "text": CAPTIONS[int(rng.integers(len(CAPTIONS)))]}
        if folder_every and i % folder_every == folder_every - 1:
            folder = directory / "frames" / f"{i:05d}"
            folder.mkdir(parents=True, exist_ok=True)
            for number, array in enumerate(clip):
                Image.fromarray(array).save(folder / f"{number:03d}.png")
            row["frames"] = f"frames/{i:05d}"
        else:
            (directory / "videos" / f"{i:05d}.mp4").write_bytes(mp4(clip))
            row["video"] = f"videos/{i:05d}.mp4"
        row["label"] = label
        lines.append(json.dumps(row))
    data = directory / "data.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--posts", type=int, default=400)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_video_dataset(args.directory, args.posts, args.frames, args.seed))


if __name__ == "__main__":
    main()
