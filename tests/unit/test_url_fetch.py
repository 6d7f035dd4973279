"""Image URL fetching: allowlists, post-DNS address checks, redirects, caps, TLS.

A real HTTP(S) server on 127.0.0.1 answers; host names are mapped to addresses by a
resolver passed to ImageFetcher (its documented test seam), so the DNS answers an
attacker would control are under the test's control.
"""

from __future__ import annotations

import io
import ipaddress
import ssl
import time
from collections.abc import Callable, Iterator

import numpy as np
import orjson
import pytest
import trustme
from PIL import Image
from pydantic import ValidationError

from moderator.config import DecodeLimits, ImageUrlSettings
from moderator.errors import InvalidPostError, ReasonCode
from moderator.ingest import ImageFetcher, decode_post, is_public_address
from moderator.ingest.url_fetch import IpAddress
from tests.image_server import Route, Server, endless, redirect, send, serve, trickle

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


@pytest.fixture
def http() -> Iterator[Server]:
    yield from serve()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https(ca: trustme.CA) -> Iterator[Server]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("images.test").configure_cert(context)
    yield from serve(context)


def _resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[IpAddress]]:
    def resolve(host: str, port: int) -> list[IpAddress]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


def _fetcher(
    resolver_table: dict[str, list[str]] | None = None,
    max_bytes: int = 1 << 20,
    **overrides: object,
) -> ImageFetcher:
    settings = {
        "enabled": True,
        "allowed_hosts": ["images.test", "*.cdn.test"],
        "allowed_schemes": ["http", "https"],
        "allowed_networks": ["127.0.0.1/32"],  # the test server; everything else stays refused
        "timeout_s": 2.0,
        **overrides,
    }
    table = resolver_table or {"images.test": ["127.0.0.1"], "a.cdn.test": ["127.0.0.1"]}
    return ImageFetcher(ImageUrlSettings.model_validate(settings), max_bytes, _resolver(table))


def _reason(call: Callable[[], object]) -> ReasonCode:
    with pytest.raises(InvalidPostError) as caught:
        call()
    return caught.value.reason


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 wrapping 10.0.0.1
        "ff02::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


def test_fetches_from_an_allowed_host_with_the_right_host_header(http: Server) -> None:
    http.routes["/cat.png?size=1"] = send(200, PNG, {"Content-Type": "image/png"})
    fetched = _fetcher().fetch(f"http://images.test:{http.port}/cat.png?size=1")
    assert fetched == PNG
    assert http.requests == [("/cat.png?size=1", f"images.test:{http.port}")]


def test_private_address_is_refused_before_connecting(http: Server) -> None:
    http.routes["/cat.png"] = send(200, PNG)
    fetcher = _fetcher(allowed_networks=[])  # the default: loopback is not exempt
    reason = _reason(lambda: fetcher.fetch(f"http://images.test:{http.port}/cat.png"))
    assert reason is ReasonCode.IMAGE_URL_PRIVATE_ADDRESS
    assert http.requests == []


def test_a_mixed_dns_answer_is_refused() -> None:
    fetcher = _fetcher({"images.test": ["127.0.0.1", "10.0.0.7"]})
    reason = _reason(lambda: fetcher.fetch("http://images.test/cat.png"))
    assert reason is ReasonCode.IMAGE_URL_PRIVATE_ADDRESS


def test_connects_to_the_checked_address_without_a_second_lookup(http: Server) -> None:
    """DNS rebinding: a second lookup would answer 10.0.0.7; there must not be one."""
    answers = iter([[LOOPBACK]])
    calls = []

    def rebinding(host: str, port: int) -> list[IpAddress]:
        calls.append(host)
        return next(answers, [ipaddress.ip_address("10.0.0.7")])

    http.routes["/cat.png"] = send(200, PNG)
    settings = _fetcher().settings
    assert ImageFetcher(settings, 1 << 20, rebinding).fetch(
        f"http://images.test:{http.port}/cat.png"
    )
    assert calls == ["images.test"]


@pytest.mark.parametrize(
    "url",
    [
        "http://other.test/cat.png",
        "http://cdn.test/cat.png",  # '*.cdn.test' covers subdomains only
        "http://evilcdn.test/cat.png",
        "http://127.0.0.1/cat.png",  # an IP literal is a host like any other
        "http://user:pw@images.test/cat.png",
        "ftp://images.test/cat.png",
        "file:///etc/passwd",
        "images.test/cat.png",
        "http://images.test:99999/cat.png",
    ],
)
def test_urls_outside_the_allowlist_are_refused(url: str) -> None:
    assert _reason(lambda: _fetcher().fetch(url)) is ReasonCode.IMAGE_URL_NOT_ALLOWED


def test_https_only_by_default() -> None:
    fetcher = _fetcher(allowed_schemes=["https"])
    reason = _reason(lambda: fetcher.fetch("http://images.test/cat.png"))
    assert reason is ReasonCode.IMAGE_URL_NOT_ALLOWED


