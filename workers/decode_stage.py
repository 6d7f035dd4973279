"""Polled records → decoded posts or the reason each one cannot be moderated.

Decoding is the worker's first stage and the only one that may wait on the network: an
image_url post is fetched from an allowed host (moderator.ingest.ImageFetcher). The fetches
run side by side on a pool owned here, so one slow host costs a batch one timeout, not one
each, while the records keep their order. The stage never raises for a record: a record
it cannot read, or a decoder bug, becomes an InvalidPostError for the dead-letter topic,
so no record can become a poison pill that blocks its partition.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from kafka.consumer.fetcher import ConsumerRecord

from moderator.config import DecodeLimits
from moderator.errors import InvalidPostError, ReasonCode
from moderator.ingest import DecodedPost, ImageFetcher, load_image, parse_post
from moderator.schema.post import Post

logger = logging.getLogger(__name__)

Decoded = tuple[ConsumerRecord, DecodedPost | InvalidPostError]


class DecodeStage:
    """Decodes a polled batch in record order, fetching image_url posts on its own pool."""

    def __init__(
        self, limits: DecodeLimits, image_size: int, reading_side: int | None = None
    ) -> None:
        """`reading_side`: keep a copy of each image for OCR with at most that longest side."""
        self.limits = limits
        self.image_size = image_size
        self.reading_side = reading_side
        image_urls = limits.image_urls
        self.fetcher = (
            ImageFetcher(image_urls, limits.max_image_bytes) if image_urls.enabled else None
        )
        self._fetch_pool = (
            ThreadPoolExecutor(max_workers=image_urls.concurrency, thread_name_prefix="fetch")
            if self.fetcher is not None
            else None
        )

    def decode_all(self, records: list[ConsumerRecord], pdq: bool = False) -> list[Decoded]:
        """Decode in record order; image_url posts are fetched on the fetch pool meanwhile.
        `pdq`: compute PDQ hashes too (the policy has a PDQ bank)."""
        limits, size = self.limits, self.image_size
        load = partial(load_image, reading_side=self.reading_side, pdq=pdq)
        staged: list[tuple[ConsumerRecord, DecodedPost | InvalidPostError | Future[DecodedPost]]]
        staged = []
        for record in records:
            try:
                parsed = parse_post(record.value, limits, record.key)
                if _fetches(parsed.post) and self._fetch_pool is not None:
                    future = self._fetch_pool.submit(load, parsed, limits, size, self.fetcher)
                    staged.append((record, future))
                else:
                    staged.append((record, load(parsed, limits, size)))
            except Exception as exc:
                staged.append((record, as_invalid(record, exc)))
        decoded: list[Decoded] = []
        for record, outcome in staged:
            if isinstance(outcome, Future):
                try:
                    outcome = outcome.result()
                except Exception as exc:
                    outcome = as_invalid(record, exc)
            decoded.append((record, outcome))
        return decoded

    def close(self) -> None:
        """Stop the fetch pool without waiting; fetches not started are cancelled."""
        if self._fetch_pool is not None:
            self._fetch_pool.shutdown(wait=False, cancel_futures=True)


def _fetches(post: Post) -> bool:
    """Whether decoding the post waits on the network (its image, an album image, a video)."""
    return (
        post.image_url is not None
        or post.video_url is not None
        or any(image.image_url is not None for image in post.images)
    )


def as_invalid(record: ConsumerRecord, exc: Exception) -> InvalidPostError:
    """The dead-letter reason for a record the decoder raised on."""
    if isinstance(exc, InvalidPostError):
        return exc
    # A decoder bug must not become a poison pill that blocks the partition.
    logger.error(
        "decoder failed on %s-%s@%s",
        record.topic,
        record.partition,
        record.offset,
        exc_info=exc,
    )
    return InvalidPostError(ReasonCode.DECODER_ERROR, f"{type(exc).__name__}: {exc}")
