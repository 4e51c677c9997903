"""The inference worker's admission: one job runs and ``queue_size`` wait, decided by the jobs
held rather than by when the worker thread is scheduled."""
import threading

import pytest

from bikestate.serving import InferenceWorker, QueueFullError


def test_one_running_and_queue_size_waiting_even_before_the_thread_takes_a_job():
    # Not started: no job has been taken off the queue, which is the moment a burst of requests
    # can arrive in before the thread runs. Two are admitted (one to run, one to wait).
    worker = InferenceWorker(queue_size=1)
    release = threading.Event()
    first = worker.submit(lambda: release.wait(30) and "first")
    second = worker.submit(lambda: "second")
    assert worker.waiting() == 2  # neither is running yet
    with pytest.raises(QueueFullError, match="the inspection queue is full") as refused:
        worker.submit(lambda: "third")
    assert refused.value.retry_after >= 1
    worker.start()
    release.set()
    assert first.result(30) == "first" and second.result(30) == "second"
    assert first.timing["inference_ms"] >= 0 and second.timing["queued_ms"] >= 0
    # Finished jobs give their places back, a failed one included.
    failing = worker.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(30)
    assert worker.submit(lambda: "again").result(30) == "again"
    assert worker.waiting() == 0 and not worker.running()
    worker.stop(timeout=30)
    with pytest.raises(RuntimeError, match="stopping"):
        worker.submit(lambda: None)


def test_a_cancelled_job_gives_its_place_back():
    worker = InferenceWorker(queue_size=1)
    release = threading.Event()
    running = worker.submit(release.wait, 30)
    waiting = worker.submit(lambda: "never")
    assert waiting.cancel()  # the request went away while waiting
    worker.start()
    release.set()
    assert running.result(30) is True
    assert worker.submit(lambda: "admitted").result(30) == "admitted"
    worker.stop(timeout=30)


def test_queue_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        InferenceWorker(queue_size=0)
