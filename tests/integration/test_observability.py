"""What operators see, checked against the real thing.

One short run: a worker on a thread (the KeywordScorer stand-in model, made a little
slow so lag and backpressure show), the session's real broker and Redis, a policy
that is hot-reloaded twice (accepted, then rejected), the worker's own /metrics
endpoint, and a real Prometheus server scraping it every second with the alert rules
of deploy/prometheus/ loaded. Then every query of every dashboard in deploy/grafana/
goes through Prometheus's HTTP API and must return data.

Ray Serve panels cannot get data from this run (no Ray here): Prometheus scrapes a
second target serving tests/data/ray_serve_metrics.prom, an exposition recorded from
Ray (see tests/data/record_ray_serve_metrics.py), so their metric names and labels
are checked too; their values are static, so only "returns a series" is asserted.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from kafka import TopicPartition
from prometheus_client import REGISTRY

from moderator.cache import FeatureCache
from moderator.config import Settings, WorkerSettings
from moderator.demo.collect import collect
from moderator.demo.samples import SampleRecord
from moderator.io import create_consumer, create_producer
from moderator.local import LocalBroker, LocalRedis, free_port
from moderator.local.stack import create_topics
from moderator.policy import PolicyService, PolicyWatcher
from moderator.serving import ScoreRequest, ScoreResponse
from tests.conftest import settings_for
from tests.integration.prometheus_server import PrometheusServer
from tests.integration.test_worker_delivery import KeywordScorer, _produce
from tests.paths import DEFAULT_POLICY, REPO
from workers.health import WorkerHealth, serve_http
from workers.moderation_worker import ModerationWorker

pytestmark = pytest.mark.integration

DASHBOARDS = sorted((REPO / "deploy" / "grafana").glob("*.json"))
ALERT_RULES = sorted((REPO / "deploy" / "prometheus").glob("*.yaml"))
RAY_SNAPSHOT = REPO / "tests" / "data" / "ray_serve_metrics.prom"
WORKER_JOB, RAY_JOB = "moderator-worker", "ray"
# Grafana's variables as the test resolves them: "All" for every filter; windows that
# cover the whole run (it lasts well under a minute).
VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "1s",
    "__range": "5m",
    "namespace": ".*",
    "job": ".*",
    "application": ".*",
    "deployment": ".*",
}


class SlowKeywordScorer(KeywordScorer):
    """The stand-in model, 0.2 s per call: the run lasts a few seconds and builds lag."""

    def score(self, request: ScoreRequest) -> ScoreResponse:
        time.sleep(0.2)
        return super().score(request)


@dataclass
class ObservedRun:
    prometheus: PrometheusServer
    settings: Settings
    samples: list[SampleRecord]
    ends: dict[TopicPartition, int]
    before: dict[str, float]
    log_lines: list[str]
    max_lag: dict[int, float] = field(default_factory=dict)


def _registry_sum(sample_name: str, **labels: str) -> float:
    """Sum of one sample over the process registry (what /metrics shows)."""
    total = 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == sample_name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


COUNTED = {
    "consumed": ("moderator_posts_consumed_total", {}),
    "decided": ("moderator_decisions_total", {}),
    "dead_lettered": ("moderator_dead_letters_total", {}),
    "end_to_end": ("moderator_end_to_end_latency_seconds_count", {}),
    "produce_batches": ("moderator_stage_duration_seconds_count", {"stage": "produce"}),
    "cache_hits": ("moderator_cache_requests_total", {"result": "hit"}),
    "reloads_ok": ("moderator_policy_reloads_total", {"outcome": "ok"}),
    "reloads_invalid": ("moderator_policy_reloads_total", {"outcome": "invalid"}),
}


def _settings(broker: LocalBroker, redis_server: LocalRedis, policy: Path) -> Settings:
    base = settings_for(broker, redis_server)
    worker = WorkerSettings(
        metrics_port=None, batch_size=16, max_in_flight_batches=1, log_decisions=True
    )
    return base.model_copy(update={"worker": worker, "policy_path": policy})


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _serve_file(path: Path) -> ThreadingHTTPServer:
    body = path.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _lag_sampler(topic: str, stop: threading.Event, seen: dict[int, float]) -> None:
    while not stop.wait(0.05):
        for partition in range(4):
            value = REGISTRY.get_sample_value(
                "moderator_consumer_lag_records", {"topic": topic, "partition": str(partition)}
            )
            if value is not None:
                seen[partition] = max(seen.get(partition, 0.0), value)


@pytest.fixture(scope="module")
def observed(
    broker: LocalBroker, redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ObservedRun]:
    policies = tmp_path_factory.mktemp("observed") / "policies"
    shutil.copytree(DEFAULT_POLICY.parent, policies)
    policy_file = policies / DEFAULT_POLICY.name
    settings = _settings(broker, redis_server, policy_file)
    create_topics(settings)
    samples, ends = _produce(settings, 240)
    before = {key: _registry_sum(name, **labels) for key, (name, labels) in COUNTED.items()}

    capture = _Capture()
    root = logging.getLogger()
    quiet = [(logger, logger.level) for logger in (root, *map(logging.getLogger, ["kafka"]))]
    loud = [(logging.getLogger(n), logging.getLogger(n).level) for n in ("moderator", "workers")]
    root.addHandler(capture)
    root.setLevel(logging.INFO)
    logging.getLogger("kafka").setLevel(logging.INFO)
    for logger, _ in loud:
        logger.setLevel(logging.DEBUG)

    health = WorkerHealth(stall_after_s=60)
    worker_http = serve_http(health, free_port(), host="127.0.0.1")
    ray_http = _serve_file(RAY_SNAPSHOT)
    watcher = PolicyWatcher(policy_file, interval_s=0.2).start()
    cache = FeatureCache.from_url(redis_server.url, "keyword-1", {"image": 4, "text": 4}, 600, 1.0)
    worker = ModerationWorker(
        settings,
        create_consumer(settings.kafka),
        create_producer(settings.kafka),
        SlowKeywordScorer(),
        PolicyService(watcher),
        cache,
        health,
    )
    stop, sampler_stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    max_lag: dict[int, float] = {}

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # surfaced by the tests
            errors.append(exc)
        finally:
            worker.consumer.close(autocommit=False)
            worker.producer.close()

    targets = {
        WORKER_JOB: f"127.0.0.1:{worker_http.server_address[1]}",
        RAY_JOB: f"127.0.0.1:{ray_http.server_address[1]}",
    }
    thread = threading.Thread(target=run, name="observed-worker", daemon=True)
    sampler = threading.Thread(
        target=_lag_sampler, args=(settings.kafka.posts_topic, sampler_stop, max_lag), daemon=True
    )
    try:
        with PrometheusServer(targets, rule_files=ALERT_RULES) as prometheus:
            thread.start()
            sampler.start()
            valid = sum(s.valid for s in samples)
            collected = collect(settings.kafka, valid, len(samples) - valid, timeout_s=60)
            assert len(collected.decisions) == valid and not errors
            _reload_twice(policy_file, before)
            sampler_stop.set()
            yield ObservedRun(prometheus, settings, samples, ends, before, capture.lines, max_lag)
    finally:
        sampler_stop.set()
        stop.set()
        thread.join(timeout=30)
        watcher.stop()
        worker_http.shutdown()
        ray_http.shutdown()
        root.removeHandler(capture)
        for logger, level in quiet + loud:
            logger.setLevel(level)
    assert not errors


def _count(key: str) -> float:
    name, labels = COUNTED[key]
    return _registry_sum(name, **labels)


def _reload_twice(policy_file: Path, before: dict[str, float]) -> None:
    """An accepted hot reload (version bump), then a rejected one (a rule with bad CEL)."""
    text = policy_file.read_text()
    bumped = re.sub(r'^version: "([^"]+)"', r'version: "\1-observed"', text, count=1, flags=re.M)
    assert bumped != text
    policy_file.write_text(bumped)
    _wait(lambda: _count("reloads_ok") > before["reloads_ok"], "an accepted reload")
    broken = bumped + "  - id: broken.rule\n    when: scores.hate >=\n    action: block\n"
    policy_file.write_text(broken)
    _wait(lambda: _count("reloads_invalid") > before["reloads_invalid"], "a rejected reload")


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _resolve(expr: str) -> str:
    """Grafana's template variables → the values this test uses; unknown ones fail."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in VARIABLES, f"unhandled dashboard variable ${name} in {expr}"
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", substitute, expr)


