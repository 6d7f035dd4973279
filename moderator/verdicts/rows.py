"""The training rows file: JSONL appended in batches, flushed and fsynced before a commit."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

_TAIL_BYTES = 1024 * 1024


class TrainingRows:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_partial_line()

    def _drop_partial_line(self) -> None:
        """Cut a last line left unfinished by a killed process (its verdict was not marked
        `row`, so the line is written again on re-delivery); `moderator train` then reads
        every line."""
        if not self.path.exists():
            return
        with self.path.open("r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            start = max(0, size - _TAIL_BYTES)
            f.seek(start)
            tail = f.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            keep = start + cut + 1 if cut >= 0 else start
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        logger.warning("%s: dropped an unfinished last line (%d bytes)", self.path, size - keep)

    def append(self, lines: Iterable[bytes]) -> int:
        """Append the lines and return once they are on disk (flush + fsync)."""
        data = b"".join(lines)
        if not data:
            return 0
        with self.path.open("ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return len(data)
