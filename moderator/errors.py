"""Root error types and the dead-letter reason codes.

Every input error a worker can meet maps to one `ReasonCode`. A record that is not a post
(`RECORD_REASONS`) goes to the dead-letter topic with its code in the headers. A post with an
odd or unusable part (`PROBLEM_REASONS`) is decided from what could be read, with the codes in
its decision's `problems`; `limits.dead_letter_problems` can dead-letter chosen ones instead.
"""

from __future__ import annotations

from enum import StrEnum


class ModeratorError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(ModeratorError):
    """A settings file or environment variable is invalid; the message names the field."""


class ReasonCode(StrEnum):
    """Why a record was dead-lettered, or what was wrong with a decided post. Values are
    stable: dashboards and policies use them."""

    # -- not a post: always dead-lettered --------------------------------------------------
    MESSAGE_TOO_LARGE = "message_too_large"
    INVALID_JSON = "invalid_json"
    INVALID_UTF8 = "invalid_utf8"
    SCHEMA_VIOLATION = "schema_violation"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    # An unexpected error while parsing: a bug to report, dead-lettered so it cannot
    # block its partition as a poison pill.
    DECODER_ERROR = "decoder_error"
    # A record on the verdicts topic that is not a valid Verdict (moderator.verdicts): sent
    # to the verdicts' own dead-letter topic, never replayed onto the posts topic.
    INVALID_VERDICT = "invalid_verdict"
    # -- problems of a post: decided, listed in the decision's `problems` ----------------
    # The Kafka key is not the post_id, or a top-level field appears twice in the JSON.
    KEY_MISMATCH = "key_mismatch"
    DUPLICATE_FIELDS = "duplicate_fields"
    # Caption over the cap (its start is read), or not a string (read as "").
    CAPTION_TOO_LONG = "caption_too_long"
    CAPTION_INVALID = "caption_invalid"
    # Characters removed from the text the model and term lists read (moderator.text).
    CAPTION_CONTROL_CHARS = "caption_control_chars"
    CAPTION_BIDI_OVERRIDE = "caption_bidi_override"
    CAPTION_BIDI_ISOLATE = "caption_bidi_isolate"
    CAPTION_INVISIBLE_CHARS = "caption_invisible_chars"
    # lang or metadata unusable: read as absent.
    LANG_INVALID = "lang_invalid"
    METADATA_INVALID = "metadata_invalid"
    # The image could not be read: the post is scored from its caption.
    IMAGE_INVALID = "image_invalid"
    IMAGE_SOURCE_CONFLICT = "image_source_conflict"
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
    # Found after decoding, by the worker's signals (moderator.signals): always decided.
    # OCR stopped at a cap (boxes, time, characters): decided on the text it read.
    OCR_TRUNCATED = "ocr_truncated"
    # A signal (OCR, image safety) failed on this post: decided without its outputs.
    SIGNAL_FAILED = "signal_failed"
    # Animations, videos and albums (moderator.ingest.media): the frames that could be read
    # are scored, the rest is listed here.
    FRAMES_OVER_CAP = "frames_over_cap"
    ANIMATION_CORRUPT = "animation_corrupt"
    MEDIA_DECODE_BUDGET = "media_decode_budget"
    ALBUM_TOO_LARGE = "album_too_large"
    ALBUM_IMAGE_UNREADABLE = "album_image_unreadable"
    VIDEO_INVALID = "video_invalid"
    VIDEO_SOURCE_CONFLICT = "video_source_conflict"
    VIDEO_DISABLED = "video_disabled"
    VIDEO_TOO_LARGE = "video_too_large"
    VIDEO_TOO_LONG = "video_too_long"
    VIDEO_FRAME_RATE_TOO_HIGH = "video_frame_rate_too_high"
    VIDEO_TOO_MANY_PIXELS = "video_too_many_pixels"
    VIDEO_CONTAINER_UNSUPPORTED = "video_container_unsupported"
    VIDEO_CODEC_UNSUPPORTED = "video_codec_unsupported"
    VIDEO_CORRUPT = "video_corrupt"


RECORD_REASONS = frozenset(
    {
        ReasonCode.MESSAGE_TOO_LARGE,
        ReasonCode.INVALID_JSON,
        ReasonCode.INVALID_UTF8,
        ReasonCode.SCHEMA_VIOLATION,
        ReasonCode.UNSUPPORTED_SCHEMA_VERSION,
        ReasonCode.DECODER_ERROR,
        ReasonCode.INVALID_VERDICT,
    }
)
PROBLEM_REASONS = frozenset(ReasonCode) - RECORD_REASONS
SIGNAL_PROBLEMS = frozenset({ReasonCode.OCR_TRUNCATED, ReasonCode.SIGNAL_FAILED})
IMAGE_PROBLEMS = frozenset(
    code
    for code in PROBLEM_REASONS
    if code.value.startswith("image_") or code.value == "bad_base64"
)
# The image problems that leave a post without pixels (a source conflict keeps the inline
# image): `post.image_unreadable` for policies, from the decoder or a logged decision alike.
UNREADABLE_IMAGE_PROBLEMS = IMAGE_PROBLEMS - {ReasonCode.IMAGE_SOURCE_CONFLICT}


class UnreadableReason(StrEnum):
    """Why a fetched record batch could not be read (moderator.io.unreadable). Values are
    metric labels: keep them stable."""

    UNSUPPORTED_CODEC = "unsupported_codec"
    CORRUPT_BATCH = "corrupt_batch"
    UNDECODABLE_BATCH = "undecodable_batch"


class InvalidPostError(ModeratorError):
    """A record cannot be turned into a post, or a part of a post cannot be read.

    Raised with a `RECORD_REASONS` code, the record goes to the dead-letter topic; with a
    `PROBLEM_REASONS` code, the decoder records it as one of the post's problems."""

    def __init__(self, reason: ReasonCode, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
