"""Transport security settings without servers: the kafka-python options that SASL/TLS
settings become, half-configured or contradictory settings refused with the field named,
secrets kept out of repr/str and out of settings errors, and the TLS context kafka-python
builds from the CA and client files. (Real TLS handshakes: tests/integration/
test_transport_security.py.)"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.net.transport import KafkaSSLTransport
from pydantic import SecretStr, ValidationError

from moderator.config import KafkaSettings, RedisSettings, Settings, load_settings
from moderator.errors import ConfigError
from moderator.io import connection_options

SASL_PASSWORD = "sasl-Secret-123"
REDIS_PASSWORD = "redis-Secret-456"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ca = trustme.CA()
    client = ca.issue_cert("moderator-worker")
    folder = tmp_path_factory.mktemp("kafka-pki")
    files = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "other_key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    trustme.CA().issue_cert("someone-else").private_key_pem.write_to_path(str(files["other_key"]))
    return files


def _sasl_ssl(pki: dict[str, Path]) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers="b1:9093,b2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="moderator",
        sasl_password=SecretStr(SASL_PASSWORD),
        ssl_cafile=pki["ca"],
        ssl_certfile=pki["cert"],
        ssl_keyfile=pki["key"],
    )


def test_sasl_ssl_becomes_exactly_these_kafka_python_options(pki: dict[str, Path]) -> None:
    options = connection_options(_sasl_ssl(pki))
    assert options == {
        "bootstrap_servers": ["b1:9093", "b2:9093"],
        "client_id": "moderator-worker",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "moderator",
        "sasl_plain_password": SASL_PASSWORD,  # unwrapped: kafka-python wants a str
        "ssl_cafile": str(pki["ca"]),
        "ssl_certfile": str(pki["cert"]),
        "ssl_keyfile": str(pki["key"]),
    }
    # Every key is one that all three kafka-python clients accept (they refuse unknown ones).
    for client in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
        assert set(options) <= set(client.DEFAULT_CONFIG), client.__name__


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT"])
def test_other_protocols_carry_only_their_own_options(pki: dict[str, Path], protocol: str) -> None:
    settings = _sasl_ssl(pki).model_dump()
    settings["security_protocol"] = protocol
    if not protocol.startswith("SASL"):
        settings.update(sasl_mechanism=None, sasl_username=None, sasl_password=None)
    if not protocol.endswith("SSL"):
        settings.update(ssl_cafile=None, ssl_certfile=None, ssl_keyfile=None)
    options = connection_options(KafkaSettings(**settings))
    assert options["security_protocol"] == protocol
    assert ("sasl_plain_password" in options) == protocol.startswith("SASL")
    assert ("ssl_cafile" in options) == protocol.endswith("SSL")


@pytest.mark.parametrize("missing", ["sasl_mechanism", "sasl_username", "sasl_password"])
def test_sasl_without_a_credential_is_refused_naming_the_fields(
    pki: dict[str, Path], missing: str
) -> None:
    settings = _sasl_ssl(pki).model_copy(update={missing: None})
    with pytest.raises(ConfigError, match=rf"SASL_SSL: set .*kafka\.{missing}") as caught:
        connection_options(settings)
    assert SASL_PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"security_protocol": "PLAINTEXT", "sasl_username": "u", "sasl_password": "p"},
            "sasl_username, sasl_password set but security_protocol is PLAINTEXT",
        ),
        (
            {"security_protocol": "SSL", "sasl_mechanism": "PLAIN"},
            "sasl_mechanism set but security_protocol is SSL",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "ssl_cafile": "/ca.pem"},
            "ssl_cafile set but security_protocol is SASL_PLAINTEXT",
        ),
        (
            {"security_protocol": "SSL", "ssl_keyfile": "/key.pem"},
            "ssl_keyfile set without ssl_certfile",
        ),
    ],
)
def test_settings_the_protocol_would_ignore_are_refused(
    fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        KafkaSettings(**fields)  # type: ignore[arg-type]
    assert "'p'" not in str(caught.value)  # the password is not echoed


def test_a_refused_section_names_file_line_and_section(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("kafka:\n  bootstrap_servers: b:9093\n  sasl_username: u\n")
    with pytest.raises(ConfigError, match=r"settings.yaml:1: kafka: .*sasl_username set"):
        load_settings(path)


def test_secrets_stay_out_of_repr_and_str() -> None:
    settings = Settings(
        kafka=KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_username="moderator",
            sasl_password=SecretStr(SASL_PASSWORD),
        ),
        redis=RedisSettings(url=SecretStr(f"rediss://:{REDIS_PASSWORD}@redis:6380/0")),
    )
    for text in (
        repr(settings),
        str(settings),
        repr(settings.kafka),
        str(settings.redis),
        settings.model_dump_json(),
    ):
        assert SASL_PASSWORD not in text
        assert REDIS_PASSWORD not in text
    assert "moderator" in repr(settings.kafka)  # the user name is not a secret


def test_settings_errors_from_the_environment_do_not_print_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("MODERATOR_")]:
        monkeypatch.delenv(name)
    # SASL credentials with a PLAINTEXT protocol: refused, section-level error.
    monkeypatch.setenv("MODERATOR_KAFKA__SASL_USERNAME", "moderator")
    monkeypatch.setenv("MODERATOR_KAFKA__SASL_PASSWORD", SASL_PASSWORD)
    # A CA for a plaintext Redis URL: refused, section-level error.
    monkeypatch.setenv("MODERATOR_REDIS__URL", f"redis://:{REDIS_PASSWORD}@redis:6379/0")
    monkeypatch.setenv("MODERATOR_REDIS__SSL_CA_CERTS", "/etc/redis-ca/ca.crt")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "sasl_username, sasl_password set but security_protocol is PLAINTEXT" in message
    assert "ssl_ca_certs set but url is not a rediss:// (TLS) URL" in message
    assert SASL_PASSWORD not in message and REDIS_PASSWORD not in message


def test_redis_ca_needs_a_tls_url() -> None:
    ca = Path("/etc/redis-ca/ca.crt")
    tls = RedisSettings(url=SecretStr("rediss://:pw@redis:6380/0"), ssl_ca_certs=ca)
    assert tls.ssl_ca_certs == ca
    assert RedisSettings(ssl_ca_certs=ca).url is None  # the URL may come from elsewhere
    with pytest.raises(ValidationError, match="ssl_ca_certs set but url is not a rediss://"):
        RedisSettings(url=SecretStr("redis://:pw@redis:6379/0"), ssl_ca_certs=ca)


def _kafka_ssl_context(options: dict[str, object]) -> ssl.SSLContext:
    # The function kafka-python's TLS transport builds its context with (no broker needed).
    config = dict(KafkaSSLTransport.DEFAULT_CONFIG)
    config.update({key: value for key, value in options.items() if key in config})
    return KafkaSSLTransport._build_ssl_context(config)


def test_kafka_python_builds_a_verifying_tls_context_from_the_files(
    pki: dict[str, Path],
) -> None:
    context = _kafka_ssl_context(connection_options(_sasl_ssl(pki)))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    # Only the configured CA is trusted, not the system store.
    ca_der = ssl.PEM_cert_to_DER_cert(pki["ca"].read_text())
    assert context.get_ca_certs(binary_form=True) == [ca_der]


def test_a_client_key_that_does_not_match_its_certificate_fails_at_once(
    pki: dict[str, Path],
) -> None:
    settings = _sasl_ssl(pki).model_copy(update={"ssl_keyfile": pki["other_key"]})
    with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH"):
        _kafka_ssl_context(connection_options(settings))