def _dashboard_targets() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every query of every panel."""
    found = []
    for path in DASHBOARDS:
        dashboard = orjson.loads(path.read_bytes())
        panels = list(dashboard["panels"])
        while panels:
            panel = panels.pop(0)
            panels.extend(panel.get("panels", []))  # collapsed rows hold their panels
            for target in panel.get("targets", []):
                found.append((path.name, panel["title"], target["expr"]))
    return found


def _is_ray(expr: str) -> bool:
    return "ray_serve_" in expr or "ray_moderator_" in expr


def test_prometheus_scrapes_the_worker_and_counts_match(observed: ObservedRun) -> None:
    prom, before = observed.prometheus, observed.before
    valid = sum(s.valid for s in observed.samples)
    invalid = len(observed.samples) - valid
    job = f'job="{WORKER_JOB}"'

    decided = prom.wait_for(
        f"sum(moderator_decisions_total{{{job}}})", lambda v: v == before["decided"] + valid
    )
    assert decided == before["decided"] + valid
    assert prom.targets_up() == {WORKER_JOB: "up", RAY_JOB: "up"}
    expected = {
        "moderator_posts_consumed_total": before["consumed"] + len(observed.samples),
        "moderator_dead_letters_total": before["dead_lettered"] + invalid,
        "moderator_end_to_end_latency_seconds_count": before["end_to_end"] + valid,
    }
    for name, value in expected.items():
        assert prom.value(f"sum({name}{{{job}}})") == value, name
    produce = f'sum(moderator_stage_duration_seconds_count{{{job}, stage="produce"}})'
    assert (prom.value(produce) or 0) > before["produce_batches"]
    hits = f'sum(moderator_cache_requests_total{{{job}, result="hit"}})'
    assert (prom.value(hits) or 0) > before["cache_hits"]  # the sample stream has reposts

    model = prom.query(f"moderator_model_info{{{job}}}")
    assert [series["metric"]["version"] for series in model] == ["keyword-1"]
    # The hot reload's new version, published by the worker loop within a second.
    reloaded = f'moderator_policy_info{{{job}, name="default", version="4-observed"}}'
    assert prom.wait_for(f"count({reloaded})", lambda v: v == 1) == 1
    assert prom.value(f"count(moderator_policy_info{{{job}}})") == 1  # one series per worker


def test_lag_is_per_partition_and_drains_to_zero(observed: ObservedRun) -> None:
    prom, topic = observed.prometheus, observed.settings.kafka.posts_topic
    selector = f'moderator_consumer_lag_records{{topic="{topic}"}}'
    # Seen by the worker while it worked through the backlog; bounded by what was produced.
    assert any(lag > 0 for lag in observed.max_lag.values()), observed.max_lag
    for tp, end in observed.ends.items():
        assert observed.max_lag.get(tp.partition, 0) <= end
    prom.wait_for(f"count({selector} == 0)", lambda v: v == len(observed.ends))
    series = prom.query(selector)
    assert {s["metric"]["partition"] for s in series} == {str(tp.partition) for tp in observed.ends}
    assert all(float(s["value"][1]) == 0 for s in series)


def test_every_dashboard_query_returns_data(observed: ObservedRun) -> None:
    prom = observed.prometheus
    targets = _dashboard_targets()
    assert len(targets) > 40
    failures = []
    for dashboard, title, expr in targets:
        try:
            result = prom.query(_resolve(expr))
        except Exception as exc:
            failures.append(f"{dashboard} / {title}: {exc}")
            continue
        if not result:
            failures.append(f"{dashboard} / {title}: no data for {expr}")
            continue
        finite = [s for s in result if not math.isnan(float(s["value"][1]))]
        if not _is_ray(expr) and "histogram_quantile" not in expr and not finite:
            failures.append(f"{dashboard} / {title}: only NaN for {expr}")
    assert not failures, "\n".join(failures)


def test_every_moderator_panel_shows_a_number(observed: ObservedRun) -> None:
    """Each worker panel has at least one query with a finite value after the run."""
    prom = observed.prometheus
    panels: dict[tuple[str, str], list[str]] = {}
    for dashboard, title, expr in _dashboard_targets():
        if not _is_ray(expr):
            panels.setdefault((dashboard, title), []).append(expr)
    empty = []
    for (dashboard, title), exprs in panels.items():
        values = [float(s["value"][1]) for e in exprs for s in prom.query(_resolve(e))]
        if not any(math.isfinite(v) for v in values):
            empty.append(f"{dashboard} / {title}")
    assert not empty, empty


def test_alert_rules_load_and_only_the_rejected_reload_fires(observed: ObservedRun) -> None:
    prom = observed.prometheus
    _wait(lambda: _firing(prom) == {"ModeratorPolicyReloadRejected"}, "the reload alert", 15)
    groups = prom.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) >= 10
    assert all(rule["health"] == "ok" for rule in rules), [r for r in rules if r["health"] != "ok"]


def _firing(prom: PrometheusServer) -> set[str]:
    alerts = prom.api("alerts")["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


def test_logs_carry_no_captions_images_or_author_ids(observed: ObservedRun) -> None:
    captions, authors, images = set(), set(), []
    for sample in observed.samples:
        try:
            post = orjson.loads(sample.value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(post, dict):
            continue
        if isinstance(post.get("caption"), str) and len(post["caption"]) >= 4:
            captions.add(post["caption"])
        if isinstance(post.get("author_id"), str):
            authors.add(post["author_id"])
        if isinstance(post.get("image_b64"), str):
            images.append(post["image_b64"][:24])
    assert captions and authors and images
    text = "\n".join(observed.log_lines)
    assert "dead-letter" in text and "policy reload rejected" in text  # the capture works
    leaked = [c for c in captions if c in text] + [a for a in authors if a in text]
    leaked += [i for i in images if i in text]
    assert not leaked, leaked
    assert not re.search(r"author-\d+", text)  # the sample stream's author ids


def test_decision_log_lines_carry_ids_and_versions_only(observed: ObservedRun) -> None:
    prefix = "INFO workers.telemetry.decisions decision "
    lines = [line[len(prefix) :] for line in observed.log_lines if line.startswith(prefix)]
    entries = [orjson.loads(line) for line in lines]
    valid = {s.post_id for s in observed.samples if s.valid}
    assert {entry["post_id"] for entry in entries} == valid
    keys = {"post_id", "action", "labels", "rules", "shadow_rules", "policy_version",
            "model_version", "source"}  # fmt: skip
    assert all(set(entry) == keys for entry in entries)
    assert {entry["model_version"] for entry in entries} == {"keyword-1"}
    blocked = [entry for entry in entries if entry["action"] == "block"]
    assert blocked and all(entry["labels"] == ["hate"] for entry in blocked)
