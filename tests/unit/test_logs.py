"""Lifecycle logs reach a replica's stderr at INFO, once, whatever Python's defaults."""

from __future__ import annotations

import logging

import pytest

from app.logs import LOGGERS, show_lifecycle_logs


@pytest.fixture
def fresh_loggers():
    """Our loggers as Python leaves them, and put back afterwards (pytest's capture relies on them)."""
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level, logging.getLogger(name).propagate)
        for name in LOGGERS
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


def test_info_lines_reach_stderr_once_even_if_set_up_twice(fresh_loggers, capfd):
    show_lifecycle_logs()
    show_lifecycle_logs()  # a replica may construct more than one of our classes
    logging.getLogger("app.model").info("model %s version %d available", "face-detection", 1)
    logging.getLogger("rayvino.config").debug("not shown at INFO")
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("INFO ")
    assert lines[0].endswith("app.model -- model face-detection version 1 available")


def test_the_level_comes_from_the_environment(fresh_loggers, capfd, monkeypatch):
    monkeypatch.setenv("RAYVINO_LOG_LEVEL", "warning")
    show_lifecycle_logs()
    logging.getLogger("loaders.manager").info("quiet")
    logging.getLogger("loaders.manager").warning("loud")
    assert [line.rsplit(" -- ", 1)[1] for line in capfd.readouterr().err.splitlines()] == ["loud"]
