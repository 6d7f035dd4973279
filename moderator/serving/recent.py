"""Embeddings a replica computed lately, by content key.

The Redis cache only learns an embedding after its batch is scored, so a repost that
arrives while its original is still in flight (up to worker.max_in_flight_batches
batches per worker, merged by @serve.batch) would be encoded again. The replica sees
every batch, so it keeps the last few thousand embeddings it computed and reuses them;
within one merged batch each key is encoded once.

It is bounded twice: by entries and by bytes. A pooled embedding is a few KiB, but a
single-stream model's image "embedding" is its grid features (49 x 1280 floats, 245 KiB at
7 x 7), where the entry count alone would let 4,096 of them take a GiB.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

Encode = Callable[[list[int]], np.ndarray]  # positions of items to encode → [n, dim]


class RecentEmbeddings:
    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        """Keep at most `capacity` entries (0: none) taking at most `max_bytes` (None: no
        byte bound); the least recently used go first."""
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0  # held now
        self._entries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.reused = 0  # entries served without encoding, since start

    def embed(self, kind: str, keys: Sequence[str], encode: Encode, dim: int) -> np.ndarray:
        """Embeddings [len(keys), dim] in key order, encoding only keys not held yet."""
        out = np.empty((len(keys), dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        for position, key in enumerate(keys):
            entry = self._entries.get((kind, key))
            if entry is None:
                missing.setdefault(key, []).append(position)
            else:
                self._entries.move_to_end((kind, key))
                out[position] = entry
                self.reused += 1
        if missing:
            firsts = [positions[0] for positions in missing.values()]
            fresh = np.asarray(encode(firsts), dtype=np.float32).reshape(len(firsts), dim)
            for vector, (key, positions) in zip(fresh, missing.items(), strict=True):
                out[positions] = vector
                self.reused += len(positions) - 1
                self._remember((kind, key), vector)
        return out

    def _remember(self, key: tuple[str, str], vector: np.ndarray) -> None:
        if self.capacity <= 0 or (self.max_bytes is not None and vector.nbytes > self.max_bytes):
            return
        self._entries[key] = vector.copy()
        self.bytes += vector.nbytes
        while len(self._entries) > self.capacity or (
            self.max_bytes is not None and self.bytes > self.max_bytes
        ):
            self.bytes -= self._entries.popitem(last=False)[1].nbytes