def test_redirects_are_followed_and_each_hop_rechecked(http: Server) -> None:
    http.routes["/hop"] = redirect(f"http://a.cdn.test:{http.port}/cat.png")
    http.routes["/cat.png"] = send(200, PNG)
    http.routes["/to-other-host"] = redirect("http://other.test/cat.png")
    http.routes["/to-metadata"] = redirect("http://meta.cdn.test/latest/meta-data")
    http.routes["/loop"] = redirect("/loop")
    fetcher = _fetcher(
        {
            "images.test": ["127.0.0.1"],
            "a.cdn.test": ["127.0.0.1"],
            "meta.cdn.test": ["169.254.169.254"],
        }
    )
    base = f"http://images.test:{http.port}"
    assert fetcher.fetch(f"{base}/hop") == PNG
    assert _reason(lambda: fetcher.fetch(f"{base}/to-other-host")) is (
        ReasonCode.IMAGE_URL_NOT_ALLOWED
    )
    assert _reason(lambda: fetcher.fetch(f"{base}/to-metadata")) is (
        ReasonCode.IMAGE_URL_PRIVATE_ADDRESS
    )
    assert _reason(lambda: fetcher.fetch(f"{base}/loop")) is ReasonCode.IMAGE_URL_NOT_ALLOWED
    assert http.requests.count(("/loop", f"images.test:{http.port}")) == 4  # 1 + max_redirects


def test_size_cap_by_content_length_and_while_reading(http: Server) -> None:
    http.routes["/declared"] = send(200, b"x" * 5000)
    http.routes["/endless"] = endless
    fetcher = _fetcher(max_bytes=4096)
    base = f"http://images.test:{http.port}"
    assert _reason(lambda: fetcher.fetch(f"{base}/declared")) is ReasonCode.IMAGE_TOO_LARGE
    assert _reason(lambda: fetcher.fetch(f"{base}/endless")) is ReasonCode.IMAGE_TOO_LARGE


def test_a_trickling_server_is_cut_off_by_the_deadline(http: Server) -> None:
    http.routes["/slow"] = trickle
    fetcher = _fetcher(timeout_s=0.5)
    started = time.monotonic()
    reason = _reason(lambda: fetcher.fetch(f"http://images.test:{http.port}/slow"))
    assert reason is ReasonCode.IMAGE_FETCH_FAILED
    # Without the deadline the body would take 10 s; the bound is 2x timeout_s plus slack.
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize(
    ("route", "detail"),
    [
        (send(404), "HTTP 404"),
        (send(200, PNG, {"Content-Encoding": "gzip"}), "Content-Encoding gzip"),
        (send(302), "without a Location"),
    ],
)
def test_bad_answers_fail_the_fetch(http: Server, route: Route, detail: str) -> None:
    http.routes["/x"] = route
    with pytest.raises(InvalidPostError) as caught:
        _fetcher().fetch(f"http://images.test:{http.port}/x")
    assert caught.value.reason is ReasonCode.IMAGE_FETCH_FAILED
    assert detail in caught.value.detail


def test_unresolvable_and_refused_hosts_fail_the_fetch() -> None:
    fetcher = _fetcher({"images.test": ["127.0.0.1"]})
    assert _reason(lambda: fetcher.fetch("http://a.cdn.test/x")) is ReasonCode.IMAGE_FETCH_FAILED
    assert _reason(lambda: fetcher.fetch("http://images.test:9/x")) is (
        ReasonCode.IMAGE_FETCH_FAILED
    )


def test_https_verifies_the_certificate_for_the_host_name(
    https: Server, ca: trustme.CA, tmp_path: pytest.TempPathFactory
) -> None:
    https.routes["/cat.png"] = send(200, PNG)
    ca_file = f"{tmp_path}/ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    url = f"https://images.test:{https.port}/cat.png"
    assert _fetcher(ca_file=ca_file).fetch(url) == PNG
    # Unknown CA, and a name the certificate does not carry (same server, same address).
    assert _reason(lambda: _fetcher().fetch(url)) is ReasonCode.IMAGE_FETCH_FAILED
    other_name = f"https://a.cdn.test:{https.port}/cat.png"
    assert _reason(lambda: _fetcher(ca_file=ca_file).fetch(other_name)) is (
        ReasonCode.IMAGE_FETCH_FAILED
    )


def test_decode_post_fetches_and_decodes_url_images(http: Server) -> None:
    http.routes["/cat.png"] = send(200, PNG)
    post = {
        "post_id": "p1",
        "author_id": "a1",
        "created_at": "2026-11-22T10:00:00Z",
        "caption": "hi",
        "image_url": f"http://images.test:{http.port}/cat.png",
    }
    limits = DecodeLimits()
    decoded = decode_post(orjson.dumps(post), limits, 16, _fetcher())
    assert decoded.pixels is not None and decoded.pixels.shape == (16, 16, 3)
    assert decoded.image_sha256 is not None
    # Without a fetcher the post is still decided, from its caption, the problem listed.
    unfetched = decode_post(orjson.dumps(post), limits, 16)
    assert list(unfetched.problems) == [ReasonCode.IMAGE_URL_DISABLED]
    assert unfetched.image_unreadable


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"enabled": True}, "allowed_hosts must name at least one host"),
        ({"allowed_hosts": ["*"]}, "is not a host name"),
        ({"allowed_hosts": ["images.test/path"]}, "is not a host name"),
        ({"allowed_schemes": ["ftp"]}, "allowed_schemes"),
        ({"allowed_networks": ["not-a-net"]}, "allowed_networks"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ImageUrlSettings.model_validate(settings)


def test_host_patterns_are_normalised() -> None:
    settings = ImageUrlSettings(allowed_hosts=["Images.TEST.", "[::1]"])
    assert settings.allowed_hosts == ["images.test", "::1"]
