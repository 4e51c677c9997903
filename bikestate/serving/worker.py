"""The inference worker: one thread that runs the model, fed by a bounded queue.

A CPU model is fastest when one inference uses all the cores it is given (``--threads``); two
at once only share them. So the service runs inferences one at a time in a single thread, and
requests that arrive meanwhile wait in a queue of bounded length. When the queue is full a
request is refused at once (:class:`QueueFullError`, answered 503 with ``Retry-After``) rather
than waiting longer than any client would: the load a service can take is decided here, not by
the clients' timeouts.
"""
import concurrent.futures
import logging
import math
import queue
import threading
import time

__all__ = ["InferenceWorker", "QueueFullError"]

logger = logging.getLogger(__name__)

# Weight of the newest job in the running mean of job durations (the Retry-After estimate).
_DURATION_SMOOTHING = 0.2


class QueueFullError(Exception):
    """The queue holds ``queue_size`` jobs already; ``retry_after`` (s) estimates when it will
    have room again."""

    def __init__(self, queue_size, retry_after):
        waiting = f"{queue_size} request{'s' if queue_size != 1 else ''} waiting"
        super().__init__(f"the inspection queue is full ({waiting}); "
                         f"try again in {retry_after} s")
        self.retry_after = retry_after


class InferenceWorker:
    """Run jobs one at a time in a thread; at most ``queue_size`` jobs wait.

    Jobs are plain callables; :meth:`submit` returns a :class:`concurrent.futures.Future` of
    the job's return value (or exception), which ``asyncio.wrap_future`` turns into an
    awaitable. A job that is running does not count against ``queue_size``: one job runs and
    ``queue_size`` wait, whether or not the thread has yet taken the next job off the queue
    (admission counts the jobs held, not the queue's length, so it does not depend on when the
    thread is scheduled).

    Args:
        queue_size (int): jobs that may wait, >= 1.
        name (str): the thread's name.
    """

    def __init__(self, queue_size, name="inference"):
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.queue_size = queue_size
        self._queue = queue.Queue()  # unbounded: admission is decided by _held
        self._held = 0  # jobs admitted and not finished (running + waiting)
        self._held_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._mean_seconds = None  # running mean of job durations, None before the first job
        self._accepting = True
        self._running = False

    def start(self):
        self._thread.start()
        return self

    def submit(self, fn, *args, **kwargs):
        """Queue ``fn(*args, **kwargs)``; raises :class:`QueueFullError` when the queue is full
        and ``RuntimeError`` after :meth:`stop`."""
        if not self._accepting:
            raise RuntimeError("the inference worker is stopping")
        with self._held_lock:
            if self._held >= self.queue_size + 1:
                raise QueueFullError(self.queue_size, self.retry_after())
            self._held += 1
        future = concurrent.futures.Future()
        self._queue.put_nowait((future, fn, args, kwargs, time.perf_counter()))
        return future

    def waiting(self):
        """Jobs waiting now (a snapshot: another thread may change it at once)."""
        return max(0, self._held - int(self._running))

    def _release(self):
        with self._held_lock:
            self._held -= 1

    def running(self):
        """Whether a job is running now."""
        return self._running

    def retry_after(self):
        """Whole seconds until the queue has probably drained by one job (at least 1)."""
        mean = self._mean_seconds or 1.0
        return max(1, math.ceil(mean * (self.waiting() + 1)))

    def stop(self, timeout=None):
        """Refuse new jobs, let the queued ones finish, end the thread (wait ``timeout`` s)."""
        self._accepting = False
        if self._thread.is_alive():
            self._queue.put((None, None, None, None, None))
            self._thread.join(timeout)

    def _loop(self):
        while True:
            future, fn, args, kwargs, queued_at = self._queue.get()
            if future is None:
                return
            if not future.set_running_or_notify_cancel():
                self._release()
                continue  # the request went away while waiting
            started = time.perf_counter()
            value = error = None
            self._running = True
            try:
                value = fn(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001  the request answers for it
                error = e
            self._running = False
            # Room for the next job before this one's answer is out, so that a client that
            # sends again as soon as it has its answer is admitted.
            self._release()
            elapsed = time.perf_counter() - started
            self._mean_seconds = elapsed if self._mean_seconds is None else (
                _DURATION_SMOOTHING * elapsed + (1 - _DURATION_SMOOTHING) * self._mean_seconds)
            # Read by the request once the future is done, so set before it is.
            future.timing = {"queued_ms": 1000 * (started - queued_at),
                             "inference_ms": 1000 * elapsed}
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)
