"""Transport security on real servers: Redis over TLS with AUTH, Kafka over TLS.

Redis: a redis-server of the test's own with only a TLS port and `requirepass`, its
certificate from a throwaway CA (trustme). The feature cache and the author-state store
work over rediss:// with the CA from RedisSettings.ssl_ca_certs; a wrong password, no
password, an untrusted CA or a plaintext client each leave them unavailable (misses,
counters at zero), never raising, with a log line that says why and not the password.

Kafka: the bundled Tansu 0.6.0 cannot serve TLS or SASL (docs/security.md), so a small
TLS terminator in this file stands in front of it and the broker advertises the
terminator's port. The worker's own clients (moderator.io.kafka) then do the real TLS
handshake, certificate and host-name checks before any Kafka request, and a record
round-trips through them. SASL is only checked as configuration
(tests/unit/test_kafka_security_config.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import trustme
from kafka.errors import KafkaTimeoutError
from pydantic import SecretStr

from moderator import metrics
from moderator.cache import FeatureCache
from moderator.config import KafkaSettings, RedisSettings, Settings
from moderator.io import create_consumer, create_producer, ensure_topics
from moderator.local.broker import tansu_binary
from moderator.local.process import free_port, port_open, stop_process, wait_until
from moderator.policy.authors import AuthorStateConfig, RedisAuthorStore
from moderator.policy.inputs import NO_HISTORY
from moderator.schema import Action
from workers.main import build_policy_service

pytestmark = pytest.mark.integration

PASSWORD = "tls-test-Pa55word"
DIM = 8
T0 = 1_780_000_000.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """PEM files: the CA, the server's certificate chain and key, and an unrelated CA."""
    folder = tmp_path_factory.mktemp("pki")
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "other_ca")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    with files["cert"].open("wb") as chain:
        for pem in server.cert_chain_pems:
            chain.write(pem.bytes())
    trustme.CA().cert_pem.write_to_path(str(files["other_ca"]))
    return files


