"""Crash scenarios for test_nodes_crash_guard.py, each run in a process of its own so that a guard
that fails to catch a crash kills that process, never pytest's.

    python -m tests.unit._crash_child SCENARIO ARGUMENTS_AS_JSON

prints one JSON line of what the scenario saw (``unguarded`` prints it, then crashes the process).
"""

from __future__ import annotations

import asyncio
import ctypes
import faulthandler
import json
import mmap
import os
import resource
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from app.errors import http_status
from nodes.hosted import HostedNode
from nodes.library import LibraryNode, crash_report, crashed_libraries
from nodes.loading import NodeFactory

NUMBERS = np.arange(1, 4, dtype=np.float32).reshape(1, 3)
THIRTEEN = np.full((1, 3), 13, np.float32)


def outcome(call: Callable[[], Any]) -> dict[str, Any]:
    """What ``call`` returned (a node's outputs as lists) or raised (its type, status, message)."""
    try:
        result = call()
    except Exception as exc:
        return {"raised": type(exc).__name__, "status": http_status(exc), "message": str(exc)}
    return {"returned": {name: value.tolist() for name, value in result.items()} if isinstance(result, dict) else None}


def health(hosted: HostedNode | None = None) -> dict[str, Any]:
    seen: dict[str, Any] = {"report": crash_report(), "libraries": crashed_libraries()}
    if hosted is not None:
        seen["crashed"] = hosted.crashed
    return seen


def run_hosted(node: HostedNode, values: list) -> Callable[[], Any]:
    inputs = {"input_numbers": np.array(values, np.float32)}
    return lambda: asyncio.run(node.run(inputs, ["output_numbers"]))


def in_thread(seen: dict[str, Any], key: str, call: Callable[[], Any]) -> threading.Thread:
    """A started thread that records ``call``'s outcome as ``seen[key]``."""
    thread = threading.Thread(target=lambda: seen.update({key: outcome(call)}))
    thread.start()
    return thread


def hosted(library: str, params: dict[str, str], runs: list[list]) -> dict[str, Any]:
    """A hosted node (its calls in a worker thread, as in a replica) runs each of ``runs`` in turn:
    what each answered and the health seen after it, then its inputs_info, then it is closed."""
    node = HostedNode(NodeFactory(library=library), params, "crashy")
    seen: dict[str, Any] = {"runs": [], "health": [health(node)]}
    for values in runs:
        seen["runs"].append(outcome(run_hosted(node, values)))
        seen["health"].append(health(node))
    seen["inputs_info"] = outcome(lambda: asyncio.run(node.inputs_info()))
    node.close()
    return seen


def crash_in(library: str, function: str, crash_with: str) -> dict[str, Any]:
    """Every call of a node whose library crashes in ``function``, then the same calls again."""
    counted = ctypes.CDLL(library)  # the handle cffi has: dlopen shares a loaded library
    node = LibraryNode(library, name="crashy")
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("initialize", lambda: node.initialize({"crash_in": function, "crash_with": crash_with})),
        ("getInputsInfo", node.inputs_info),
        ("getOutputsInfo", node.outputs_info),
        ("execute", lambda: node.execute({"input_numbers": NUMBERS})),
        ("deinitialize", lambda: node.deinitialize()),
    ]
    seen: dict[str, Any] = {"first": {name: outcome(call) for name, call in calls}}
    reached = counted.crash_calls()
    seen["again"] = {name: outcome(call) for name, call in calls[1:]}
    seen["calls_reaching_the_library_after_the_crash"] = counted.crash_calls() - reached
    seen["crashed"] = node.crashed
    return seen | health()


def concurrent(crashing: str, waiting: str) -> dict[str, Any]:
    """One thread crashes while another is inside a guarded call, which finishes unharmed."""
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    waiter = LibraryNode(waiting, name="waiter")
    waiter.initialize({"ready_fd": str(ready_write), "wait_fd": str(go_read)})
    crasher = LibraryNode(crashing, name="seg")
    crasher.initialize({})
    seen: dict[str, Any] = {}
    waiter_thread = in_thread(seen, "waiter", lambda: waiter.execute({"input_numbers": NUMBERS}))
    os.read(ready_read, 1)  # the waiter is inside its guarded execute now
    in_thread(seen, "crash", lambda: crasher.execute({"input_numbers": THIRTEEN})).join()
    os.write(go_write, b"xx")  # let this call finish, and the next one
    waiter_thread.join()
    seen["waiter_again"] = outcome(lambda: waiter.execute({"input_numbers": NUMBERS}))
    return seen | {"waiter_crashed": waiter.crashed, "crasher_crashed": crasher.crashed} | health()


def dangling_stack(library: str, how: str, model_xml: str) -> dict[str, Any]:
    """A guarded crash on a thread whose alternate signal stack was unmapped by other code: by an
    OpenVINO CPU plugin made on that thread and destroyed on another, or by hand."""
    node = LibraryNode(library, name="seg")
    node.initialize({})
    worker = ThreadPoolExecutor(1)  # every call below runs on this one thread
    seen = {"before": outcome(lambda: worker.submit(node.execute, {"input_numbers": NUMBERS}).result())}
    if how == "openvino":
        core = worker.submit(_compiled_core, model_xml).result()
        del core  # the plugin is destroyed here, on the main thread
    else:
        worker.submit(_unmapped_alternate_stack).result()
    seen["crash"] = outcome(lambda: worker.submit(node.execute, {"input_numbers": THIRTEEN}).result())
    return seen | health()


def _compiled_core(model_xml: str) -> Any:
    import openvino as ov

    core = ov.Core()
    core.compile_model(core.read_model(model_xml), "CPU")  # creates the CPU plugin on this thread
    return core


def _unmapped_alternate_stack() -> None:
    """This thread's alternate signal stack is set to memory that is then unmapped."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    size = 64 << 10
    memory = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)

    class Stack(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

    if libc.sigaltstack(ctypes.byref(Stack(memory, 0, size)), None) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack")
    libc.munmap(ctypes.c_void_p(memory), ctypes.c_size_t(size))


def unguarded(library: str, kind: str, with_faulthandler: bool) -> None:
    """A crash of ``kind`` in a guarded call is caught; the same crash outside any guarded call
    then ends the process as it would without the guard."""
    if with_faulthandler:
        faulthandler.enable()  # before the guard installs its handler, as pytest's and Ray's are
    print(json.dumps(hosted(library, {"crash_in": "execute", "crash_with": kind}, [[[1]]])), flush=True)
    ctypes.CDLL(library).crash_now(kind.encode())
    print(json.dumps({"survived": kind}), flush=True)


SCENARIOS: dict[str, Callable[..., Any]] = {
    "hosted": hosted,
    "crash_in": crash_in,
    "concurrent": concurrent,
    "dangling_stack": dangling_stack,
    "unguarded": unguarded,
}

if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the crashes this runs leave no core files
    result = SCENARIOS[sys.argv[1]](**json.loads(sys.argv[2]))
    if result is not None:
        print(json.dumps(result))
