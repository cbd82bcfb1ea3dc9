"""Micro-batching for the HTTP service: concurrent requests share model calls, off the event loop.

Requests put their quotes on a bounded queue; one collector task gathers up to `batch_size` quotes, waiting
at most `wait_ms` for more, and runs the model in a single worker thread. When the queue holds more than
`max_queued` quotes a new request is refused at once (the app answers 503 + Retry-After) instead of waiting
without bound.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from diplotag.model.tagger import BatchProbabilities, QuoteTagger


class Overloaded(RuntimeError):
    """The queue is full; retry later."""


@dataclass
class _Job:
    texts: list[str]
    targets: list[str | None]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    def __init__(
        self,
        tagger: QuoteTagger,
        batch_size: int = 64,
        wait_ms: float = 3.0,
        max_queued: int = 1024,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.tagger = tagger
        self.batch_size = batch_size
        self.wait = wait_ms / 1000.0
        self.max_queued = max_queued
        self.on_batch = on_batch
        self.queued = 0  # quotes waiting or running
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diplotag-model")
        self._task: asyncio.Task | None = None
        self.last_success: float | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="diplotag-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def predict(self, texts: Sequence[str], targets: Sequence[str | None]) -> BatchProbabilities:
        n = len(texts)
        if self.queued + n > self.max_queued:
            raise Overloaded(f"{self.queued} quotes already queued (limit {self.max_queued})")
        future = asyncio.get_running_loop().create_future()
        self.queued += n
        try:
            await self._queue.put(_Job(list(texts), list(targets), future))
            return await future
        finally:
            self.queued -= n

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            jobs, size = [first], len(first.texts)
            deadline = loop.time() + self.wait
            while size < self.batch_size:
                timeout = deadline - loop.time()
                try:
                    job = self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._queue.get(), timeout)
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                jobs.append(job)
                size += len(job.texts)
            jobs = [j for j in jobs if not j.future.cancelled()]  # a timed-out request needs no work
            if not jobs:
                continue
            texts = [t for j in jobs for t in j.texts]
            targets = [t for j in jobs for t in j.targets]
            started = time.perf_counter()
            try:
                result = await loop.run_in_executor(self._executor, self.tagger.predict_proba, texts, targets, self.batch_size)
            except Exception as e:  # a failure fails these requests, not the service
                if len(jobs) == 1:
                    if not jobs[0].future.done():
                        jobs[0].future.set_exception(e)
                    continue
                # one bad request must not fail the others that happened to share its micro-batch
                for j in jobs:
                    try:
                        part = await loop.run_in_executor(self._executor, self.tagger.predict_proba, j.texts, j.targets, self.batch_size)
                    except Exception as job_error:
                        if not j.future.done():
                            j.future.set_exception(job_error)
                    else:
                        if not j.future.done():
                            j.future.set_result(part)
                continue
            self.last_success = time.time()
            if self.on_batch:
                self.on_batch(len(texts), time.perf_counter() - started)
            start = 0
            for j in jobs:
                k = len(j.texts)
                part = BatchProbabilities({name: p[start : start + k] for name, p in result.probs.items()}, result.truncated[start : start + k])
                start += k
                if not j.future.done():
                    j.future.set_result(part)

