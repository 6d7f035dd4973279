"""Which verdicts, and which of their non-idempotent effects, are done: Redis keys with a TTL.

Per verdict id and step, one key set with SET NX EX once the step's effect is durable:
`correction` (the corrected decision acked by the broker), `row` (the training row flushed
and fsynced) and `done` (every effect applied; a verdict seen again after this is skipped).
A consumer killed between an effect and its mark redoes that effect on re-delivery: the
strike is idempotent by itself (a sorted-set member), the other two are not, which is what
the marks narrow down to that window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

import redis


class Step(StrEnum):
    CORRECTION = "correction"
    ROW = "row"
    DONE = "done"


class VerdictLedger:
    def __init__(self, client: redis.Redis[bytes], key_prefix: str, ttl_s: int) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.ttl_s = ttl_s

    def _key(self, verdict_id: str, step: Step) -> str:
        return f"{self.key_prefix}{verdict_id}:{step.value}"

    def steps_done(self, verdict_ids: Sequence[str]) -> list[set[Step]]:
        """Per verdict id, the steps already marked (one round trip)."""
        if not verdict_ids:
            return []
        keys = [self._key(vid, step) for vid in verdict_ids for step in Step]
        values = self.client.mget(keys)
        steps = list(Step)
        return [
            {step for j, step in enumerate(steps) if values[i * len(steps) + j] is not None}
            for i in range(len(verdict_ids))
        ]

    def mark(self, verdict_ids: Iterable[str], step: Step) -> None:
        """Mark a step done for these verdicts (SET NX with the TTL; one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for verdict_id in verdict_ids:
            pipe.set(self._key(verdict_id, step), b"1", nx=True, ex=self.ttl_s)
        if len(pipe):
            pipe.execute()
