"""One validated settings model for every process.

Precedence: environment variables (MODERATOR_ prefix, ``__`` between levels, for
example ``MODERATOR_KAFKA__BOOTSTRAP_SERVERS``) > a YAML settings file > defaults,
so Helm can inject values over a mounted file.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from moderator.errors import PROBLEM_REASONS, SIGNAL_PROBLEMS, ConfigError, ReasonCode
from moderator.media_settings import MediaLimits
from moderator.quarantine_settings import QuarantineSettings
from moderator.schema.decision import Action
from moderator.serving_settings import ServingSettings
from moderator.signals.settings import SignalSettings
from moderator.verdicts.settings import VerdictSettings
from moderator.yamlfile import YamlFileError, load_located_yaml

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"


class _Section(BaseModel):
    # Settings are values: a changed copy is made with model_copy(update=...), never by
    # assigning to a loaded one (subclasses' model_config merges with this one).
    model_config = ConfigDict(extra="forbid", frozen=True)


_SASL_FIELDS = ("sasl_mechanism", "sasl_username", "sasl_password")
_TLS_FIELDS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


class KafkaSettings(_Section):
    # Errors never echo the input: this section holds secrets.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    bootstrap_servers: str | None = Field(
        default=None, description="host:port[,host:port]; unset → the demo starts a local broker."
    )
    posts_topic: str = "posts"
    decisions_topic: str = "decisions"
    review_topic: str = "review"
    dlq_topic: str = "posts.dlq"
    verdicts_topic: str = "verdicts"
    group_id: str = "moderator"
    client_id: str = "moderator-worker"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    max_poll_records: int = Field(default=256, ge=1, le=10_000)
    # Short group timeouts make joins take ~3 s instead of ~23 s (see DESIGN.md).
    session_timeout_ms: int = Field(default=6_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    max_poll_interval_ms: int = Field(default=60_000, ge=1_000)
    # How long the broker may hold a fetch open waiting for data. Kafka answers as soon as
    # data arrives; Tansu 0.6 holds every fetch for the whole wait (p50 190 ms from produce to
    # poll at 500 ms, 6 ms at 100 ms, measured), so 100 ms rather than kafka-python's 500.
    fetch_max_wait_ms: int = Field(default=100, ge=0)
    # Codec of the decision, review and dead-letter batches this worker produces; consuming
    # reads every codec whatever this says. lz4, measured with moderator/benchmark/codec_bench.py
    # (docs/throughput.md, Kafka compression): batches 0.37x the bytes of none for ~2 us more
    # CPU per decision, the least of any codec. zstd: 0.24x the bytes, ~5 us more.
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"

    @model_validator(mode="after")
    def _security_settings_match_protocol(self) -> KafkaSettings:
        # A setting the protocol would ignore is refused: SASL credentials with PLAINTEXT would
        # otherwise connect unauthenticated and unencrypted without a word.
        protocol = self.security_protocol
        for used, names, kind, protocols in (
            (
                protocol.startswith("SASL_"),
                _SASL_FIELDS,
                "SASL settings",
                "SASL_PLAINTEXT or SASL_SSL",
            ),
            (protocol.endswith("SSL"), _TLS_FIELDS, "TLS files", "SSL or SASL_SSL"),
        ):
            unused = [name for name in names if getattr(self, name) is not None]
            if unused and not used:
                raise ValueError(
                    f"{', '.join(unused)} set but security_protocol is {protocol}: {kind} "
                    f"are used only with {protocols}"
                )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile set without ssl_certfile (the client certificate)")
        return self


class RedisSettings(_Section):
    # Errors never echo the input: this section holds secrets.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: SecretStr | None = Field(
        default=None, description="redis:// or rediss:// URL; unset → the demo starts a local one."
    )
    feature_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    enabled: bool = True
    socket_timeout_s: float = Field(default=0.05, gt=0)
    ssl_ca_certs: Path | None = Field(
        default=None,
        description="CA bundle (PEM) that signed the rediss:// server's certificate; unset → "
        "the system CAs.",
    )
    max_memory_mb: int | None = Field(
        default=None,
        ge=1,
        description="Bound Redis memory: the worker sets maxmemory and eviction_policy at start"
        " (CONFIG SET). Unset → the server's own setting, with a warning when it is unbounded.",
    )
    eviction_policy: Literal["allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu"] = Field(
        default="allkeys-lru", description="Redis maxmemory-policy set with max_memory_mb."
    )

    @model_validator(mode="after")
    def _ca_only_with_tls(self) -> RedisSettings:
        url = self.url.get_secret_value() if self.url is not None else None
        if self.ssl_ca_certs is not None and url is not None and not url.startswith("rediss://"):
            raise ValueError("ssl_ca_certs set but url is not a rediss:// (TLS) URL")
        return self


class AuthorStateConfig(_Section):
    """Author counters in Redis (moderator.policy.authors.RedisAuthorStore), kept when
    author_state is true; settings `authors`, Helm `authors.*`."""

    key_prefix: str = Field(
        default="moderator:author:", min_length=1, description="Prefix of the authors' keys."
    )
    strike_actions: frozenset[Action] = Field(
        default=frozenset({Action.BLOCK}), description="Actions whose posts give a strike."
    )
    strike_ttl_s: float = Field(
        default=30 * 24 * 3600.0, gt=0, description="How long a strike counts, in seconds."
    )
    flush_every: int = Field(
        default=64, ge=1, description="Buffered writes sent at the latest after this many posts."
    )
    retry_after_s: float = Field(
        default=5.0, ge=0, description="After a Redis failure, leave Redis alone this long."
    )

    @field_serializer("strike_actions", when_used="json")
    def _in_order(self, actions: frozenset[Action]) -> list[str]:
        # A settings file written for a child process reads the same each time.
        return sorted(action.value for action in actions)


UrlScheme = Literal["https", "http"]


class ImageUrlSettings(_Section):
    """Fetching `image_url` posts. Off by default: a fetch is a request the poster aims."""

    enabled: bool = Field(default=False, description="Fetch image_url posts (else dead-letter).")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts to fetch from: exact names, or '*.example.com' for its subdomains.",
    )
    allowed_schemes: list[UrlScheme] = Field(
        default_factory=lambda: list[UrlScheme](["https"]),
        description="Add 'http' only for a trusted network.",
    )
    allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="CIDRs exempt from the public-address rule (an internal image store).",
    )
    connect_timeout_s: float = Field(default=2.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0, description="Whole fetch, redirects included.")
    max_redirects: int = Field(default=3, ge=0, le=10)
    ca_file: Path | None = Field(default=None, description="Extra CA bundle for HTTPS hosts.")
    concurrency: int = Field(default=16, ge=1, le=256, description="Fetches at once per worker.")

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, hosts: list[str]) -> list[str]:
        normalised = []
        for host in (h.strip().lower().rstrip(".") for h in hosts):
            if _is_ip_literal(host):
                host = str(ipaddress.ip_address(host.strip("[]")))
            elif not _HOST_PATTERN.fullmatch(host):
                raise ValueError(f"{host!r} is not a host name, an IP address or '*.domain'")
            normalised.append(host)
        return normalised

    @model_validator(mode="after")
    def _hosts_when_enabled(self) -> ImageUrlSettings:
        if self.enabled and not self.allowed_hosts:
            raise ValueError("allowed_hosts must name at least one host when enabled is true")
        return self


_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_PATTERN = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class DecodeLimits(_Section):
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # 7 MiB of image is ~9.3 MiB of base64: inside the 10 MiB message cap.
    max_image_bytes: int = Field(default=7 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    # HEIF covers HEIC (phone cameras); AVIF comes from browsers. Both decode with the same caps.
    allowed_image_formats: list[str] = Field(
        default_factory=lambda: ["JPEG", "PNG", "GIF", "WEBP", "HEIF", "AVIF"]
    )
    image_urls: ImageUrlSettings = Field(default_factory=lambda: ImageUrlSettings())
    media: MediaLimits = Field(default_factory=MediaLimits)
    dead_letter_problems: list[ReasonCode] = Field(
        default_factory=list,
        description="Post problems that dead-letter the post instead of deciding it (for "
        "example [caption_too_long]). Empty by default: a dead-lettered post is never "
        "moderated, so every post with a usable post_id is decided, its problems listed.",
    )

    @field_validator("dead_letter_problems")
    @classmethod
    def _only_post_problems(cls, codes: list[ReasonCode]) -> list[ReasonCode]:
        records = sorted(code.value for code in codes if code not in PROBLEM_REASONS)
        listable = PROBLEM_REASONS - SIGNAL_PROBLEMS
        if records:
            raise ValueError(
                f"{', '.join(records)} always dead-letter (the record is not a post); list only "
                f"post problems: {', '.join(sorted(c.value for c in listable))}"
            )
        late = sorted(code.value for code in codes if code in SIGNAL_PROBLEMS)
        if late:
            raise ValueError(
                f"{', '.join(late)} are found by signals after the post was read and are always "
                f"decided; list only: {', '.join(sorted(c.value for c in listable))}"
            )
        return codes


class WorkerSettings(_Section):
    batch_size: int = Field(default=64, ge=1, le=4096)
    poll_timeout_ms: int = Field(default=200, ge=1)
    metrics_port: int | None = Field(default=9400, ge=0, le=65535)
    produce_timeout_s: float = Field(default=30.0, gt=0)
    max_in_flight_batches: int = Field(
        default=4, ge=1, description="Batches scored at once; partitions pause at this bound."
    )
    max_in_flight_records: int = Field(
        default=5_000, ge=1, description="Records polled and not yet acknowledged, at most."
    )
    commit_interval_ms: int = Field(default=200, ge=0, description="Least time between commits.")
    stuck_retry_s: float = Field(
        default=1.0,
        gt=0,
        description="First back-off before re-reading a partition held at a record batch the"
        " worker cannot read (missing codec, corrupt batch); doubles on each failure.",
    )
    stuck_retry_max_s: float = Field(
        default=60.0, gt=0, description="Longest back-off between such re-reads."
    )
    log_decisions: bool = Field(
        default=False,
        description="Log one JSON line per decision (post id, action, labels, rules, versions;"
        " never captions, images or author ids).",
    )


class Settings(BaseSettings):
    # hide_input_in_errors: a section-level error would otherwise print the whole section,
    # SASL password and Redis URL included, into the "invalid settings" message.
    model_config = SettingsConfigDict(
        env_prefix="MODERATOR_",
        env_nested_delimiter="__",
        extra="forbid",
        hide_input_in_errors=True,
        frozen=True,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    limits: DecodeLimits = Field(default_factory=DecodeLimits)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    signals: SignalSettings = Field(default_factory=SignalSettings)
    verdicts: VerdictSettings = Field(default_factory=VerdictSettings)
    policy_path: Path = DEFAULT_POLICY
    policy_reload_interval_s: float = Field(
        default=10.0, ge=0, description="How often to check the policy files; 0 = never reload."
    )
    author_state: bool = Field(
        default=True, description="Keep author counters in Redis (needs redis.url)."
    )
    authors: AuthorStateConfig = Field(
        default_factory=AuthorStateConfig, description="The author counters, when kept."
    )
    quarantine: QuarantineSettings = Field(default_factory=QuarantineSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: it overrides the file passed in as init values.
        return (env_settings, init_settings)


def load_settings(path: str | Path | None = None) -> Settings:
    """Settings from an optional YAML file plus the environment; errors name file, line, field."""
    if path is None:
        try:
            return Settings()
        except ValidationError as exc:
            raise ConfigError(f"invalid settings from the environment:\n{exc}") from exc
    try:
        located = load_located_yaml(path)
    except YamlFileError as exc:
        raise ConfigError(str(exc)) from exc
    data = located.data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the settings file must be a mapping of sections")
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings:\n{located.describe(exc)}") from exc


def settings_file_data(settings: Settings) -> dict[str, object]:
    """Settings as plain data for a YAML file handed to a child process (secrets unwrapped)."""
    data = settings.model_dump(mode="json")
    if settings.kafka.sasl_password is not None:
        data["kafka"]["sasl_password"] = settings.kafka.sasl_password.get_secret_value()
    if settings.redis.url is not None:
        data["redis"]["url"] = settings.redis.url.get_secret_value()
    if settings.serving.ray_auth_token is not None:
        data["serving"]["ray_auth_token"] = settings.serving.ray_auth_token.get_secret_value()
    return data
