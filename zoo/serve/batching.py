"""Dynamic batching: concurrent requests to one model share one model call.

Each served model has one `Batcher` and one worker thread. A request hands
its items (rows, prompts, noise vectors) to `submit` under a *key*: items
can share a model call only when their keys are equal (a GPT-2 sampler's
kind and the bucket of its `max_length`, say). The worker takes the oldest
waiting request, then gathers later ones of the same key, in arrival order,
until the batch holds `max_batch_size` items or `timeout_s` has passed
since that oldest request arrived (the bounded wait), and calls
`run_batch(key, items, sinks)` once. It answers each request with its own
slice of the results, in the order of its items.

A failure stays with the request that caused it: `run_batch` may return an
`Exception` in place of an item's result, which fails only that item's
request; and when the whole call raises, each request of the batch is run
again on its own, so the others still get their answers (a request that
has already streamed part of its answer fails instead of repeating it).

With `max_batch_size=1` every request is its own model call: batching off,
the baseline of `benchmarks/serving.py`.
"""

import asyncio
import collections
import concurrent.futures
import functools
import threading
import time


class Job:
    """One request's items, the future of its results, and its stream."""

    def __init__(self, key, items, sink=None):
        self.key = key
        self.items = list(items)
        self.sink = sink
        self.future = concurrent.futures.Future()
        self.arrived = time.monotonic()
        self.streamed = False

    def emit(self, index, event):
        """Passes a streamed event of item `index` to the request's sink."""
        if self.sink is not None:
            self.streamed = True
            self.sink(index, event)


class Batcher:
    """Gathers the requests to one model into batches on a worker thread.

    Args:
        run_batch: callable. `run_batch(key, items, sinks) -> list`, one
            result (or `Exception`) per item, in order; `sinks[i](event)`
            streams an event of item `i` to its request.
        max_batch_size: int. Most items in one call; 1 turns batching off.
        timeout_s: float. Longest wait for more requests after the oldest
            waiting one arrived.
        name: str. The worker thread's name.

    ```python
    batcher = Batcher(lambda key, items, sinks: [x * 2 for x in items], 32, 0.005)
    await batcher.submit("rows", [1, 2])   # [2, 4]
    ```
    """

    def __init__(self, run_batch, max_batch_size, timeout_s, name="batcher"):
        self.run_batch = run_batch
        self.max_batch_size = max(1, int(max_batch_size))
        self.timeout_s = max(0.0, float(timeout_s))
        self._pending = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self.stats = {"requests": 0, "items": 0, "batches": 0, "largest_batch": 0, "failed_batches": 0}
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    async def submit(self, key, items, sink=None):
        """Runs `items` in a batch; returns their results in order.

        Args:
            key: hashable. Items batch together only with equal keys.
            items: list. The request's items.
            sink: callable or None. `sink(index, event)` receives the
                streamed events of item `index`, on the event loop's thread.

        Raises:
            The exception an item's result was, or `run_batch`'s own when
            the request failed on its own.
        """
        if sink is not None:
            loop = asyncio.get_running_loop()
            outer = sink
            sink = lambda index, event: loop.call_soon_threadsafe(outer, index, event)  # noqa: E731
        job = Job(key, items, sink)
        self.put(job)
        return await asyncio.wrap_future(job.future)

    def put(self, job):
        with self._cond:
            if self._closing:
                raise RuntimeError("The batcher is closed; the server is shutting down.")
            self._pending.append(job)
            self._cond.notify()

    def close(self, timeout=None):
        """Finishes the waiting requests, then stops the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _size(self, jobs):
        return sum(len(j.items) for j in jobs)

    def _take(self):
        """The next batch: the oldest job and later ones of its key."""
        with self._cond:
            while not self._pending:
                if self._closing:
                    return None
                self._cond.wait()
            first = self._pending[0]
            deadline = first.arrived + self.timeout_s
            while not self._closing:
                same = [j for j in self._pending if j.key == first.key]
                left = deadline - time.monotonic()
                if self._size(same) >= self.max_batch_size or left <= 0:
                    break
                self._cond.wait(left)
            batch, size = [], 0
            for job in list(self._pending):
                if job.key != first.key:
                    continue
                if batch and size + len(job.items) > self.max_batch_size:
                    break
                batch.append(job)
                size += len(job.items)
                self._pending.remove(job)
            return batch

    def _work(self):
        while True:
            batch = self._take()
            if batch is None:
                return
            self._run(batch, isolate=len(batch) > 1)

    def _run(self, batch, isolate):
        items = [item for job in batch for item in job.items]
        sinks = [functools.partial(job.emit, i) for job in batch for i in range(len(job.items))]
        self.stats["batches"] += 1
        self.stats["requests"] += len(batch)
        self.stats["items"] += len(items)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(items))
        try:
            results = self.run_batch(batch[0].key, items, sinks)
            if len(results) != len(items):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items.")
        except Exception as error:  # noqa: BLE001  Isolated below, re-raised to its request.
            self.stats["failed_batches"] += 1
            if not isolate:
                for job in batch:
                    job.future.set_exception(error)
                return
            for job in batch:
                if job.streamed:
                    job.future.set_exception(error)
                else:
                    self._run([job], isolate=False)
            return
        start = 0
        for job in batch:
            mine = results[start:start + len(job.items)]
            start += len(job.items)
            failed = next((r for r in mine if isinstance(r, Exception)), None)
            if failed is not None:
                job.future.set_exception(failed)
            else:
                job.future.set_result(mine)

