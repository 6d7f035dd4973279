"""Settings of flood quarantine (`quarantine:` in the settings file, Helm `quarantine.*`).

Apart from moderator.policy.quarantine, which uses them: moderator.config imports this module,
and importing anything under moderator.policy from there would import moderator.config back.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# moderator.policy.document.RULE_ID_PATTERN (not imported, see above; a unit test compares).
RuleId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]


class QuarantineSettings(BaseModel):
    """A live rule whose hit rate jumps far above its own recent baseline is moved to shadow
    for `cool_off_s` (moderator.policy.quarantine; docs/policy.md#flood-quarantine)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=False,
        description="Watch live rules' hit rates and quarantine floods (needs redis.url). Off "
        "by default: a rule tripped by a real attack is quarantined too, so list the rules "
        "that must always enforce in exempt_rules before turning it on.",
    )
    bucket_s: int = Field(
        default=60, ge=1, le=3600, description="Fire counters are kept per bucket of this many s."
    )
    current_window_s: int = Field(
        default=300, ge=1, description="The recent window whose hit rate is judged, in seconds."
    )
    baseline_window_s: int = Field(
        default=3600,
        ge=1,
        description="The window just before the current one that gives the rule's baseline.",
    )
    factor: float = Field(
        default=10.0,
        gt=1,
        description="Quarantine when the current rate is over factor x baseline.",
    )
    min_volume: int = Field(
        default=200, ge=1, description="...and the rule fired at least this often in the window."
    )
    cool_off_s: int = Field(
        default=1800, ge=1, description="How long a quarantined rule stays in shadow, in seconds."
    )
    check_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="How often a worker sends its counts, reads the quarantined rules and the "
        "windows, and judges (0: every batch); at most bucket_s.",
    )
    exempt_rules: list[RuleId] = Field(
        default_factory=list, description="Rule ids never quarantined."
    )
    key_prefix: str = Field(
        default="moderator:quarantine:",
        min_length=1,
        description="Prefix of the Redis keys; the consumer group id follows it.",
    )
    retry_after_s: float = Field(
        default=5.0, ge=0, description="After a Redis failure, leave Redis alone this long."
    )

    @model_validator(mode="after")
    def _whole_buckets(self) -> QuarantineSettings:
        for name in ("current_window_s", "baseline_window_s"):
            if getattr(self, name) % self.bucket_s:
                raise ValueError(f"{name} must be a multiple of bucket_s ({self.bucket_s})")
        if self.baseline_window_s < self.current_window_s:
            raise ValueError("baseline_window_s must be at least current_window_s")
        if self.check_interval_s > self.bucket_s:
            # Counts are sent at each check into the bucket of that moment.
            raise ValueError(f"check_interval_s must be at most bucket_s ({self.bucket_s})")
        return self
