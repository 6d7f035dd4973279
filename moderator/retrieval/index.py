"""Nearest-entry search over a bank's vectors: exact (a matmul) or an IVF index (faiss).

Both return, per query row, the entry with the best joint.py similarity. Exact search scores
the whole bank in chunks (bounded memory). Above `exact_max_entries` a faiss IndexIVFFlat
(inner product, ~sqrt(N) lists) probes `nprobe` lists for the CANDIDATES best inner
products, which are then rescored exactly (shared-side mean). The crossover and both costs are
measured by moderator/benchmark/semantic_bench.py (docs/retrieval.md).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from moderator.retrieval.joint import entry_sides, similarities

_CHUNK_ENTRIES = 32_768
CANDIDATES = 16


class VectorIndex(Protocol):
    kind: str

    def search(
        self, queries: np.ndarray, has_image: np.ndarray, has_text: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """joint.query_vectors' output → best similarity float32 [B] (-inf: no entry shares
        a side with the row) and its entry index int64 [B]."""
        ...


class ExactIndex:
    kind = "exact"

    def __init__(self, vectors: np.ndarray, image_dim: int) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.has_image, self.has_text = entry_sides(self.vectors, image_dim)

    def search(
        self, queries: np.ndarray, has_image: np.ndarray, has_text: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        best = np.full(len(queries), -np.inf, dtype=np.float32)
        where = np.zeros(len(queries), dtype=np.int64)
        rows = np.arange(len(queries))
        for start in range(0, len(self.vectors) if len(queries) else 0, _CHUNK_ENTRIES):
            stop = start + _CHUNK_ENTRIES
            scores = similarities(
                queries,
                has_image,
                has_text,
                self.vectors[start:stop],
                self.has_image[start:stop],
                self.has_text[start:stop],
            )
            index = scores.argmax(axis=1)
            value = scores[rows, index]
            better = value > best
            best[better] = value[better]
            where[better] = index[better] + start
        return best, where


class IvfIndex:
    kind = "ivf"

    def __init__(
        self, vectors: np.ndarray, image_dim: int, nprobe: int, threads: int | None = None
    ) -> None:
        import faiss

        if threads is not None:
            faiss.omp_set_num_threads(threads)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.has_image, self.has_text = entry_sides(vectors, image_dim)
        count, dim = vectors.shape
        # sqrt(N) lists: k-means training and adding cost N * lists * dim, which at 1M entries
        # of the starter's 1664 dims is minutes on two cores; probing nprobe of them keeps
        # the candidates per query near nprobe * sqrt(N).
        self.lists = max(1, min(int(np.sqrt(count)), count // 39))
        self._quantizer = faiss.IndexFlatIP(dim)
        self._index = faiss.IndexIVFFlat(
            self._quantizer, dim, self.lists, faiss.METRIC_INNER_PRODUCT
        )
        sample = vectors
        if count > self.lists * 50:  # k-means needs tens of points per list, not all of them
            picks = np.random.default_rng(0).choice(count, self.lists * 50, replace=False)
            sample = vectors[np.sort(picks)]
        self._index.train(sample)
        self._index.add(vectors)
        self._index.make_direct_map()  # candidates are read back from the index: one copy
        self.set_nprobe(nprobe)

    def set_nprobe(self, nprobe: int) -> None:
        self._index.nprobe = min(nprobe, self.lists)

    def search(
        self, queries: np.ndarray, has_image: np.ndarray, has_text: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if not len(queries):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        _, candidates = self._index.search(np.ascontiguousarray(queries), CANDIDATES)
        valid = candidates >= 0  # fewer than CANDIDATES entries in the probed lists
        picked = np.where(valid, candidates, 0)
        entries = self._index.reconstruct_batch(picked.ravel()).reshape(*picked.shape, -1)
        dots = np.einsum("bd,bkd->bk", queries, entries)
        shared = has_image[:, None] * self.has_image[picked].astype(np.float32) + has_text[
            :, None
        ] * self.has_text[picked].astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.where(valid & (shared > 0), np.sqrt(2.0) * dots / shared, -np.inf)
        best_k = scores.argmax(axis=1)
        rows = np.arange(len(queries))
        return scores[rows, best_k].astype(np.float32), picked[rows, best_k].astype(np.int64)


def build_index(
    vectors: np.ndarray,
    image_dim: int,
    exact_max_entries: int,
    nprobe: int,
    threads: int | None = None,
) -> VectorIndex:
    if len(vectors) <= exact_max_entries:
        return ExactIndex(vectors, image_dim)
    return IvfIndex(vectors, image_dim, nprobe, threads)
