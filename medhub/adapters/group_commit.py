"""Group commit: many messages from many connections stored in one transaction.

Every ACK promises a durable commit, and a durable commit costs an fsync (about
a millisecond or more). Committing each message alone caps a listener at the
fsync rate; committing whatever has queued up while the previous commit ran
costs one fsync for the lot, and adds no delay when traffic is light (a lone
message is committed at once).

Each connection submits the frames it has read as one *group*; a group is
never split across batches and groups of one connection are never in flight
together, so messages from one sender are applied in the order sent even with
several commit workers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from medhub.hl7.inbound import InboundOutcome

log = structlog.get_logger(__name__)

BatchProcessor = Callable[[Sequence[tuple[bytes, str]]], list[InboundOutcome]]


@dataclass
class _Group:
    items: list[tuple[bytes, str]]
    done: asyncio.Future[list[InboundOutcome]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommitter:
    """Queues groups of messages and commits them in batches on worker threads."""

    def __init__(self, process: BatchProcessor, *, max_batch: int = 200, workers: int = 1) -> None:
        self._process = process
        self._max_batch = max_batch
        self._workers = workers
        self._queue: asyncio.Queue[_Group] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._queued = 0

    @property
    def queued(self) -> int:
        """Messages submitted and not yet taken into a batch (``/metrics``).

        Above ``max_batch`` for long, the database is slower than the senders and
        ACK latency grows with the queue.
        """
        return self._queued

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def submit(self, items: list[tuple[bytes, str]]) -> list[InboundOutcome]:
        """Store these messages (one connection's, in order) and return their outcomes."""
        if self._queue is None:
            raise RuntimeError("the group committer is not started")
        group = _Group(items)
        self._queued += len(items)
        await self._queue.put(group)
        return await group.done

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            groups = [await self._queue.get()]
            size = len(groups[0].items)
            while size < self._max_batch and not self._queue.empty():
                group = self._queue.get_nowait()
                groups.append(group)
                size += len(group.items)
            batch = [item for group in groups for item in group.items]
            self._queued -= len(batch)
            try:
                outcomes = await asyncio.to_thread(self._process, batch)
            except Exception as exc:  # the processor answers errors itself; this is a bug
                log.exception("mllp.batch_crashed", size=len(batch))
                for group in groups:
                    if not group.done.done():
                        group.done.set_exception(exc)
                continue
            start = 0
            for group in groups:
                end = start + len(group.items)
                if not group.done.done():
                    group.done.set_result(outcomes[start:end])
                start = end
