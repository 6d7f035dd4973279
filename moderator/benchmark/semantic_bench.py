"""Semantic bank benchmark: lookup cost per post (exact vs IVF), and near-duplicate recall.

    .venv/bin/python -m moderator.benchmark.semantic_bench --cost 10000,1000000
    .venv/bin/python -m moderator.benchmark.semantic_bench --recall ../shared/data/harmeme

Cost: random unit joint vectors at the starter's dims (1280 + 384), a batch of 64 queries that
are noisy copies of entries (so the IVF index has something to find); per post = batch time /
64, with the replica's search code (moderator.retrieval). IVF recall@1 is against exact search.

Recall: the first N rows of the data set's train split are the bank (image + its text, as the
starter reads them); each bank image is reposted re-encoded (JPEG quality 30), cropped (10%
off each side) and recaptioned (a new caption joined to the same image text); the next N rows
are unrelated posts, for false matches. Every copy is looked up in the semantic bank (starter
model) and in a PDQ bank of the same images (Hamming distance <= 31, quality >= 50). The images
are read at run time and nothing derived from them is written anywhere: figures only.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import orjson
from PIL import Image

from moderator.retrieval.index import ExactIndex, IvfIndex
from moderator.retrieval.joint import entry_vectors, query_vectors

BATCH = 64
IMAGE_DIM, TEXT_DIM = 1280, 384
PDQ_THRESHOLD, PDQ_QUALITY = 31, 50
NEW_CAPTIONS = ["lmao look at this", "so true", "my uncle posted this again", "thoughts?"]


def _random_bank(rng: np.random.Generator, count: int) -> np.ndarray:
    """Entry vectors of random unit image and text embeddings, written chunk by chunk: at 1M
    entries the bank alone is 6.6 GB, so no full-size temporaries."""
    out = np.empty((count, IMAGE_DIM + TEXT_DIM), dtype=np.float32)
    flags = np.ones(min(65_536, count), dtype=bool)
    for start in range(0, count, 65_536):
        size = min(65_536, count - start)
        image = rng.standard_normal((size, IMAGE_DIM), dtype=np.float32)
        text = rng.standard_normal((size, TEXT_DIM), dtype=np.float32)
        out[start : start + size] = entry_vectors(image, flags[:size], text, flags[:size])
    return out


def _per_post_ms(search: object, queries: tuple[np.ndarray, ...], repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        search(*queries)  # type: ignore[operator]
    return (time.perf_counter() - started) / repeats / BATCH * 1000


def cost(entries: int, nprobes: list[int], threads: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    vectors = _random_bank(rng, entries)
    picks = rng.choice(entries, BATCH, replace=False)
    flags = np.ones(BATCH, dtype=bool)
    noise = 0.5 / np.sqrt(IMAGE_DIM + TEXT_DIM)  # cosine ~0.9 to the original
    originals = vectors[picks] * np.sqrt(2.0)  # the unit halves back
    noisy = originals + noise * rng.standard_normal(originals.shape, dtype=np.float32)
    queries = query_vectors(noisy[:, :IMAGE_DIM], flags, noisy[:, IMAGE_DIM:], flags)
    exact = ExactIndex(vectors, IMAGE_DIM)
    exact.search(*queries)  # warm-up
    exact_ms = _per_post_ms(exact.search, queries, 3 if entries <= 100_000 else 1)
    _, exact_where = exact.search(*queries)
    started = time.perf_counter()
    ivf = IvfIndex(vectors, IMAGE_DIM, nprobes[0], threads)
    build_s = time.perf_counter() - started
    del exact, vectors
    figures: dict[str, float] = {
        "entries": entries,
        "exact_ms_per_post": exact_ms,
        "ivf_build_s": build_s,
        "ivf_lists": ivf.lists,
        "exact_finds_original": float(np.mean(exact_where == picks)),
    }
    for nprobe in nprobes:
        ivf.set_nprobe(nprobe)
        ivf.search(*queries)
        figures[f"ivf_ms_per_post@{nprobe}"] = _per_post_ms(ivf.search, queries, 5)
        _, ivf_where = ivf.search(*queries)
        figures[f"ivf_recall_at_1@{nprobe}"] = float(np.mean(ivf_where == exact_where))
    return figures


# -- recall of near-duplicates -------------------------------------------------------------


def _reencoded(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=30)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _cropped(image: Image.Image) -> Image.Image:
    width, height = image.size
    dx, dy = width // 10, height // 10
    return image.crop((dx, dy, width - dx, height - dy))


def _pixels(image: Image.Image, size: int) -> np.ndarray:
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def recall(data: Path, count: int) -> dict[str, dict[str, float]]:
    from moderator.model import load_model
    from moderator.retrieval.importer import BankItem, item_text
    from moderator.signals.hashes import pdq_from_pixels

    model = load_model(None)
    rows = [orjson.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    rows = rows[: 2 * count]
    images = [Image.open(data / row["img"]).convert("RGB") for row in rows]
    texts = [row.get("text", "") for row in rows]

    def embed(posts: list[tuple[Image.Image, str, str]]) -> tuple[np.ndarray, ...]:
        pixels = np.stack([_pixels(image, model.image_size) for image, _, _ in posts])
        words = [
            item_text(BankItem("", None, caption, image_text), model.reads_image_text)
            for _, caption, image_text in posts
        ]
        image_vectors = np.concatenate(
            [model.embed_images(pixels[i : i + 32]) for i in range(0, len(pixels), 32)]
        )
        text_vectors = model.embed_texts(words)
        has = np.ones(len(posts), dtype=bool)
        return image_vectors, has, text_vectors, np.array([bool(w) for w in words])

    bank_posts = [(images[i], "", texts[i]) for i in range(count)]
    index = ExactIndex(entry_vectors(*embed(bank_posts)), model.image_embedding_dim)
    bank_hashes = [pdq_from_pixels(np.asarray(images[i]))[0] for i in range(count)]
    bank_bits = np.unpackbits(
        np.frombuffer(b"".join(bank_hashes), np.uint8).reshape(count, 32), axis=1
    )
    copies = {
        "re-encoded (JPEG q30)": [(_reencoded(images[i]), "", texts[i]) for i in range(count)],
        "cropped (10% each side)": [(_cropped(images[i]), "", texts[i]) for i in range(count)],
        "recaptioned": [
            (images[i], NEW_CAPTIONS[i % len(NEW_CAPTIONS)], texts[i]) for i in range(count)
        ],
        "unrelated posts": [(images[i], "", texts[i]) for i in range(count, len(rows))],
    }
    out: dict[str, dict[str, float]] = {}
    for kind, posts in copies.items():
        best, where = index.search(*query_vectors(*embed(posts)))
        target = np.arange(len(posts)) if kind != "unrelated posts" else None
        hashes = [pdq_from_pixels(np.asarray(image)) for image, _, _ in posts]
        bits = np.unpackbits(
            np.frombuffer(b"".join(h for h, _ in hashes), np.uint8).reshape(len(posts), 32), axis=1
        )
        distance = (bits[:, None, :] != bank_bits[None, :, :]).sum(axis=2)
        quality = np.array([q for _, q in hashes])
        pdq_hit = (distance.min(axis=1) <= PDQ_THRESHOLD) & (quality >= PDQ_QUALITY)
        pdq_right = distance.argmin(axis=1) == target if target is not None else pdq_hit
        right = where == target if target is not None else np.ones(len(posts), bool)
        out[kind] = {
            "posts": len(posts),
            **{
                f"semantic>={t}": float(np.mean((best >= t) & right))
                for t in (0.85, 0.9, 0.92, 0.95)
            },
            "semantic_top1": float(np.mean(right)) if target is not None else float("nan"),
            "median_similarity": float(np.median(best)),
            "pdq": float(np.mean(pdq_hit & pdq_right)),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cost", default="10000,1000000", help="bank sizes ('' to skip)")
    parser.add_argument("--nprobe", default="4,8,32", help="IVF lists probed, each measured")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recall", type=Path, default=None, help="HarMeme-style data folder")
    parser.add_argument("--count", type=int, default=300, help="bank entries for --recall")
    args = parser.parse_args(argv)
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    for entries in [int(n) for n in args.cost.split(",") if n]:
        nprobes = [int(n) for n in args.nprobe.split(",")]
        figures = cost(entries, nprobes, args.threads)
        print(
            f"{entries:>9,} entries: exact {figures['exact_ms_per_post']:.3f} ms/post; IVF "
            f"{figures['ivf_lists']:.0f} lists built in {figures['ivf_build_s']:.1f} s; "
            f"(batch {BATCH}, {args.threads} threads)",
            flush=True,
        )
        for nprobe in nprobes:
            print(
                f"{'':>11}IVF nprobe {nprobe:>3}: {figures[f'ivf_ms_per_post@{nprobe}']:.3f} "
                f"ms/post, recall@1 vs exact {figures[f'ivf_recall_at_1@{nprobe}']:.3f}",
                flush=True,
            )
    if args.recall is not None:
        print(f"near-duplicate recall, {args.count} bank entries (starter model; PDQ <= 31):")
        for kind, figures in recall(args.recall, args.count).items():
            cells = ", ".join(
                f"{name} {value:.3f}" for name, value in figures.items() if name != "posts"
            )
            print(f"  {kind:<26} {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
