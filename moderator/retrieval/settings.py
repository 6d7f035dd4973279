"""Settings of the replica's semantic banks (serving.classifier.semantic in the settings file)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_EXACT_MAX_ENTRIES = 20_000


class SemanticBankSettings(BaseModel):
    """Which semantic banks a Classifier replica loads at start, and how it searches them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    banks: list[Path] = Field(
        default_factory=list,
        description="Bank directories built by `moderator bank import --semantic`; each is "
        "refused at start unless built with the serving model's version.",
    )
    exact_max_entries: int = Field(
        default=DEFAULT_EXACT_MAX_ENTRIES,
        ge=0,
        description="Banks up to this many entries are searched exactly (a matmul); larger "
        "ones through an IVF index (faiss). See docs/retrieval.md for the measured costs.",
    )
    nprobe: int = Field(
        default=8, ge=1, le=4096, description="IVF lists probed per query (recall vs cost)."
    )

    @field_validator("banks")
    @classmethod
    def _distinct(cls, banks: list[Path]) -> list[Path]:
        if len(set(banks)) != len(banks):
            raise ValueError("a bank path is listed twice")
        return banks
