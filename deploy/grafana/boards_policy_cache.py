"""The policy and cache dashboards (built by dashboards.py)."""

from __future__ import annotations

from typing import Any

from panels import (
    RATE,
    WORKER_VARIABLES,
    Layout,
    Target,
    W,
    bars,
    dashboard,
    quantiles,
    rate_of,
    stat,
    table,
    timeseries,
)

LIVE = f'{W}, mode="live"'


def policy() -> dict[str, Any]:
    lay = Layout()
    lay.add(
        timeseries(
            "Actions over time",
            "Acknowledged decisions per second by action.",
            [Target(rate_of("moderator_decisions_total", by="action"), "{{action}}")],
            "cps",
            stack=True,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Labels applied",
            "Decision labels per second (model categories and the policy's own labels).",
            [Target(rate_of("moderator_decision_labels_total", by="category"), "{{category}}")],
            "cps",
            stack=True,
        ),
        12,
        8,
    )
    lay.add(
        bars(
            "Top live rules (dashboard range)",
            "Live rules that fired most over the selected time range.",
            f'topk(10, sum by (rule) (increase(moderator_rule_hits_total{{{W}, mode="live"}}'
            "[$__range])))",
            "{{rule}}",
        ),
        8,
        9,
    )
    lay.add(
        bars(
            "Top shadow rules (dashboard range)",
            "Shadow rules that would have fired: candidates to make live (backtest first).",
            f'topk(10, sum by (rule) (increase(moderator_rule_hits_total{{{W}, mode="shadow"}}'
            "[$__range])))",
            "{{rule}}",
        ),
        8,
        9,
    )
    lay.add(
        timeseries(
            "Shadow vs live rule hits",
            "Rule hits per second by mode; a shadow rule never changes the action.",
            [Target(rate_of("moderator_rule_hits_total", by="mode"), "{{mode}}")],
            "cps",
        ),
        8,
        9,
    )
    lay.add(
        timeseries(
            "Top live rules over time",
            "The ten live rules firing most at each point in time, per second.",
            [Target(f"topk(10, {rate_of('moderator_rule_hits_total', LIVE, 'rule')})", "{{rule}}")],
            "cps",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Rule errors",
            "Rule evaluations that raised (the rule did not fire); guard optional fields.",
            [Target(rate_of("moderator_rule_errors_total", by="rule"), "{{rule}}")],
            "cps",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Policy reloads",
            "Hot reloads by outcome; invalid: rejected, the previous policy keeps deciding "
            "(alert: ModeratorPolicyReloadRejected).",
            [
                Target(
                    f"sum by (outcome) (increase(moderator_policy_reloads_total{{{W}}}[{RATE}]))",
                    "{{outcome}}",
                )
            ],
        ),
        8,
        8,
    )
    lay.add(
        table(
            "Policy version per worker",
            "Workers by the policy deciding now; two rows mean a reload has not reached "
            "every worker (or was rejected on some).",
            f"count by (name, version, digest) (moderator_policy_info{{{W}}})",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Rules by mode and author-state errors",
            "Rules in the current policy; Redis author-counter errors (counters read as 0).",
            [
                Target(f"max by (mode) (moderator_policy_rules{{{W}}})", "{{mode}} rules"),
                Target(rate_of("moderator_author_state_errors_total"), "author-state errors/s"),
            ],
        ),
        8,
        8,
    )
    verdicts(lay)
    return dashboard(
        "moderator-policy",
        "Moderator / Policy",
        "Actions, labels, rule hits (live and shadow), rule errors and policy reloads.",
        lay,
        WORKER_VARIABLES,
    )


# The verdict consumer's series (moderator verdicts): any job of the namespace, not only the
# workers' (the consumer is its own Deployment). Ratios divide by at least 1e-9, so an action
# or category no verdict has reached yet reads 0, never NaN.
V = 'namespace=~"$namespace"'


def _ratio(metric: str, part: str, by: str) -> str:
    whole = f"sum by ({by}) (increase({metric}{{{V}}}[$__range]))"
    return f"sum by ({by}) (increase({metric}{{{V}, {part}}}[$__range])) / clamp_min({whole}, 1e-9)"


