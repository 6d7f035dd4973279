"""The pipeline and model-serving dashboards (built by dashboards.py)."""

from __future__ import annotations

from typing import Any

from panels import (
    RATE,
    RAY_VARIABLES,
    WORKER_VARIABLES,
    Layout,
    R,
    Target,
    W,
    dashboard,
    quantiles,
    rate_of,
    stat,
    table,
    timeseries,
)


def pipeline() -> dict[str, Any]:
    lay = Layout()
    consumed = rate_of("moderator_posts_consumed_total")
    lay.add(
        stat("Posts in", "Records read from the posts topic per second.", consumed, "cps"), 4, 4
    )
    lay.add(
        stat(
            "Decisions out",
            "Decisions acknowledged by the broker per second.",
            rate_of("moderator_decisions_total"),
            "cps",
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Dead-letter share",
            "Dead-lettered records / records read (alert: ModeratorDeadLetterRateHigh).",
            f"{rate_of('moderator_dead_letters_total')} / {consumed}",
            "percentunit",
            [(None, "green"), (0.01, "orange"), (0.05, "red")],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "End-to-end p99",
            "Kafka record timestamp of the post → its decision acknowledged.",
            quantiles("moderator_end_to_end_latency_seconds", W, qs=(0.99,))[0].expr,
            "s",
            [(None, "green"), (5, "orange"), (30, "red")],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Consumer lag",
            "Records not yet fetched, summed over partitions (see the lag panel below).",
            f"sum (moderator_consumer_lag_records{{{W}}})",
            "short",
            [(None, "green"), (1000, "orange"), (10000, "red")],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Workers reporting",
            "Worker processes whose metrics Prometheus scrapes.",
            f"count (moderator_posts_consumed_total{{{W}}})",
        ),
        4,
        4,
    )

    lay.row("Flow")
    lay.add(
        timeseries(
            "Posts in, decisions out, dead letters",
            "In: records read. Out: decisions acknowledged. Dead letters: records the "
            "worker could not decode, sent to the dead-letter topic.",
            [
                Target(consumed, "posts in"),
                Target(rate_of("moderator_decisions_total"), "decisions out"),
                Target(rate_of("moderator_dead_letters_total"), "dead letters"),
            ],
            "cps",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Decisions by action",
            "Acknowledged decisions per second by action (allow < label < review < block).",
            [Target(rate_of("moderator_decisions_total", by="action"), "{{action}}")],
            "cps",
            stack=True,
        ),
        12,
        8,
    )

    lay.row("Latency")
    lay.add(
        timeseries(
            "End-to-end latency",
            "Kafka record timestamp (set by the producer) → decision acknowledged by the "
            "broker. Includes time waiting in the topic, so it grows with lag.",
            quantiles("moderator_end_to_end_latency_seconds", W),
            "s",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Stage latency p99 per micro-batch",
            "decode: validate and decode; cache: Redis lookups and request building; "
            "inference: waiting for the Classifier; policy: rules; produce: decisions "
            "sent → all acknowledged.",
            quantiles("moderator_stage_duration_seconds", W, by="stage", qs=(0.99,)),
            "s",
        ),
        12,
        8,
    )

    lay.row("Kafka")
    lay.add(
        timeseries(
            "Consumer lag by partition",
            "High watermark of the partition's latest fetch minus the consumer position, "
            "from the worker that owns it. Frozen while a partition is paused.",
            [
                Target(
                    f"sum by (topic, partition) (moderator_consumer_lag_records{{{W}}})",
                    "{{topic}}/{{partition}}",
                )
            ],
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "In-flight work and backpressure",
            "Records and micro-batches polled but not finished; partitions paused because "
            "worker.max_in_flight_batches or worker.max_in_flight_records was reached; "
            "partitions stuck at a record batch the worker cannot read (alert: "
            "ModeratorPartitionStuck).",
            [
                Target(f"sum (moderator_in_flight_records{{{W}}})", "records in flight"),
                Target(f"sum (moderator_in_flight_batches{{{W}}})", "batches in flight"),
                Target(f"sum (moderator_paused_partitions{{{W}}})", "paused partitions"),
                Target(f"sum (moderator_stuck_partitions{{{W}}})", "stuck partitions"),
            ],
        ),
        12,
        8,
    )

    lay.row("Errors")
    lay.add(
        timeseries(
            "Dead letters by reason",
            "Reason codes are moderator.errors.ReasonCode values.",
            [Target(rate_of("moderator_dead_letters_total", by="reason"), "{{reason}}")],
            "cps",
            stack=True,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Decided with problems by reason",
            "Posts decided from what could be read (an unreadable image, a cut caption, hidden"
            " characters, a key that is not the post_id): moderator.errors.PROBLEM_REASONS."
            " Not dead-lettered: a dead-lettered post is never moderated.",
            [Target(rate_of("moderator_post_problems_total", by="reason"), "{{reason}}")],
            "cps",
            stack=True,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Errors",
            "Model calls retried, offset commits refused (records re-delivered), record "
            "batches poll could not read (codec missing, corrupt; retried, never skipped), "
            "rule evaluation errors, feature-cache and author-state Redis errors.",
            [
                Target(rate_of("moderator_model_call_failures_total"), "model call failures"),
                Target(
                    rate_of("moderator_offset_commits_total", f'{W}, outcome="failed"'),
                    "failed commits",
                ),
                Target(rate_of("moderator_poll_errors_total"), "unreadable batches"),
                Target(rate_of("moderator_rule_errors_total"), "rule errors"),
                Target(
                    rate_of("moderator_cache_requests_total", f'{W}, result="error"'),
                    "cache errors",
                ),
                Target(rate_of("moderator_author_state_errors_total"), "author-state errors"),
            ],
            "cps",
        ),
        12,
        8,
    )
    return dashboard(
        "moderator-pipeline",
        "Moderator / Pipeline overview",
        "Posts in and decisions out, end-to-end latency, lag, dead letters and errors.",
        lay,
        WORKER_VARIABLES,
    )


