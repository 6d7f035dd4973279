"""Root error types and the dead-letter reason codes.

Every input error a worker can meet maps to one `ReasonCode`; the code travels in
the dead-letter record's headers so operators can count and replay by reason.
"""

from __future__ import annotations

from enum import StrEnum


class ModeratorError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(ModeratorError):
    """A settings file or environment variable is invalid; the message names the field."""


class ReasonCode(StrEnum):
    """Why a record went to the dead-letter topic. Values are stable: dashboards use them."""

    MESSAGE_TOO_LARGE = "message_too_large"
    INVALID_JSON = "invalid_json"
    INVALID_UTF8 = "invalid_utf8"
    SCHEMA_VIOLATION = "schema_violation"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    KEY_MISMATCH = "key_mismatch"
    BAD_BASE64 = "bad_base64"
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_FORMAT_NOT_ALLOWED = "image_format_not_allowed"
    IMAGE_TOO_MANY_PIXELS = "image_too_many_pixels"
    IMAGE_CORRUPT = "image_corrupt"
    IMAGE_URL_DISABLED = "image_url_disabled"
    # Scheme, host or redirect target outside limits.image_urls, or too many redirects.
    IMAGE_URL_NOT_ALLOWED = "image_url_not_allowed"
    # The host resolved to a private, loopback, link-local or reserved address (SSRF).
    IMAGE_URL_PRIVATE_ADDRESS = "image_url_private_address"
    # DNS failure, refused connection, timeout, TLS error or a non-200 answer.
    IMAGE_FETCH_FAILED = "image_fetch_failed"
    # An unexpected error while decoding: a bug to report, dead-lettered so it cannot
    # block its partition as a poison pill.
    DECODER_ERROR = "decoder_error"


class InvalidPostError(ModeratorError):
    """A record cannot be turned into a post; it goes to the dead-letter topic."""

    def __init__(self, reason: ReasonCode, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
