"""Every Prometheus metric moderator exports, in one place.

Names use the moderator_ prefix and base units; labels have bounded values only
(no post or user ids).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

POSTS_CONSUMED = Counter("moderator_posts_consumed_total", "Records read from the posts topic.")
DECISIONS = Counter(
    "moderator_decisions_total", "Decisions produced and acknowledged, by action.", ["action"]
)
DEAD_LETTERS = Counter(
    "moderator_dead_letters_total", "Records sent to the dead-letter topic, by reason.", ["reason"]
)
END_TO_END_SECONDS = Histogram(
    "moderator_end_to_end_latency_seconds",
    "Kafka record timestamp of the post to its decision acknowledged by the broker.",
    buckets=_LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "moderator_stage_duration_seconds",
    "Time per micro-batch in each pipeline stage.",
    ["stage"],
    buckets=_STAGE_BUCKETS,
)
BATCH_SIZE = Histogram(
    "moderator_batch_size",
    "Valid posts per model call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
CACHE_REQUESTS = Counter(
    "moderator_cache_requests_total",
    "Feature cache lookups by result (hit, miss, corrupt, error).",
    ["result"],
)
CACHE_AVAILABLE = Gauge("moderator_cache_available", "1 while Redis answers, 0 while it does not.")
MODEL_CALL_FAILURES = Counter(
    "moderator_model_call_failures_total", "Classifier calls that failed and were retried."
)
IN_FLIGHT_RECORDS = Gauge(
    "moderator_in_flight_records", "Records polled and not yet finished (decided and acked)."
)
PAUSED_PARTITIONS = Gauge(
    "moderator_paused_partitions", "Assigned partitions paused for backpressure."
)
COMMITS = Counter("moderator_offset_commits_total", "Offset commits by outcome.", ["outcome"])

# Policy engine. Rule ids are bounded by the policy files a deployment loads.
POLICY_RELOADS = Counter(
    "moderator_policy_reloads_total",
    "Policy hot reloads by outcome (ok, invalid: the old policy keeps deciding).",
    ["outcome"],
)
RULE_HITS = Counter(
    "moderator_rule_hits_total", "Policy rules that fired, by rule id and mode.", ["rule", "mode"]
)
RULE_ERRORS = Counter(
    "moderator_rule_errors_total",
    "Rule evaluations that raised a CEL error (the rule did not fire), by rule id.",
    ["rule"],
)
AUTHOR_STATE_ERRORS = Counter(
    "moderator_author_state_errors_total",
    "Redis author-state calls that failed (counters read as zero meanwhile).",
)
