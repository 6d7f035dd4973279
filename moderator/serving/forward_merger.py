"""One forward pass at a time on the compute thread; what arrives meanwhile goes in the next.

Ray Serve's @serve.batch closes a batch when its wait times out, whether or not the replica
is free to compute it. With forward passes off the event loop, a busy replica would then
queue many small batches and run them one after another, each paying the per-pass cost:
measured here, the Serve wait at 50% load tripled (69 → 194 ms p50). The merger takes every
batch handed over while a pass runs and computes them together as soon as the thread is
free, so the batch grows with the load, as it did when the loop itself was blocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class ForwardMerger(Generic[Item, Result]):
    """Runs `forward` on `executor` for the items of every call waiting when it is free.

    `forward` gets the waiting calls' items concatenated in arrival order and must return
    one result per item; each call gets its own slice back. An exception fails the calls of
    that pass only. Use from one event loop.
    """

    def __init__(
        self, executor: Executor, forward: Callable[[list[Item]], Sequence[Result]]
    ) -> None:
        self._executor = executor
        self._forward = forward
        self._waiting: list[tuple[list[Item], asyncio.Future[list[Result]]]] = []
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None  # held: the loop keeps weak references

    async def run(self, items: list[Item]) -> list[Result]:
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._waiting.append((items, future))
        if not self._busy:
            self._busy = True
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                calls, self._waiting = self._waiting, []
                merged = [item for items, _ in calls for item in items]
                try:
                    results = await loop.run_in_executor(self._executor, self._forward, merged)
                except Exception as exc:  # the pass failed: its callers get the error
                    for _, future in calls:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for items, future in calls:
                    if not future.done():  # a caller may have been cancelled meanwhile
                        future.set_result(list(results[start : start + len(items)]))
                    start += len(items)
        finally:
            self._busy = False
