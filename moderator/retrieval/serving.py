"""The replica's semantic banks: loaded and checked at start, searched for every batch."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from moderator.retrieval.bank import SemanticBank, SemanticBankError, load_bank
from moderator.retrieval.index import VectorIndex, build_index
from moderator.retrieval.joint import query_vectors
from moderator.retrieval.settings import SemanticBankSettings
from moderator.serving.messages import SemanticMatches

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServedBank:
    bank: SemanticBank
    index: VectorIndex


class SemanticBanks:
    """Every configured bank with its index; `search` answers one batch for all of them."""

    def __init__(
        self,
        banks: Iterable[SemanticBank],
        settings: SemanticBankSettings,
        threads: int | None = None,
    ) -> None:
        self.served: dict[str, ServedBank] = {}
        for bank in banks:
            if bank.name in self.served:
                raise SemanticBankError(
                    f"two semantic banks are named {bank.name} "
                    f"({self.served[bank.name].bank.path} and {bank.path})"
                )
            index = build_index(
                bank.vectors, bank.image_dim, settings.exact_max_entries, settings.nprobe, threads
            )
            self.served[bank.name] = ServedBank(bank, index)

    def __bool__(self) -> bool:
        return bool(self.served)

    def entries(self) -> dict[str, int]:
        return {name: len(served.bank) for name, served in self.served.items()}

    def search(
        self, image: np.ndarray, has_image: np.ndarray, text: np.ndarray, has_text: np.ndarray
    ) -> dict[str, SemanticMatches]:
        """Each row's best similarity and nearest entry id per bank (joint.py's vectors)."""
        if not self.served:
            return {}
        queries, image_side, text_side = query_vectors(image, has_image, text, has_text)
        out: dict[str, SemanticMatches] = {}
        for name, served in self.served.items():
            best, where = served.index.search(queries, image_side, text_side)
            found = np.isfinite(best)
            similarity = np.where(found, np.clip(best, -1.0, 1.0), 0.0).astype(np.float32)
            ids = served.bank.ids
            nearest = [
                ids[i] if ok else "" for i, ok in zip(where.tolist(), found.tolist(), strict=True)
            ]
            out[name] = SemanticMatches(similarity, nearest)
        return out


def load_semantic_banks(
    settings: SemanticBankSettings,
    model_version: str,
    dims: tuple[int, int],
    threads: int | None = None,
) -> SemanticBanks:
    """Load and check every configured bank; raises SemanticBankError naming the bank."""
    banks = []
    for path in settings.banks:
        bank = load_bank(path)
        bank.check_model_version(model_version)
        if (bank.image_dim, bank.text_dim) != dims:
            raise SemanticBankError(
                f"semantic bank {bank.name} ({path}): dims {(bank.image_dim, bank.text_dim)}, "
                f"the serving model's are {dims}"
            )
        if bank.model_version != model_version:
            logger.warning(
                "semantic bank %s was built with %s; serving %s (same checkpoint, other "
                "arithmetic: similarities move by ~1e-3)",
                bank.name,
                bank.model_version,
                model_version,
            )
        banks.append(bank)
    served = SemanticBanks(banks, settings, threads)
    for name, served_bank in served.served.items():
        logger.info(
            "semantic bank %s: %d entries, %s search",
            name,
            len(served_bank.bank),
            served_bank.index.kind,
        )
    return served