def model_serving() -> dict[str, Any]:
    lay = Layout()
    lay.row("Worker side (moderator_*)")
    lay.add(
        timeseries(
            "Model calls and posts scored",
            "One Serve handle call per micro-batch of valid posts.",
            [
                Target(rate_of("moderator_batch_size_count"), "calls/s"),
                Target(rate_of("moderator_batch_size_sum"), "posts/s"),
            ],
            "cps",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Posts per model call",
            "Valid posts in each worker micro-batch (worker.batch_size caps it).",
            [
                *quantiles("moderator_batch_size", W, qs=(0.5, 0.95)),
                Target(
                    rate_of("moderator_batch_size_sum")
                    + " / "
                    + rate_of("moderator_batch_size_count"),
                    "mean",
                ),
            ],
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Inference latency per call (worker view)",
            "Submit → Classifier answer, as the worker sees it: Serve queueing, @serve.batch "
            "wait and the forward pass.",
            quantiles("moderator_stage_duration_seconds", f'{W}, stage="inference"'),
            "s",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Model call failures",
            "Failed Classifier calls, retried with backoff; nothing is committed meanwhile.",
            [Target(rate_of("moderator_model_call_failures_total"), "failures/s")],
            "cps",
        ),
        12,
        6,
    )
    lay.add(
        table(
            "Model version per worker",
            "Workers by the model version they decide with (moderator_model_info).",
            f"count by (version) (moderator_model_info{{{W}}})",
        ),
        12,
        6,
    )

    lay.row("Ray Serve (ray_serve_*)")
    lay.add(
        timeseries(
            "Classifier replicas",
            "Healthy replicas and the autoscaler's target.",
            [
                Target(
                    f"sum by (deployment) (ray_serve_deployment_replica_healthy{{{R}}})",
                    "{{deployment}} healthy",
                ),
                Target(
                    f"sum by (deployment) (ray_serve_autoscaling_target_replicas{{{R}}})",
                    "{{deployment}} target",
                ),
            ],
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Requests queued and ongoing",
            "Queued: waiting in the handle's router for a replica (max_queued_requests "
            "bounds it). Ongoing: sent to replicas, at most max_ongoing_requests each.",
            [
                Target(
                    f"sum by (deployment) (ray_serve_deployment_queued_queries{{{R}}})",
                    "{{deployment}} queued",
                ),
                Target(
                    f"sum by (deployment) (ray_serve_num_ongoing_requests_at_replicas{{{R}}})",
                    "{{deployment}} ongoing",
                ),
                Target(
                    f"sum by (deployment) (ray_serve_batch_queue_length{{{R}}})",
                    "{{deployment}} waiting in @serve.batch",
                ),
            ],
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Replica processing latency",
            "Time a replica spends on one request (one worker micro-batch), including the "
            "@serve.batch wait.",
            quantiles("ray_serve_deployment_processing_latency_ms", R),
            "ms",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Merged batch size (@serve.batch)",
            "Worker requests merged into one forward pass "
            "(serving.classifier.batching.max_batch_size caps it).",
            [
                *quantiles("ray_serve_actual_batch_size", R, qs=(0.5, 0.95)),
                Target(
                    f"{rate_of('ray_serve_actual_batch_size_sum', R)}"
                    f" / {rate_of('ray_serve_actual_batch_size_count', R)}",
                    "mean",
                ),
            ],
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Batch wait and forward pass p95",
            "Wait: how long requests waited for the batch to fill. Execution: the merged "
            "forward pass.",
            [
                Target(
                    f"histogram_quantile(0.95, sum by (le) (rate("
                    f"ray_serve_batch_wait_time_ms_bucket{{{R}}}[{RATE}])))",
                    "wait p95",
                ),
                Target(
                    f"histogram_quantile(0.95, sum by (le) (rate("
                    f"ray_serve_batch_execution_time_ms_bucket{{{R}}}[{RATE}])))",
                    "execution p95",
                ),
            ],
            "ms",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Replica requests, errors and utilisation",
            "Requests and exceptions per second across replicas; utilisation is the share "
            "of max_ongoing_requests capacity spent in user code.",
            [
                Target(
                    rate_of("ray_serve_deployment_request_counter_total", R, "deployment"),
                    "{{deployment}} requests/s",
                ),
                Target(
                    rate_of("ray_serve_deployment_error_counter_total", R, "deployment"),
                    "{{deployment}} errors/s",
                ),
                Target(
                    f"avg by (deployment) (ray_serve_replica_utilization_percent{{{R}}})",
                    "{{deployment}} utilisation %",
                ),
            ],
        ),
        8,
        8,
    )
    _replica_compute(lay)
    return dashboard(
        "moderator-model-serving",
        "Moderator / Model serving",
        "The Classifier as the workers see it (moderator_*) and as Ray Serve reports it "
        "(ray_serve_*, scraped from the Ray pods).",
        lay,
        WORKER_VARIABLES + RAY_VARIABLES,
    )


