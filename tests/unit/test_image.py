"""The Containerfile: Ray's settings as ENV, the entry point, the user, the ports, and a smoke stage
that runs the image's own entry point (make image builds it; tests cannot run podman here)."""

from __future__ import annotations

import re
import shlex

from app import serve_flags
from tests.readme import REPO

CONTAINERFILE = REPO / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    lines = [line for line in CONTAINERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stage(name: str | None) -> list[tuple[str, str]]:
    """The instructions of the stage ``FROM ... AS name`` (None: the last stage)."""
    stages: list[list[tuple[str, str]]] = []
    names: list[str | None] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            stages.append([])
            words = rest.split()
            names.append(words[2] if len(words) == 3 and words[1].upper() == "AS" else None)
        if stages:
            stages[-1].append((keyword, rest))
    return stages[-1] if name is None else stages[names.index(name)]


def env(instrs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [dict(pair.split("=", 1) for pair in shlex.split(rest)) for keyword, rest in instrs if keyword == "ENV"]


def exec_form(instrs: list[tuple[str, str]], keyword: str) -> list[str]:
    [rest] = [rest for k, rest in instrs if k == keyword]
    assert rest.startswith("["), f"{keyword} in exec form, so that tini is PID 1: {rest}"
    return __import__("json").loads(rest)


def test_the_image_sets_exactly_the_flags_serve_flags_sets():
    """One ENV instruction holds app/serve_flags.py's FLAGS, value for value, so `ray start` in a
    pod (KubeRay's command) runs with them; a flag added to or changed in serve_flags.py fails here."""
    runtime = env(stage("runtime"))
    flag_blocks = [block for block in runtime if set(block) & set(serve_flags.FLAGS)]
    assert flag_blocks == [serve_flags.FLAGS]
    # Only worker processes take the worker flags: the venv's .pth sets them, not ENV.
    assert not set(serve_flags.WORKER_FLAGS) & {name for block in runtime for name in block}
    assert "rayvino_serve_flags.pth" in dict(stage("build")).get("RUN", "") or any(
        "rayvino_serve_flags.pth" in rest for keyword, rest in stage("build") if keyword == "RUN"
    )


def test_the_base_is_debian_bookworm_and_an_argument():
    assert ("ARG", "BASE=debian:bookworm-slim") in instructions()
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert froms[0].startswith("${BASE} AS build") and "${BASE} AS runtime" in froms


def test_the_runtime_runs_as_a_user_with_the_ports_documented():
    runtime = stage("runtime")
    [user] = [rest for keyword, rest in runtime if keyword == "USER"]
    assert user not in {"root", "0"}
    [ports] = [rest.split() for keyword, rest in runtime if keyword == "EXPOSE"]
    assert ports == ["8000", "9000", "8265", "6379"]
    documented = CONTAINERFILE.read_text()
    for port, what in (("8000", "REST"), ("9000", "gRPC"), ("8265", "dashboard"), ("6379", "GCS")):
        assert re.search(rf"{port} [^,\n]*{what}", documented), f"port {port} ({what}) is not documented"


def test_the_entry_point_is_tini_then_the_server_and_a_config_is_one_argument():
    runtime = stage("runtime")
    entrypoint, command = exec_form(runtime, "ENTRYPOINT"), exec_form(runtime, "CMD")
    assert entrypoint[:2] == ["/usr/bin/tini", "--"]  # PID 1 forwards SIGTERM and reaps Ray's processes
    assert entrypoint[2:] == ["python", "-m", "app", "serve"]
    assert command == ["configs/config.json"]  # `podman run IMAGE /config/config.json` replaces it
    apt = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert " tini " in apt and " wget " in apt  # KubeRay's probes call wget


def test_the_smoke_stage_runs_the_images_own_entry_point_and_the_image_needs_it():
    runtime = stage("runtime")
    entrypoint, command = exec_form(runtime, "ENTRYPOINT"), exec_form(runtime, "CMD")
    [smoke_run] = [rest for keyword, rest in stage("smoke") if keyword == "RUN" and "smoke_image.py" in rest]
    words = shlex.split(smoke_run.split("&&")[0])
    after_script = words[words.index("/smoke/smoke_image.py") + 1 :]
    # tini -s: a subreaper, since in a build step tini is not PID 1; the rest is the image's command.
    assert after_script == [entrypoint[0], "-s", *entrypoint[1:], *command]
    final = stage(None)
    assert ("COPY", "--from=smoke /tmp/smoke-passed /opt/rayvino/.smoke-passed") in final
    assert final[0] == ("FROM", "runtime")


def test_make_image_builds_from_a_local_base_with_chroot_isolation():
    makefile = (REPO / "Makefile").read_text()
    assert "mmdebstrap --variant=minbase --include=python3,python3-venv bookworm" in makefile
    assert "podman build --isolation chroot" in makefile
    assert "default_ulimits = []" in makefile
    assert "make image" in (REPO / ".ci" / "run").read_text()


def test_a_library_built_by_root_can_be_loaded_by_the_images_user(tmp_path):
    """The image builds the C nodes as root and serves as another user, who must read them."""
    from nodes.build import compile_library

    source = tmp_path / "one.c"
    source.write_text("int one(void) { return 1; }\n")
    compile_library(source, tmp_path / "libone.so")
    assert (tmp_path / "libone.so").stat().st_mode & 0o005 == 0o005  # others may read and map it
