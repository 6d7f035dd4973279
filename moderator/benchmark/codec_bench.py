"""Kafka compression for the worker's producer: cost and size per codec, as ratios to none.

    .venv/bin/python -m moderator.benchmark.codec_bench [--records 20000] [--rounds 3]
        [--ingest-posts 0] [--json out.json]

Records are decision-shaped JSON (the fields workers/decisions.py writes, ~0.6 KB as with
the default policy's decisions, seeded),
keyed by post id. Three measures per codec, each also as a ratio to `none` from the
same run:

- produce records/s: a local Tansu broker (moderator.local.LocalBroker), the worker's own
  producer (moderator.io.create_producer: acks=all, linger 5 ms, 512 KiB batches) with
  kafka.compression_type set to the codec, records sent in bursts of 64 (one worker
  micro-batch) to a 4-partition topic, timed from the first send to flush() returning;
  then read back: a consumer reads them all (records/s), so the decode cost shows too;
- batch bytes per record: kafka-python's own batch builder (what the producer sends)
  on worker-shaped batches (each burst of 64 split over 4 partitions by the default
  partitioner, ~16 records a batch) and on 256-record batches (a busy producer);
- CPU per record: building (compress) and reading (decompress) those 16-record batches
  in this process, without a broker: what the codec costs the worker's own CPU;
- with --ingest-posts N: the whole worker, `moderator bench`'s no-op ingest run (one
  worker process, caption-only posts produced uncompressed, decisions in the codec).

Rounds rotate the codec order, and each figure is the median over rounds. A benchmark,
not a test: it prints one JSON line per codec and writes --json if given.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2
from kafka.record.default_records import DefaultRecordBase
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder

from moderator.benchmark import ingest
from moderator.config import DEFAULT_POLICY, KafkaSettings, RedisSettings, Settings
from moderator.demo.samples import sample_stream
from moderator.io import connection_options, create_producer, ensure_topics
from moderator.local import LocalBroker
from moderator.policy import load_policy

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
CODEC_IDS = {
    "none": DefaultRecordBase.CODEC_NONE,
    "gzip": DefaultRecordBase.CODEC_GZIP,
    "snappy": DefaultRecordBase.CODEC_SNAPPY,
    "lz4": DefaultRecordBase.CODEC_LZ4,
    "zstd": DefaultRecordBase.CODEC_ZSTD,
}
# Decisions carry a score per category of the default policy.
CATEGORIES = load_policy(DEFAULT_POLICY).categories
PARTITIONS = 4
BURST = 64


def decisions(count: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs shaped like the worker's decision records."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        post_id = f"post-{uuid.UUID(int=rng.getrandbits(128)).hex}"
        scores = {c: round(rng.random() ** 6, 6) for c in CATEGORIES}
        top = max(scores, key=scores.__getitem__)
        action = "block" if scores[top] > 0.9 else "review" if scores[top] > 0.6 else "allow"
        labels = [top] if action != "allow" else []
        record = {
            "schema_version": 1,
            "post_id": post_id,
            "author_id": f"author-{rng.randrange(100_000)}",
            "action": action,
            "labels": labels,
            "scores": scores,
            "rules_fired": [f"{top}.{action}"] if labels else [],
            "shadow_rules": ["experimental.caption_terms"] if rng.random() < 0.1 else [],
            "problems": [],
            "policy_version": "default@2",
            "model_version": "starter-1",
            "cache_hits": rng.sample(["image", "text"], rng.randrange(3)),
            "timings_ms": {
                stage: round(rng.uniform(0.05, 40.0), 3)
                for stage in ("decode", "cache", "inference", "loop", "model", "policy")
            },
            "source": {
                "topic": "posts",
                "partition": i % 12,
                "offset": 1_000_000 + i,
                "timestamp_ms": 1_767_225_600_000 + i * 13,
            },
        }
        out.append((post_id.encode(), orjson.dumps(record)))
    return out


def _batches(records: list[tuple[bytes, bytes]], per_batch: int) -> list[list[bytes]]:
    """Values grouped as the producer would batch them: per burst, per partition."""
    batches: list[list[bytes]] = []
    burst = per_batch * PARTITIONS
    for start in range(0, len(records), burst):
        grouped: dict[int, list[bytes]] = {}
        for key, value in records[start : start + burst]:
            # The default partitioner's choice for a keyed record.
            partition = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
            grouped.setdefault(partition, []).append(value)
        batches.extend(grouped.values())
    return batches


def _build(values: list[bytes], codec: str) -> bytearray:
    builder = MemoryRecordsBuilder(
        magic=2, compression_type=CODEC_IDS[codec], batch_size=1 << 24, offset=0
    )
    for value in values:
        builder.append(timestamp=1_767_225_600_000, key=None, value=value)
    builder.close()
    return bytearray(builder.buffer())


def offline(records: list[tuple[bytes, bytes]], codec: str) -> dict[str, float]:
    """Batch bytes per record at two batch sizes, and µs per record to build and to read."""
    worker_batches = _batches(records, BURST // PARTITIONS)
    started = time.perf_counter()
    built = [_build(values, codec) for values in worker_batches]
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    read = sum(1 for data in built for batch in _iter_batches(data) for _ in batch)  # decompresses
    read_s = time.perf_counter() - started
    assert read == len(records)
    busy = [_build(values, codec) for values in _batches(records, 256)]
    return {
        "bytes_per_record_16": sum(map(len, built)) / len(records),
        "bytes_per_record_256": sum(map(len, busy)) / len(records),
        "build_us_per_record": build_s / len(records) * 1e6,
        "read_us_per_record": read_s / len(records) * 1e6,
    }


def _iter_batches(data: bytearray) -> Any:
    records = MemoryRecords(data)
    while (batch := records.next_batch()) is not None:
        yield batch


def through_broker(
    kafka: KafkaSettings, records: list[tuple[bytes, bytes]], codec: str
) -> dict[str, float]:
    topic = f"codec-bench-{codec}-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, [topic], partitions=PARTITIONS)
    settings = kafka.model_copy(update={"compression_type": codec})
    producer = create_producer(settings)
    producer.send(topic, key=b"warm-up", value=b"{}").get(timeout=30)  # metadata, connection
    started = time.perf_counter()
    for start in range(0, len(records), BURST):
        for key, value in records[start : start + BURST]:
            producer.send(topic, key=key, value=value)
    producer.flush()
    produce_s = time.perf_counter() - started
    producer.close()

    consumer = KafkaConsumer(**connection_options(kafka), enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    expected, read = len(records) + 1, 0
    deadline = time.monotonic() + 120
    started = time.perf_counter()
    while read < expected and time.monotonic() < deadline:
        read += sum(len(batch) for batch in consumer.poll(timeout_ms=200).values())
    read_s = time.perf_counter() - started
    consumer.close()
    if read != expected:
        raise RuntimeError(f"{codec}: read back {read} of {expected} records")
    return {"produce_per_s": len(records) / produce_s, "read_per_s": len(records) / read_s}


def worker_ingest(kafka: KafkaSettings, posts: int, codec: str) -> dict[str, float]:
    """Posts/s of one worker process deciding `posts` caption-only posts (no-op model)."""
    settings = Settings(
        kafka=kafka.model_copy(update={"compression_type": codec}),
        redis=RedisSettings(enabled=False),
        author_state=False,
    )
    samples = sample_stream(posts, seed=23, image_share=0.0, malformed_share=0.0, run_id=codec)
    # Posts uncompressed, so only the decisions' codec differs between runs.
    result = ingest.run_ingest(settings, samples, processes=1, posts_codec="none")
    return {"ingest_posts_per_s": result.posts_per_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ingest-posts", type=int, default=0, help="0: no worker ingest runs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    records = decisions(args.records)
    mean_bytes = sum(len(v) for _, v in records) / len(records)
    print(f"{len(records)} decision records, {mean_bytes:.0f} bytes each on average")
    runs: dict[str, list[dict[str, float]]] = {codec: [] for codec in CODECS}
    with LocalBroker() as broker:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
        for round_ in range(args.rounds):
            order = CODECS[round_ % len(CODECS) :] + CODECS[: round_ % len(CODECS)]
            for codec in order:
                run = through_broker(kafka, records, codec) | offline(records, codec)
                if args.ingest_posts:
                    run |= worker_ingest(kafka, args.ingest_posts, codec)
                runs[codec].append(run)
    medians = {
        codec: {k: statistics.median(run[k] for run in results) for k in results[0]}
        for codec, results in runs.items()
    }
    base = medians["none"]
    rows = []
    for codec, figures in medians.items():
        row: dict[str, Any] = {"codec": codec, "record_bytes": round(mean_bytes)}
        for key, value in figures.items():
            row[key] = round(value, 2 if key.endswith("us_per_record") else 1)
            if not key.endswith("us_per_record"):
                row[f"{key}_vs_none"] = round(value / base[key], 3)
        # Every round's whole-broker and whole-worker figures, to show the spread.
        for key in ("produce_per_s", "ingest_posts_per_s"):
            if key in figures:
                row[f"{key}_rounds"] = [round(run[key]) for run in runs[codec]]
        rows.append(row)
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
