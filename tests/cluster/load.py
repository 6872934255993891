"""A steady OCR load on the server, as a careful client sends it: failed attempts are counted,
and those a client may retry are retried, each request until it succeeds or runs out of tries.

Plain Python over tritonclient: no Ray here, so the retry rule has unit tests (tests/unit).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tritonclient.utils import InferenceServerException

# The server lost the request in flight with a node: a replica, or a tensor in that node's object
# store, went away under it, and the next attempt reaches live ones. Ray's names for it (ray.exceptions),
# as the server's 500 body quotes them. ReferenceCountingAssertionError was seen once, right
# after the kill, for a tensor whose owner had already dropped it (ray PR #63560).
LOST_IN_FLIGHT = (
    "ActorDiedError",
    "RayActorError",
    "ActorUnavailableError",
    "OwnerDiedError",
    "ObjectLostError",
    "ObjectFetchTimedOutError",
    "ReferenceCountingAssertionError",
    "NodeDiedError",
    "replica died",
)
RETRYABLE_STATUS = {"502", "503", "504"}  # the proxy has no live replica, or gave up waiting


def retryable(exc: BaseException) -> bool:
    """Whether a client may send the same request again: the server lost it, not refused it."""
    if isinstance(exc, InferenceServerException):
        status = exc.status()
        if status in RETRYABLE_STATUS:
            return True
        return status == "500" and any(name in (exc.message() or "") for name in LOST_IN_FLIGHT)
    return isinstance(exc, OSError)  # refused, reset or timed out: ConnectionError and TimeoutError are OSErrors


def describe(exc: BaseException) -> str:
    """A short key to count failures by: the status and Ray's error name if any, else the class."""
    if isinstance(exc, InferenceServerException):
        message = exc.message() or ""
        cause = next((name for name in LOST_IN_FLIGHT if name in message), "other")
        return f"{exc.status()} {cause}"
    return type(exc).__name__


@dataclass
class Attempt:
    started: float
    error: str | None = None  # describe() of the failure, None if it succeeded
    retryable: bool = False
    message: str = ""


@dataclass
class Request:
    attempts: list[Attempt] = field(default_factory=list)
    result: list[str] | None = None  # the texts read, once an attempt succeeded

    @property
    def succeeded(self) -> bool:
        return self.result is not None


class Load:
    """``clients`` threads, each sending one request after another through ``send`` (a callable
    making one attempt and returning the texts) until stopped; a request is retried while its
    failures are retryable, up to ``max_attempts`` tries, with a short pause between tries."""

    def __init__(
        self,
        send: Callable[[int], list[str]],
        clients: int = 2,
        max_attempts: int = 40,
        retry_pause: float = 0.25,
        max_seconds: float = 600.0,
    ) -> None:
        self.send, self.clients, self.max_attempts = send, clients, max_attempts
        self.retry_pause, self.max_seconds = retry_pause, max_seconds
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        self.deadline = time.monotonic() + self.max_seconds  # bounded even if never stopped
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()

    def _client(self, index: int) -> None:
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            request = Request()
            with self.lock:
                self.requests.append(request)
            self._complete(index, request)

    def _complete(self, index: int, request: Request) -> None:
        """Try until success, a failure a client must not retry, or the last try."""
        for _ in range(self.max_attempts):
            attempt = Attempt(time.monotonic())
            request.attempts.append(attempt)
            try:
                request.result = self.send(index)
                return
            except Exception as exc:  # every failure is counted; only retryable ones are retried
                attempt.error, attempt.retryable, attempt.message = describe(exc), retryable(exc), str(exc)[:600]
                if not attempt.retryable:
                    return
            time.sleep(self.retry_pause)  # a client's back-off, not a wait on a condition

    # --- what happened --------------------------------------------------------------------------

    def snapshot(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def mark(self) -> int:
        """A point in the load: the number of requests begun so far (an event order, not a clock)."""
        with self.lock:
            return len(self.requests)

    def succeeded_since(self, mark: int) -> int:
        """Requests begun after ``mark`` that succeeded."""
        return sum(1 for r in self.snapshot()[mark:] if r.succeeded)

    def succeeded_after(self, moment: float) -> int:
        """Requests whose successful attempt started after ``moment``."""
        return sum(1 for r in self.snapshot() if r.succeeded and r.attempts[-1].started > moment)

    def failures(self) -> Counter:
        return Counter(a.error for r in self.snapshot() for a in r.attempts if a.error)

    def examples(self) -> dict[str, str]:
        """The first message of each kind of failure, to show what the server said."""
        found: dict[str, str] = {}
        for request in self.snapshot():
            for attempt in request.attempts:
                if attempt.error:
                    found.setdefault(attempt.error, attempt.message)
        return found

    def fatal(self) -> list[Attempt]:
        return [a for r in self.snapshot() for a in r.attempts if a.error and not a.retryable]