@pytest.fixture(scope="module")
def tls_redis_port(pki: dict[str, Path]) -> Iterator[int]:
    """redis-server with a TLS port only (--port 0: no plaintext listener) and a password."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    options = {
        "--port": "0",  # no plaintext listener
        "--tls-port": str(port),
        "--bind": "127.0.0.1",
        "--tls-cert-file": str(pki["cert"]),
        "--tls-key-file": str(pki["key"]),
        "--tls-ca-cert-file": str(pki["ca"]),
        "--tls-auth-clients": "no",
        "--requirepass": PASSWORD,
        "--save": "",
        "--appendonly": "no",
    }
    process = subprocess.Popen(
        [binary, *(part for option in options.items() for part in option)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: process.poll() is None and port_open(port), 15, f"TLS redis on port {port}"
        )
    except TimeoutError:
        process.kill()
        _, err = process.communicate(timeout=5)
        # A redis-server built without TLS refuses the tls-* options ("Bad directive").
        pytest.fail(f"redis-server did not start with TLS: {err.decode(errors='replace')[-500:]}")
    try:
        yield port
    finally:
        stop_process(process)


def _url(port: int, password: str | None = PASSWORD, scheme: str = "rediss") -> str:
    auth = f":{password}@" if password is not None else ""
    return f"{scheme}://{auth}127.0.0.1:{port}/0"


def _cache(url: str, ca_file: Path | None) -> FeatureCache:
    # 2 s, not the 50 ms default: this is a 2-core test machine with other work on it.
    return FeatureCache.from_url(
        url,
        f"m-{uuid.uuid4().hex[:6]}",
        {"image": DIM, "text": DIM},
        ttl_s=60,
        socket_timeout_s=2.0,
        ssl_ca_certs=ca_file,
    )


def test_feature_cache_round_trips_over_tls_with_auth(
    tls_redis_port: int, pki: dict[str, Path]
) -> None:
    cache = _cache(_url(tls_redis_port), pki["ca"])
    assert cache.client.connection_pool.connection_class is redis.SSLConnection
    vector = np.linspace(0, 1, DIM, dtype=np.float32)
    cache.put_many({"image": {"a" * 64: vector}, "text": {"b" * 64: vector}})
    found = cache.get_many({"image": ["a" * 64, "c" * 64], "text": ["b" * 64]})
    assert {kind: list(vectors) for kind, vectors in found.items()} == {
        "image": ["a" * 64],
        "text": ["b" * 64],
    }
    np.testing.assert_array_equal(found["image"]["a" * 64], vector)
    assert metrics.CACHE_AVAILABLE._value.get() == 1
    # redis-py also takes the CA as a URL query parameter (a Secret holding the whole URL).
    query = _cache(f"{_url(tls_redis_port)}?ssl_ca_certs={pki['ca']}", None)
    assert query.client.ping()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong password", "refused the credentials in redis.url (AUTH): invalid username"),
        ("no password", "refused the credentials in redis.url (AUTH)"),
        ("untrusted CA", "certificate verify failed"),
        # The TLS port drops a plaintext client: reset or closed, naming host and port.
        ("plaintext client", "127.0.0.1:"),
    ],
)
def test_feature_cache_failures_are_misses_with_a_clear_log(
    tls_redis_port: int,
    pki: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
    case: str,
    expected: str,
) -> None:
    url, ca_file = {
        "wrong password": (_url(tls_redis_port, "not-the-password"), pki["ca"]),
        "no password": (_url(tls_redis_port, None), pki["ca"]),
        "untrusted CA": (_url(tls_redis_port), pki["other_ca"]),
        "plaintext client": (_url(tls_redis_port, scheme="redis"), None),
    }[case]
    cache = _cache(url, ca_file)
    errors = metrics.CACHE_REQUESTS.labels(kind="image", result="error")
    errors_before = errors._value.get()
    with caplog.at_level(logging.WARNING, logger="moderator.cache.features"):
        assert cache.get_many({"image": ["c" * 64]}) == {"image": {}}
        cache.put_many({"image": {"c" * 64: np.ones(DIM, dtype=np.float32)}})  # must not raise
    assert metrics.CACHE_AVAILABLE._value.get() == 0
    assert errors._value.get() == errors_before + 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # once per outage, not once per call
    assert warnings[0].startswith("feature cache unavailable, deciding without it: ")
    assert expected in warnings[0], warnings[0]
    assert "not-the-password" not in caplog.text and PASSWORD not in caplog.text


def test_author_state_over_tls_with_auth(
    tls_redis_port: int, pki: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    config = AuthorStateConfig(key_prefix=f"test:{uuid.uuid4().hex[:8]}:")
    store = RedisAuthorStore.from_url(
        _url(tls_redis_port), config, socket_timeout_s=2.0, ssl_ca_certs=pki["ca"]
    )
    store.record("a", "p1", T0, Action.BLOCK)
    store.record("a", "p2", T0 + 60, Action.ALLOW)
    counters = store.counters("a", T0 + 120)
    assert (counters.posts_last_hour, counters.blocks_last_day, counters.strikes) == (2, 1, 1)
    store.close()

    errors_before = metrics.AUTHOR_STATE_ERRORS._value.get()
    wrong = RedisAuthorStore.from_url(
        _url(tls_redis_port, "not-the-password"), config, 2.0, ssl_ca_certs=pki["ca"]
    )
    with caplog.at_level(logging.WARNING, logger="moderator.policy.authors"):
        assert wrong.counters("a", T0 + 120) == NO_HISTORY
    assert metrics.AUTHOR_STATE_ERRORS._value.get() == errors_before + 1
    assert "refused the credentials in redis.url (AUTH)" in caplog.text
    assert "not-the-password" not in caplog.text


def test_cache_and_author_store_connect_alike(pki: dict[str, Path]) -> None:
    """Both come from moderator.cache.client.redis_client: same timeouts, same TLS."""
    url = _url(1)  # nothing connects until the first call
    cache = _cache(url, pki["ca"])
    store = RedisAuthorStore.from_url(url, socket_timeout_s=2.0, ssl_ca_certs=pki["ca"])
    pools = cache.client.connection_pool, store.client.connection_pool
    keys = ("host", "port", "password", "socket_timeout", "socket_connect_timeout", "ssl_ca_certs")
    cache_kwargs, store_kwargs = (
        {key: pool.connection_kwargs[key] for key in keys} for pool in pools
    )
    assert cache_kwargs == store_kwargs
    assert (cache_kwargs["socket_timeout"], cache_kwargs["ssl_ca_certs"]) == (2.0, str(pki["ca"]))
    assert {pool.connection_class for pool in pools} == {redis.SSLConnection}
    plain = RedisAuthorStore.from_url(_url(1, scheme="redis"), ssl_ca_certs=None)
    assert "ssl_ca_certs" not in plain.client.connection_pool.connection_kwargs


def test_worker_passes_the_redis_ca_from_settings(
    tls_redis_port: int, pki: dict[str, Path]
) -> None:
    """workers.main builds the author store from RedisSettings.ssl_ca_certs."""
    settings = Settings(
        redis=RedisSettings(
            url=SecretStr(_url(tls_redis_port)), ssl_ca_certs=pki["ca"], socket_timeout_s=2.0
        ),
        policy_reload_interval_s=0,
    )
    service = build_policy_service(settings)
    assert service.authors is not None
    try:
        assert service.authors.client.ping()
        author = uuid.uuid4().hex
        service.authors.record(author, "p1", T0, Action.ALLOW)
        assert service.authors.counters(author, T0 + 1).posts_last_hour == 1
    finally:
        service.close()


# --- Kafka over TLS ---------------------------------------------------------------------


class TlsTerminator:
    """Accepts TLS on a loopback port and relays the plaintext bytes to `upstream_port`."""

    def __init__(self, upstream_port: int, context: ssl.SSLContext) -> None:
        self.upstream_port = upstream_port
        self.context = context
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self._server: asyncio.Server | None = None

    def start(self) -> TlsTerminator:
        self.thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self.context), self.loop
        ).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, broker_w), _pipe(broker_r, client_w))

    def stop(self) -> None:
        if self._server is not None:
            self.loop.call_soon_threadsafe(self._server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, ssl.SSLError, RuntimeError):
            writer.close()


@pytest.fixture(scope="module")
def tls_broker(pki: dict[str, Path]) -> Iterator[str]:
    """Tansu on a private port behind a TLS terminator; returns the TLS bootstrap address."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["cert"], pki["key"])
    broker_port = free_port()
    terminator = TlsTerminator(broker_port, context).start()
    advertised = f"tcp://127.0.0.1:{terminator.port}"
    process = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            f"--listener-url=tcp://127.0.0.1:{broker_port}",
            f"--advertised-listener-url={advertised}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"RUST_LOG": "error"},
    )
    try:
        wait_until(lambda: port_open(broker_port), 30, f"broker on port {broker_port}")
        yield f"127.0.0.1:{terminator.port}"
    finally:
        stop_process(process)
        terminator.stop()


