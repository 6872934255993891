"""Our lifecycle logs in every Ray process that serves: config applied, versions loaded and
retired, loader states, bridges.

Ray Serve writes only its own ``ray.serve`` logger to its log files; any other logger falls back
to Python's default, which drops INFO. So each replica and actor calls ``show_lifecycle_logs``
once it starts: one stderr handler on our packages' loggers. Ray writes a worker's stderr to its
log file and streams it to the driver, so ``serve run`` shows these lines beside Serve's own.
Not called at import: a test process keeps Python's defaults (and pytest's log capture).
"""

from __future__ import annotations

import logging
import os
import sys

LOGGERS = ("app", "nodes", "loaders", "rayvino")  # our packages, and the config and loader actors
LEVEL_VARIABLE = "RAYVINO_LOG_LEVEL"  # e.g. WARNING to keep only problems; INFO by default


def show_lifecycle_logs() -> None:
    level = os.environ.get(LEVEL_VARIABLE, "INFO").upper()
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _LifecycleHandler) for h in logger.handlers):
            logger.addHandler(_LifecycleHandler())
        logger.setLevel(level)
        logger.propagate = False  # Ray's root handler, where there is one, would print it twice


class _LifecycleHandler(logging.StreamHandler):
    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(levelname)s %(asctime)s %(name)s -- %(message)s"))