def verdicts(lay: Layout) -> None:
    """Reviewers' verdicts against the automated actions (docs/reviewers.md)."""
    lay.row("Reviewers' verdicts")
    right = bars(
        "Actions reviewers confirmed (dashboard range)",
        "Verdicts finding a violation / all verdicts, by the automated decision's action: for "
        "block, how often block was right; for review, how often review was needed. 0 until "
        "a verdict on that action arrives.",
        _ratio("moderator_verdicts_total", 'outcome="violation"', "action"),
        "{{action}}",
    )
    precision = bars(
        "Per-category precision by action (dashboard range)",
        "Categories reviewers confirmed / confirmed or rejected, by the decision's action and "
        "category (categories outside the policy's count as other).",
        _ratio("moderator_verdict_categories_total", 'result="confirmed"', "action, category"),
        "{{action}} {{category}}",
    )
    for panel in (right, precision):
        panel["fieldConfig"]["defaults"].update({"unit": "percentunit", "max": 1})
        lay.add(panel, 8, 9)
    lay.add(
        timeseries(
            "Verdicts, appeals and strikes",
            "Verdicts applied by outcome, appeals by outcome (overturned: a corrected decision "
            "was emitted), strikes changed by verdicts, and records dead-lettered as invalid "
            "verdicts, per second.",
            [
                Target(rate_of("moderator_verdicts_total", V, "outcome"), "verdicts {{outcome}}"),
                Target(rate_of("moderator_appeals_total", V, "outcome"), "appeals {{outcome}}"),
                Target(
                    rate_of("moderator_verdict_strikes_total", V, "result"), "strikes {{result}}"
                ),
                Target(rate_of("moderator_invalid_verdicts_total", V), "invalid verdicts"),
            ],
            "cps",
        ),
        8,
        9,
    )


def cache() -> dict[str, Any]:
    lay = Layout()
    hits = rate_of("moderator_cache_requests_total", f'{W}, result="hit"')
    lookups = rate_of("moderator_cache_requests_total", f'{W}, result=~"hit|miss|corrupt"')
    hit_ratio = f"{hits} / {lookups}"
    metric = "moderator_cache_requests_total"
    hits_by_kind = rate_of(metric, f'{W}, result="hit"', by="kind")
    lookups_by_kind = rate_of(metric, f'{W}, result=~"hit|miss|corrupt"', by="kind")
    hit_ratio_by_kind = f"{hits_by_kind} / {lookups_by_kind}"
    lay.add(
        stat(
            "Hit ratio",
            "Embeddings (images and captions) found in the feature cache / looked up.",
            hit_ratio,
            "percentunit",
        ),
        6,
        4,
    )
    lay.add(
        stat(
            "Workers without Redis",
            "Workers whose last cache call failed (alert: ModeratorFeatureCacheUnavailable).",
            f"count (moderator_cache_available{{{W}}} == 0) or vector(0)",
            "short",
            [(None, "green"), (1, "red")],
        ),
        6,
        4,
    )
    lay.add(
        stat(
            "Cache errors",
            "Failed Redis calls per second (each counts as misses; decisions carry on).",
            rate_of("moderator_cache_requests_total", f'{W}, result="error"'),
            "cps",
            [(None, "green"), (0.001, "red")],
        ),
        6,
        4,
    )
    lay.add(
        stat(
            "Cache stage p99",
            "Redis lookups and request building per micro-batch.",
            quantiles("moderator_stage_duration_seconds", f'{W}, stage="cache"', qs=(0.99,))[
                0
            ].expr,
            "s",
        ),
        6,
        4,
    )
    lay.add(
        timeseries(
            "Hit ratio over time",
            "Per kind: reposted images and repeated captions hit; new ones miss and are "
            "stored after scoring.",
            [Target(hit_ratio_by_kind, "{{kind}}")],
            "percentunit",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Lookups by result",
            "hit, miss and corrupt are per image or caption embedding (corrupt: a value of "
            "the wrong size or not finite, treated as a miss); error is per failed Redis "
            "call and kind it carried.",
            [
                Target(
                    rate_of("moderator_cache_requests_total", by="kind, result"),
                    "{{kind}} {{result}}",
                )
            ],
            "cps",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Redis available per worker",
            "1 while the worker's last cache call succeeded, 0 after a failure (also 0 "
            "before the first call and when the cache is disabled).",
            [Target(f"min by (instance) (moderator_cache_available{{{W}}})", "{{instance}}")],
            minimum=0,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Cache stage latency",
            "Per micro-batch: Redis MGET of the batch's image hashes and request building.",
            quantiles("moderator_stage_duration_seconds", f'{W}, stage="cache"'),
            "s",
        ),
        12,
        8,
    )
    return dashboard(
        "moderator-cache",
        "Moderator / Feature cache",
        "Redis feature cache: hit ratio, lookups, errors and availability.",
        lay,
        WORKER_VARIABLES,
    )