def _tls_kafka(bootstrap: str, cafile: Path, tag: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        security_protocol="SSL",
        ssl_cafile=cafile,
        posts_topic=f"posts-{tag}",
        group_id=f"moderator-{tag}",
    )


def test_kafka_clients_round_trip_a_record_over_tls(tls_broker: str, pki: dict[str, Path]) -> None:
    kafka = _tls_kafka(tls_broker, pki["ca"], uuid.uuid4().hex[:10])
    ensure_topics(kafka, [kafka.posts_topic], partitions=1)
    producer = create_producer(kafka)
    try:
        producer.send(kafka.posts_topic, key=b"k", value=b"over tls").get(timeout=30)
    finally:
        producer.close()
    consumer = create_consumer(kafka)
    try:
        consumer.subscribe([kafka.posts_topic])
        received: list[bytes] = []
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received += [r.value for r in records]
        assert received == [b"over tls"]
    finally:
        consumer.close(autocommit=False)


def test_kafka_client_refuses_a_broker_signed_by_another_ca(
    tls_broker: str, pki: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    kafka = _tls_kafka(tls_broker, pki["other_ca"], uuid.uuid4().hex[:10])
    # kafka-python bootstraps in the constructor: a worker fails at start-up, after
    # bootstrap_timeout_ms (30 s by default), with the TLS reason in its ERROR log lines.
    with (
        caplog.at_level(logging.ERROR, logger="kafka"),
        pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"),
    ):
        create_producer(kafka, bootstrap_timeout_ms=3000).close()
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
