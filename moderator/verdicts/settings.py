"""Settings of the verdict consumer (`verdicts:` in the settings file, MODERATOR_VERDICTS__...).

The verdicts topic itself is `kafka.verdicts_topic`; Kafka connection, Redis and the author
state (`authors`) are the worker's own sections, so strikes land where the policy reads them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class VerdictSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group_id: str = Field(
        default="moderator-verdicts",
        min_length=1,
        description="Consumer group of the verdict consumers (not the workers' group).",
    )
    dlq_topic: str = Field(
        default="verdicts.dlq",
        min_length=1,
        description="Where records that are not valid verdicts go (reason invalid_verdict); "
        "apart from the posts' dead letters so a replay never feeds a verdict to the workers.",
    )
    training_rows_path: Path | None = Field(
        default=None,
        description="JSONL file each verdict appends a labelled row to (`moderator train` "
        "reads it); unset: no rows are written.",
    )
    seen_ttl_s: int = Field(
        default=30 * 24 * 3600,
        ge=60,
        description="How long a verdict id is remembered in Redis: a re-delivery within it has "
        "no second effect.",
    )
    key_prefix: str = Field(
        default="moderator:verdict:", min_length=1, description="Prefix of the verdict ids' keys."
    )
    categories: list[str] | None = Field(
        default=None,
        description="Categories the precision metrics count by name (others count as "
        "'other'); unset: the categories of the policy at policy_path.",
    )
    poll_timeout_ms: int = Field(default=500, ge=1)
    produce_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds to wait for the broker to ack corrections."
    )
    metrics_port: int | None = Field(
        default=9401, ge=0, le=65535, description="Port of /metrics; unset: none."
    )
