"""Fetch `image_url` posts without becoming an SSRF proxy.

Every hop (the first URL and each redirect) is checked the same way: scheme and host on
the allowlist, no credentials in the URL, and every address the host resolves to public
(private, loopback, link-local, reserved, multicast and IPv4-mapped forms of them are
refused unless an operator listed the network). The connection then goes to the address
that was checked — never a second lookup — so DNS rebinding cannot swap it; HTTPS still
verifies the certificate for the host name (SNI). Size is capped while reading (and by
Content-Length up front), time by one deadline over the whole fetch, and compressed
transfer encodings are not accepted, so a small gzip cannot expand past the cap.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError

from moderator.config import ImageUrlSettings
from moderator.errors import InvalidPostError, ReasonCode

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) → addresses; the default asks the system resolver. Tests pass their own.
Resolver = Callable[[str, int], list[IpAddress]]

_REDIRECTS = {301, 302, 303, 307, 308}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHUNK = 64 * 1024


def system_resolver(host: str, port: int) -> list[IpAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # sockaddr[0] is the address text; drop an IPv6 zone ("fe80::1%eth0").
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def is_public_address(address: IpAddress) -> bool:
    """True only for globally routable unicast addresses, looking inside IPv6 wrappers."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in ipaddress.IPv6Network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)  # NAT64
        if embedded is not None and not is_public_address(embedded):
            return False
    return address.is_global and not address.is_multicast


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line


class ImageFetcher:
    """Fetch image bytes from allowed hosts; every refusal is an InvalidPostError."""

    def __init__(
        self,
        settings: ImageUrlSettings,
        max_bytes: int,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self.max_bytes = max_bytes
        self.resolver = resolver
        self._tls = ssl.create_default_context()
        if settings.ca_file is not None:
            self._tls.load_verify_locations(cafile=str(settings.ca_file))

    def fetch(self, url: str) -> bytes:
        deadline = time.monotonic() + self.settings.timeout_s
        for _ in range(self.settings.max_redirects + 1):
            target = self._check_url(url)
            address = self._checked_address(target)
            pool = self._pool(target, address, deadline)
            response = None
            try:
                response = self._request(pool, target)
                if response.status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise _failed(f"HTTP {response.status} without a Location header")
                    url = urljoin(target.url, location)
                    continue
                if response.status != 200:
                    raise _failed(f"HTTP {response.status} from {target.host}")
                return self._read_capped(response, deadline)
            finally:
                if response is not None:
                    response.close()
                pool.close()
        raise InvalidPostError(
            ReasonCode.IMAGE_URL_NOT_ALLOWED,
            f"more than {self.settings.max_redirects} redirects",
        )

    def _check_url(self, url: str) -> _Target:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise _not_allowed(f"unparseable URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in self.settings.allowed_schemes:
            raise _not_allowed(f"scheme {scheme or '(none)'!r} is not allowed")
        if parts.username is not None or parts.password is not None:
            raise _not_allowed("credentials in the URL are not allowed")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise _not_allowed("URL has no host")
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host
        if not self._host_allowed(host):
            raise _not_allowed(f"host {host!r} is not on limits.image_urls.allowed_hosts")
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        return _Target(url, scheme, host, port or _DEFAULT_PORTS[scheme], path)

    def _host_allowed(self, host: str) -> bool:
        for pattern in self.settings.allowed_hosts:
            # "*.example.com" matches subdomains only: the host must end with ".example.com".
            if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return True
        return False

    def _checked_address(self, target: _Target) -> IpAddress:
        try:
            addresses = self.resolver(target.host, target.port)
        except (OSError, UnicodeError) as exc:
            raise _failed(f"cannot resolve {target.host}: {exc}") from exc
        if not addresses:
            raise _failed(f"{target.host} has no addresses")
        # All of them, not just the one we would use: a mixed answer is a rebinding attempt.
        for address in addresses:
            exempt = any(address in net for net in self.settings.allowed_networks)
            if not exempt and not is_public_address(address):
                raise InvalidPostError(
                    ReasonCode.IMAGE_URL_PRIVATE_ADDRESS,
                    f"{target.host} resolves to non-public address {address}",
                )
        return addresses[0]

    def _pool(
        self, target: _Target, address: IpAddress, deadline: float
    ) -> urllib3.HTTPConnectionPool:
        # A socket read waits at most what was left at the start, so a silent server can
        # hold a fetch up to twice timeout_s; the deadline is checked between reads.
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _failed(f"timed out after {self.settings.timeout_s} s")
        timeout = urllib3.Timeout(
            connect=min(self.settings.connect_timeout_s, remaining), read=remaining
        )
        if target.scheme == "https":
            return urllib3.HTTPSConnectionPool(
                str(address),
                target.port,
                timeout=timeout,
                retries=False,
                maxsize=1,
                ssl_context=self._tls,
                server_hostname=target.host,
                assert_hostname=target.host,
            )
        return urllib3.HTTPConnectionPool(
            str(address), target.port, timeout=timeout, retries=False, maxsize=1
        )

    def _request(
        self, pool: urllib3.HTTPConnectionPool, target: _Target
    ) -> urllib3.BaseHTTPResponse:
        default_port = _DEFAULT_PORTS[target.scheme] == target.port
        headers = {
            "Host": target.host if default_port else f"{target.host}:{target.port}",
            "Accept": "image/*",
            "Accept-Encoding": "identity",
            "User-Agent": "moderator-image-fetcher",
        }
        try:
            return pool.urlopen(
                "GET",
                target.path,
                headers=headers,
                redirect=False,
                preload_content=False,
                decode_content=False,
                assert_same_host=False,
            )
        except (HTTPError, OSError) as exc:
            raise _failed(f"{target.host}: {type(exc).__name__}: {exc}") from exc

    def _read_capped(self, response: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        encoding = response.headers.get("Content-Encoding", "identity").lower()
        if encoding not in ("identity", ""):
            raise _failed(f"Content-Encoding {encoding} is not accepted")
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            raise InvalidPostError(
                ReasonCode.IMAGE_TOO_LARGE, f"image is {length} bytes, limit {self.max_bytes}"
            )
        body = bytearray()
        try:
            # read1 returns after one socket read, so the deadline also stops a trickling server.
            while chunk := response.read1(_CHUNK):
                body += chunk
                if len(body) > self.max_bytes:
                    raise InvalidPostError(
                        ReasonCode.IMAGE_TOO_LARGE, f"image is over {self.max_bytes} bytes"
                    )
                if time.monotonic() > deadline:
                    raise _failed(f"timed out after {self.settings.timeout_s} s")
        except (HTTPError, OSError) as exc:
            raise _failed(f"reading the body: {type(exc).__name__}: {exc}") from exc
        return bytes(body)


def _not_allowed(detail: str) -> InvalidPostError:
    return InvalidPostError(ReasonCode.IMAGE_URL_NOT_ALLOWED, detail)


def _failed(detail: str) -> InvalidPostError:
    return InvalidPostError(ReasonCode.IMAGE_FETCH_FAILED, detail)
