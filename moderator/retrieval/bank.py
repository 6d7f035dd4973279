"""The semantic bank format: a directory holding the vectors and what they were built with.

    NAME/
      vectors.safetensors   "vectors": float32 [entries, image_dim + text_dim] (joint.py)
      bank.json             name, model_version, entries, created, dims, vector recipe, ids

A bank is only meaningful next to the model that embedded it: the replica refuses one whose
model version differs from the serving model's (`check_model_version`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from safetensors.numpy import load_file, save_file

FORMAT_VERSION = 1
VECTOR_RECIPE = (
    "joint-v1: [image/|image| | text/|text|] / sqrt(2), a missing side zeros (docs/retrieval.md)"
)
VECTORS_FILE = "vectors.safetensors"
META_FILE = "bank.json"
BANK_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SemanticBankError(ValueError):
    """A semantic bank cannot be built, read or served; the message names the bank."""


def base_version(model_version: str) -> str:
    """The checkpoint's version without the replica's arithmetic suffix ("+cuda-fp16", ...)."""
    return model_version.split("+", 1)[0]


@dataclass(frozen=True, slots=True)
class SemanticBank:
    name: str
    model_version: str
    image_dim: int
    text_dim: int
    vectors: np.ndarray  # float32 [entries, image_dim + text_dim]
    ids: list[str]  # per entry: where it came from (file name or the JSONL row's id)
    created: str = ""
    path: Path | None = None

    def __post_init__(self) -> None:
        if not BANK_NAME_PATTERN.match(self.name):
            raise SemanticBankError(
                f"semantic bank name {self.name!r}: letters, digits, '_', '.', '-' only"
            )
        expected = (len(self.ids), self.image_dim + self.text_dim)
        if self.vectors.dtype != np.float32 or self.vectors.shape != expected:
            raise SemanticBankError(
                f"semantic bank {self.name}: vectors are {self.vectors.dtype} "
                f"{self.vectors.shape}, expected float32 {expected}"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def check_model_version(self, serving_version: str) -> None:
        """Refuse unless built with the serving checkpoint. The arithmetic suffix may differ
        (a bank built on CPU fp32 serves on "+cuda-fp16"): it moves cosines by ~1e-3, far
        below any useful threshold step; docs/retrieval.md says so."""
        if base_version(self.model_version) != base_version(serving_version):
            where = f" ({self.path})" if self.path is not None else ""
            raise SemanticBankError(
                f"semantic bank {self.name}{where} was built with model {self.model_version}, "
                f"but the replica serves {serving_version}: rebuild it with `moderator bank "
                f"import --semantic {self.name} ... --checkpoint <the serving checkpoint>`"
            )

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        save_file({"vectors": np.ascontiguousarray(self.vectors)}, str(directory / VECTORS_FILE))
        meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "model_version": self.model_version,
            "entries": len(self),
            "created": self.created or datetime.now(UTC).isoformat(timespec="seconds"),
            "image_dim": self.image_dim,
            "text_dim": self.text_dim,
            "vector": VECTOR_RECIPE,
            "ids": self.ids,
        }
        (directory / META_FILE).write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
        return directory


def load_bank(directory: str | Path) -> SemanticBank:
    """Read a bank directory; every problem is a SemanticBankError naming the path."""
    path = Path(directory)
    try:
        meta = orjson.loads((path / META_FILE).read_bytes())
        vectors = load_file(str(path / VECTORS_FILE))["vectors"]
    except (OSError, orjson.JSONDecodeError, KeyError) as exc:
        raise SemanticBankError(f"semantic bank {path}: cannot read it ({exc})") from exc
    except Exception as exc:  # safetensors raises its own error type for a corrupt file
        raise SemanticBankError(f"semantic bank {path}: {VECTORS_FILE} is unreadable") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise SemanticBankError(
            f"semantic bank {path}: {META_FILE} is not format_version {FORMAT_VERSION}"
        )
    try:
        bank = SemanticBank(
            name=str(meta["name"]),
            model_version=str(meta["model_version"]),
            image_dim=int(meta["image_dim"]),
            text_dim=int(meta["text_dim"]),
            vectors=vectors,
            ids=[str(i) for i in meta["ids"]],
            created=str(meta.get("created", "")),
            path=path,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SemanticBankError(f"semantic bank {path}: {META_FILE}: {exc}") from exc
    if int(meta.get("entries", -1)) != len(bank):
        raise SemanticBankError(
            f"semantic bank {path}: {META_FILE} says {meta.get('entries')} entries, "
            f"the vectors hold {len(bank)}"
        )
    if not len(bank):
        raise SemanticBankError(f"semantic bank {path}: it has no entries")
    return bank
