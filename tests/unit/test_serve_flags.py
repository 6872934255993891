"""The Ray Serve settings rayvino runs with, and the shell lines that set them on a cluster."""

from __future__ import annotations

from app import serve_flags
from app.__main__ import main


def test_the_flags_are_set_in_this_process_and_printed_for_other_nodes(capsys, monkeypatch):
    import os

    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"  # the venv's .pth (or tests/conftest) applied them
    monkeypatch.setenv("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "7")  # an exported value wins
    assert main(["serve-flags"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "export RAY_SERVE_ENABLE_HA_PROXY=1" in lines
    assert "export RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S=7" in lines
    assert len(lines) == len(serve_flags.FLAGS)
