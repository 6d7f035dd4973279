"""Embeddings a replica computed lately, by content key.

The Redis cache only learns an embedding after its batch is scored, so a repost that
arrives while its original is still in flight (up to worker.max_in_flight_batches
batches per worker, merged by @serve.batch) would be encoded again. The replica sees
every batch, so it keeps the last few thousand embeddings it computed and reuses them;
within one merged batch each key is encoded once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

Encode = Callable[[list[int]], np.ndarray]  # positions of items to encode → [n, dim]


class RecentEmbeddings:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
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
        if self.capacity <= 0:
            return
        self._entries[key] = vector.copy()
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
