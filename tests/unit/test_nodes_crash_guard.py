"""The crash guard (nodes/guard/guard.c): a C library that crashes inside a call answers 500
(NodeCrashed), is never called again, and marks its process for replacement, while crashes
outside guarded calls still end the process as before.

Every crash runs in a child process of its own (tests/unit/_crash_child.py), so a guard that
fails to catch one kills that child, never pytest.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nodes import abi
from nodes.build import build_guard
from nodes.library import LibraryNode, crash_report, crashed_libraries
from tests import factory

REPO = Path(__file__).resolve().parents[2]
ECHOED = {"returned": {"output_numbers": [[1.0, 2.0, 3.0]]}}
REPLACED = "this process will be replaced"
# crash_with of tests/c_nodes/node_crash.c -> the signal it raises. raise(SIGSEGV) is node_segfault's.
KINDS = {
    "null_write": signal.SIGSEGV,
    "stack_overflow": signal.SIGSEGV,  # caught on the alternate stack the guard gives the thread
    "abort": signal.SIGABRT,
    "divide_by_zero": signal.SIGFPE,
    "trap": signal.SIGILL,
    "bus": signal.SIGBUS,
}


def child(scenario: str, **arguments: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.unit._crash_child", scenario, json.dumps(arguments)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,  # a guard that hangs fails the test rather than the suite
    )


def seen(scenario: str, **arguments: Any) -> dict[str, Any]:
    """What a scenario that must survive saw."""
    result = child(scenario, **arguments)
    assert result.returncode == 0, f"the child died ({result.returncode}):\n{result.stderr}"
    return json.loads(result.stdout.splitlines()[-1])


def crashed(message: str, node: str = "crashy") -> dict[str, Any]:
    return {"raised": "NodeCrashed", "status": 500, "message": f"Custom node crashed - node '{node}': {message}"}


def test_a_crash_in_a_hosted_node_answers_500_and_its_process_lives_on(c_nodes):
    library = str(c_nodes["segfault"])
    got = seen("hosted", library=library, params={}, runs=[[[1, 2, 3]], [[13, 2, 3]], [[1, 2, 3]]])

    before, crash, after = got["runs"]
    assert before == ECHOED
    assert crash == crashed(f"its library crashed with SIGSEGV during execute; {REPLACED}")
    earlier = crashed(f"its library crashed earlier (SIGSEGV during execute) and is not called again; {REPLACED}")
    assert after == earlier
    assert got["inputs_info"] == earlier
    healthy, still_healthy, *unhealthy = got["health"]
    assert healthy == still_healthy == {"report": None, "libraries": {}, "crashed": False}
    for health in unhealthy:
        assert health["crashed"] is True
        assert health["libraries"] == {library: "SIGSEGV during execute"}
        assert f"{library}: SIGSEGV during execute" in health["report"]


@pytest.mark.parametrize(
    "function, crashing_call",
    [
        ("initialize", "initialize"),
        ("getInputsInfo", "getInputsInfo"),
        ("getOutputsInfo", "getOutputsInfo"),
        ("execute", "execute"),
        ("release", "getInputsInfo"),  # the first call whose buffers go back through release
        ("deinitialize", "deinitialize"),
    ],
)
def test_a_crash_in_any_function_stops_every_later_call_short_of_the_library(c_nodes, function, crashing_call):
    got = seen("crash_in", library=str(c_nodes["crash"]), function=function, crash_with="null_write")

    calls = list(got["first"])
    crash_at = calls.index(crashing_call)
    assert all("raised" not in got["first"][call] for call in calls[:crash_at])
    if crashing_call != "deinitialize":  # a crash at shutdown is only logged: nobody waits for it
        assert got["first"][crashing_call] == crashed(f"its library crashed with SIGSEGV during {function}; {REPLACED}")
    earlier = crashed(f"its library crashed earlier (SIGSEGV during {function}) and is not called again; {REPLACED}")
    later = [got["first"][call] for call in calls[crash_at + 1 : -1]] + [got["again"][call] for call in calls[1:-1]]
    assert later and all(answer == earlier for answer in later)
    assert got["again"]["deinitialize"] == {"returned": None}  # skipped, quietly
    assert got["calls_reaching_the_library_after_the_crash"] == 0
    assert got["crashed"] is True
    assert got["libraries"] == {str(c_nodes["crash"]): f"SIGSEGV during {function}"}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_crash_is_caught_in_a_worker_thread_and_still_fatal_outside_the_guard(c_nodes, kind):
    result = child("unguarded", library=str(c_nodes["crash"]), kind=kind, with_faulthandler=False)

    assert result.returncode == -KINDS[kind], result.stderr
    guarded, *rest = result.stdout.splitlines()
    assert rest == []  # the unguarded crash ended the process
    assert json.loads(guarded)["runs"] == [
        crashed(f"its library crashed with {KINDS[kind].name} during execute; {REPLACED}")
    ]


@pytest.mark.parametrize("kind", ["null_write", "raise_segv"])
def test_a_crash_outside_the_guard_still_reaches_the_handler_installed_before_it(c_nodes, kind):
    result = child("unguarded", library=str(c_nodes["crash"]), kind=kind, with_faulthandler=True)

    assert result.returncode == -signal.SIGSEGV
    assert len(result.stdout.splitlines()) == 1  # the guarded crash's line only
    assert "Fatal Python error: Segmentation fault" in result.stderr  # faulthandler ran, once
    assert result.stderr.count("Fatal Python error") == 1


def test_a_crashing_thread_leaves_another_threads_guarded_call_alone(c_nodes):
    got = seen("concurrent", crashing=str(c_nodes["segfault"]), waiting=str(c_nodes["crash"]))

    assert got["crash"] == crashed(f"its library crashed with SIGSEGV during execute; {REPLACED}", node="seg")
    assert got["waiter"] == got["waiter_again"] == ECHOED
    assert (got["crasher_crashed"], got["waiter_crashed"]) == (True, False)
    assert got["libraries"] == {str(c_nodes["segfault"]): "SIGSEGV during execute"}


@pytest.mark.parametrize("how", ["openvino", "unmapped"])
def test_a_crash_is_caught_on_a_thread_whose_alternate_signal_stack_other_code_unmapped(c_nodes, tmp_path, how):
    """The signal is delivered on the guard's own stack: the thread's may be gone, as OpenVINO's CPU
    plugin leaves it on the thread it was made on when it is destroyed on another."""
    factory.write_dummy(tmp_path / "dummy", [1])
    model_xml = str(tmp_path / "dummy" / "1" / "model.xml")
    got = seen("dangling_stack", library=str(c_nodes["segfault"]), how=how, model_xml=model_xml)

    assert got["before"] == ECHOED
    assert got["crash"] == crashed(f"its library crashed with SIGSEGV during execute; {REPLACED}", node="seg")


def test_calls_go_through_the_guard_and_this_process_has_caught_nothing(c_nodes):
    assert abi.guard() is not None
    assert abi.Library(c_nodes["add_sub"]).crash is None
    assert (crash_report(), crashed_libraries(), abi.crashes_caught()) == (None, {}, 0)


def test_the_guard_is_built_once_and_skipped_when_up_to_date(tmp_path):
    built = build_guard(tmp_path)
    assert built == tmp_path / "librayvino_guard.so"
    first = built.stat().st_mtime_ns
    assert build_guard(tmp_path).stat().st_mtime_ns == first
    assert [path.name for path in tmp_path.iterdir()] == [built.name]  # no temporary file left


def test_without_a_guard_calls_go_straight_to_the_library_and_say_so_once(c_nodes, monkeypatch, caplog):
    def no_compiler() -> Path:
        raise FileNotFoundError("gcc")

    monkeypatch.setattr(abi._Guard, "tried", False)
    monkeypatch.setattr(abi._Guard, "lib", None)
    monkeypatch.setattr(abi, "build_guard", no_compiler)
    nodes = [LibraryNode(c_nodes["add_sub"]) for _ in range(2)]
    for node in nodes:
        node.initialize({"add_value": "1", "sub_value": "0"})
        assert node.execute({"input_numbers": np.zeros((1, 2), np.float32)})["output_numbers"].tolist() == [[1, 1]]
        node.deinitialize()

    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert errors == ["no crash guard for C nodes, so a crashing node ends its process: gcc"]
    assert abi.guard() is None and crash_report() is None
