"""Every Prometheus metric moderator exports, in one place.

Names use the moderator_ prefix and base units (seconds, records); labels have
bounded values only (no post or user ids): actions, dead-letter reasons and
stages are enums, partitions are bounded by the topic, rule ids and decision
labels by the policy file. docs/observability.md is the catalogue.

Every label value known up front is declared at import (and the policy's rules
and labels when a policy is loaded, see `declare_policy`), so its series exists
at 0 before the first event: `rate()` and `increase()` then see the first
dead letter or rejected reload, and dashboards show 0 rather than "no data".
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, Info

from moderator.errors import PROBLEM_REASONS, ReasonCode, UnreadableReason
from moderator.schema import Action

_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
)  # fmt: skip
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

STAGES = ("decode", "signals", "cache", "inference", "policy", "produce")
# Embeddings (image, text) and the cached pool signals (moderator.signals).
CACHE_KINDS = ("image", "text", "ocr", "image_safety")
CACHE_RESULTS = ("hit", "miss", "corrupt", "error")
RELOAD_OUTCOMES = ("ok", "invalid")
COMMIT_OUTCOMES = ("ok", "failed")
# Why a fetched record batch could not be read (moderator.io.unreadable).
UNREADABLE_REASONS = tuple(reason.value for reason in UnreadableReason)
RULE_MODES = ("live", "shadow")

# -- flow through the worker ---------------------------------------------------------------
POSTS_CONSUMED = Counter("moderator_posts_consumed_total", "Records read from the posts topic.")
DECISIONS = Counter(
    "moderator_decisions_total", "Decisions produced and acknowledged, by action.", ["action"]
)
DECISION_LABELS = Counter(
    "moderator_decision_labels_total",
    "Labels carried by decisions when they are made, by label (model categories and the "
    "policy's own labels); a decision with two labels counts twice, one with none not at all.",
    ["category"],
)
DEAD_LETTERS = Counter(
    "moderator_dead_letters_total", "Records sent to the dead-letter topic, by reason.", ["reason"]
)
POST_PROBLEMS = Counter(
    "moderator_post_problems_total",
    "Problems of decided posts (parts read as absent, cut or cleaned), by reason code; a post "
    "with two problems counts twice.",
    ["reason"],
)
END_TO_END_SECONDS = Histogram(
    "moderator_end_to_end_latency_seconds",
    "Kafka record timestamp of the post to its decision acknowledged by the broker.",
    buckets=_LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "moderator_stage_duration_seconds",
    "Time per micro-batch in each pipeline stage (produce: decisions sent to all acked).",
    ["stage"],
    buckets=_STAGE_BUCKETS,
)
BATCH_SIZE = Histogram(
    "moderator_batch_size",
    "Valid posts per model call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
MODEL_CALL_FAILURES = Counter(
    "moderator_model_call_failures_total", "Classifier calls that failed and were retried."
)

# -- Kafka: lag, backpressure, commits -----------------------------------------------------
CONSUMER_LAG = Gauge(
    "moderator_consumer_lag_records",
    "Records in an assigned partition not yet fetched: the high watermark of the latest "
    "fetch minus the consumer position (updated at most once a second).",
    ["topic", "partition"],
)
IN_FLIGHT_RECORDS = Gauge(
    "moderator_in_flight_records", "Records polled and not yet finished (decided and acked)."
)
IN_FLIGHT_BATCHES = Gauge(
    "moderator_in_flight_batches", "Micro-batches polled and not yet finished."
)
PAUSED_PARTITIONS = Gauge(
    "moderator_paused_partitions", "Assigned partitions paused for backpressure."
)
COMMITS = Counter("moderator_offset_commits_total", "Offset commits by outcome.", ["outcome"])
POLL_ERRORS = Counter(
    "moderator_poll_errors_total",
    "Record batches poll could not read, by reason: the partition is paused at the batch and"
    " retried with back-off, never skipped.",
    ["reason"],
)
STUCK_PARTITIONS = Gauge(
    "moderator_stuck_partitions",
    "Assigned partitions held at a record batch the worker cannot read, by reason of the"
    " latest failure (readiness fails meanwhile).",
    ["reason"],
)

# -- feature cache -------------------------------------------------------------------------
CACHE_REQUESTS = Counter(
    "moderator_cache_requests_total",
    "Feature cache lookups by kind (image, text embeddings; ocr, image_safety signal "
    "outputs) and result: hit, miss, corrupt per item; error per failed Redis call and kind.",
    ["kind", "result"],
)
CACHE_AVAILABLE = Gauge("moderator_cache_available", "1 while Redis answers, 0 while it does not.")

# -- policy engine (rule ids are bounded by the policy files a deployment loads) ------------
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
POLICY_RULES = Gauge(
    "moderator_policy_rules", "Rules of the policy deciding now, by mode.", ["mode"]
)
AUTHOR_STATE_ERRORS = Counter(
    "moderator_author_state_errors_total",
    "Redis author-state calls that failed (counters read as zero meanwhile).",
)
# Flood quarantine (moderator.policy.quarantine): a flooding live rule decides as shadow.
RULE_QUARANTINES = Counter(
    "moderator_rule_quarantines_total",
    "Flood quarantines started, by rule id (counted by the worker that started it).",
    ["rule"],
)
QUARANTINED_RULES = Gauge(
    "moderator_quarantined_rules",
    "Rules this worker decides as shadow because they are quarantined for a flood.",
)
QUARANTINE_ERRORS = Counter(
    "moderator_quarantine_errors_total",
    "Redis flood-quarantine calls that failed (no rule is quarantined meanwhile).",
)

# -- reviewers' verdicts (moderator.verdicts; category values: the policy's categories + other)
VERDICT_OUTCOMES = ("violation", "no_violation")
VERDICT_CATEGORY_RESULTS = ("confirmed", "rejected")
APPEAL_OUTCOMES = ("overturned", "upheld")
STRIKE_CHANGES = ("added", "removed")
TRAINING_ROW_RESULTS = ("written", "no_content", "no_category", "off")
# Verdict categories outside the policy's (the label stays bounded whatever reviewers send).
OTHER_CATEGORY = "other"
VERDICTS = Counter(
    "moderator_verdicts_total",
    "Reviewers' verdicts applied (a re-delivery counts once), by the action the automated "
    "decision took and the reviewer's outcome: violation/all of action block is how often "
    "block was right; of action review, how often review was needed.",
    ["action", "outcome"],
)
VERDICT_CATEGORIES = Counter(
    "moderator_verdict_categories_total",
    "Categories of decisions that reviewers confirmed or rejected, by the decision's action, "
    "category and result: confirmed / (confirmed + rejected) is the per-category precision.",
    ["action", "category", "result"],
)
APPEALS = Counter(
    "moderator_appeals_total",
    "Appeal verdicts by outcome: overturned (a corrected decision was emitted) or upheld.",
    ["outcome"],
)
VERDICT_STRIKES = Counter(
    "moderator_verdict_strikes_total",
    "Author strikes changed by verdicts, by result (added, removed).",
    ["result"],
)
VERDICT_TRAINING_ROWS = Counter(
    "moderator_verdict_training_rows_total",
    "Verdicts by what became of their training row: written, or skipped (no_content: neither "
    "caption nor image digest; no_category: a violation with no confirmed category; off: no "
    "rows file set).",
    ["result"],
)
VERDICT_DUPLICATES = Counter(
    "moderator_verdict_duplicates_total",
    "Verdicts seen again (re-delivered, same verdict_id) and skipped: no second effect.",
)
# Not moderator_dead_letters_total: that one is per post consumed (ModeratorDeadLetterRateHigh).
INVALID_VERDICTS = Counter(
    "moderator_invalid_verdicts_total",
    "Records of the verdicts topic that are not valid verdicts, sent to its dead-letter topic "
    "(reason invalid_verdict) and acknowledged.",
)

# -- versions (one series each; the labels change when the version does) --------------------
MODEL_INFO = Info("moderator_model", "The model the worker's decisions come from.")
POLICY_INFO = Info("moderator_policy", "The policy deciding now (changes on hot reload).")


def _declare() -> None:
    for action in Action:
        DECISIONS.labels(action=action.value)
    for reason in ReasonCode:
        DEAD_LETTERS.labels(reason=reason.value)
    for reason in PROBLEM_REASONS:
        POST_PROBLEMS.labels(reason=reason.value)
    for stage in STAGES:
        STAGE_SECONDS.labels(stage=stage)
    for kind in CACHE_KINDS:
        for result in CACHE_RESULTS:
            CACHE_REQUESTS.labels(kind=kind, result=result)
    for outcome in RELOAD_OUTCOMES:
        POLICY_RELOADS.labels(outcome=outcome)
    for outcome in COMMIT_OUTCOMES:
        COMMITS.labels(outcome=outcome)
    for unreadable in UNREADABLE_REASONS:
        POLL_ERRORS.labels(reason=unreadable)
        STUCK_PARTITIONS.labels(reason=unreadable)
    for action in Action:
        for verdict_outcome in VERDICT_OUTCOMES:
            VERDICTS.labels(action=action.value, outcome=verdict_outcome)
    for appeal in APPEAL_OUTCOMES:
        APPEALS.labels(outcome=appeal)
    for change in STRIKE_CHANGES:
        VERDICT_STRIKES.labels(result=change)
    for row_result in TRAINING_ROW_RESULTS:
        VERDICT_TRAINING_ROWS.labels(result=row_result)
    declare_verdict_categories([OTHER_CATEGORY])


def declare_verdict_categories(categories: Iterable[str]) -> None:
    """A 0 series per (action, category, result) the verdict consumer counts."""
    for action in Action:
        for category in categories:
            for result in VERDICT_CATEGORY_RESULTS:
                VERDICT_CATEGORIES.labels(action=action.value, category=category, result=result)


def set_model_info(version: str) -> None:
    MODEL_INFO.info({"version": version})


def declare_policy(
    name: str,
    version: str,
    digest: str,
    rules: Iterable[tuple[str, str]],
    labels: Iterable[str],
) -> None:
    """Publish the policy deciding now: its version, rule counts by mode, and a 0 series for
    each of its rules (`rules` as (rule id, mode) pairs) and decision labels."""
    POLICY_INFO.info({"name": name, "version": version, "digest": digest[:12]})
    counts = dict.fromkeys(RULE_MODES, 0)
    for rule_id, mode in rules:
        RULE_HITS.labels(rule=rule_id, mode=mode)
        RULE_ERRORS.labels(rule=rule_id)
        RULE_QUARANTINES.labels(rule=rule_id)
        counts[mode] = counts.get(mode, 0) + 1
    for mode, count in counts.items():
        POLICY_RULES.labels(mode=mode).set(count)
    for label in labels:
        DECISION_LABELS.labels(category=label)


_declare()