def _replica_compute(lay: Layout) -> None:
    """The replica's own figures (moderator/serving/replica_metrics.py), via Ray's agent."""
    lay.row("Replica compute (the Classifier's own metrics)")
    lay.add(
        timeseries(
            "Forward pass per merged batch",
            "Compute thread time of one merged batch until its scores are back in host "
            "memory (device time plus copies on CUDA), by device kind.",
            quantiles("ray_moderator_replica_forward_seconds", R, by="device"),
            "s",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Posts per forward pass",
            "Posts the replica scores in one forward pass: small batches on a busy GPU "
            "mean raise serving.classifier.batching.max_batch_size or worker.batch_size.",
            [
                *quantiles("ray_moderator_replica_forward_posts", R, qs=(0.5, 0.95)),
                Target(
                    f"{rate_of('ray_moderator_replica_forward_posts_sum', R)}"
                    f" / {rate_of('ray_moderator_replica_forward_posts_count', R)}",
                    "mean",
                ),
            ],
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "GPU utilisation and memory per replica",
            "NVML, sampled every 5 s; no series on CPU replicas. Idle while requests queue "
            "fires ModeratorReplicaGpuIdle.",
            [
                Target(
                    f"max by (replica) (ray_moderator_replica_gpu_utilization_ratio{{{R}}})",
                    "{{replica}} busy",
                ),
                Target(
                    f"max by (replica) (ray_moderator_replica_gpu_memory_used_bytes{{{R}}})"
                    f" / max by (replica) "
                    f"(ray_moderator_replica_gpu_memory_total_bytes{{{R}}})",
                    "{{replica}} memory used",
                ),
            ],
            "percentunit",
        ),
        8,
        8,
    )
