"""Steady client load on models and pipelines a reload does not touch, on a machine kept busy.

A reload must never cost a request to what it did not change, however busy the machine, nor
must a crash the guard catches in the pipeline runner. Those tests run inside ``SteadyLoad``:
several clients send requests back to back to unchanged models and pipelines while one
busy-looping process per core competes with the server. Every case's counts are kept in
``REPORT`` and printed at the end of the session (conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import httpx

from tests.integration.conftest import wait_for

DUMMY = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1.0] * 10}]}
NUMBERS = {"inputs": [{"name": "numbers", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]}

# (path, body, the first output's data): a model, a pipeline over a C node in its own
# deployment, and one with the node inline. No reload test changes any of them.
UNCHANGED = (
    ("/v2/models/all/versions/1/infer", DUMMY, [2.0] * 10),
    ("/v2/models/scale/infer", NUMBERS, [2.5, 5.0, 7.5, 10.0]),
    ("/v2/models/add-sub-inline/infer", NUMBERS, [4.0, 5.0, 6.0, 7.0]),
)
CLIENTS = 4
PAUSE = 0.01  # each client's pause between requests: a steady load, not a flood of the 2 cores
# A client that waits this long for an answer counts the request as failed; a busy machine
# answers these tiny requests in well under a second.
CLIENT_TIMEOUT = 60


@dataclass
class Counts:
    case: str
    sent: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


REPORT: list[Counts] = []


class BusyMachine:
    """One busy-looping process per core: other work on the machine, as on a shared CI host.

    They run at nice 5: every core is 100 % busy and the server competes for each one, but gets
    about three times a loop's share, so a reload's new replicas start in tens of seconds rather
    than minutes and the suite stays within its time on a slow machine."""

    def __enter__(self) -> BusyMachine:
        loop = [sys.executable, "-c", "import os; os.nice(5)\nwhile True: pass"]
        self.processes = [subprocess.Popen(loop) for _ in range(os.cpu_count() or 2)]
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


class SteadyLoad:
    """``CLIENTS`` clients sending UNCHANGED's requests back to back until the block ends, on a
    busy machine; ``failures`` lists every answer that was not 200 with the right data."""

    def __init__(self, address: str, case: str) -> None:
        self.address = address
        self.counts = Counts(case)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(CLIENTS)]
        self.busy = BusyMachine()

    @property
    def sent(self) -> int:
        return self.counts.sent

    @property
    def failures(self) -> list[tuple[str, str]]:
        return self.counts.failures

    def _client(self, n: int) -> None:
        with httpx.Client(base_url=f"http://{self.address}", timeout=CLIENT_TIMEOUT) as http:
            turn = n  # the clients start on different targets
            while not self.stopping.is_set():
                path, body, expected = UNCHANGED[turn % len(UNCHANGED)]
                turn += 1
                failure = self._send(http, path, body, expected)
                self.stopping.wait(PAUSE)
                with self.lock:
                    self.counts.sent += 1
                    if failure is not None:
                        self.counts.failures.append((path, failure))

    @staticmethod
    def _send(http: httpx.Client, path: str, body: dict, expected: list[float]) -> str | None:
        try:
            answer = http.post(path, json=body)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if answer.status_code != 200:
            return f"{answer.status_code} {answer.text[:300]}"
        if answer.json()["outputs"][0]["data"] != expected:
            return f"wrong answer {answer.text[:300]}"
        return None

    def __enter__(self) -> SteadyLoad:
        self.busy.__enter__()
        for thread in self.threads:
            thread.start()
        try:
            wait_for(lambda: self.sent >= 2 * CLIENTS, timeout=120, what="the steady load to start")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=CLIENT_TIMEOUT + 10)
        self.busy.__exit__()
        REPORT.append(self.counts)
