"""The 30-pipeline config (tests/scale_config.py) served as a user serves a config: start-up time,
processes, memory and idle CPU of the whole server, measured from /proc.

    .venv/bin/python benchmarks/scale.py                 # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/scale.py --pipelines 10 --idle 30
    .venv/bin/python benchmarks/scale.py --apart     # each pipeline a process, nodes and models called

It writes the config and a serve_config.yaml for it to a temporary folder and runs what `make
run` runs (``python -m app run serve_config.yaml``, a local Ray without the dashboard) in a
session of its own. Ready is the first 200 of ``/v2/health/ready`` after the command starts;
then every pipeline must read the rendered text, and after 10 s of rest the script sums, over
every process the command started (Ray's included), their PSS and their CPU over ``--idle``
seconds. Run it alone: a Ray already running on the machine would be joined, not started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from procfs import cpu_seconds, descendants, pss_bytes  # noqa: E402  # benchmarks/procfs.py, beside this script

from tests.scale_config import LINES, PIPELINES, name, rendered_text, write_scale_config  # noqa: E402

PORT = 8767
SERVE_CONFIG = """proxy_location: HeadOnly
http_options: {{host: 127.0.0.1, port: {port}}}
logging_config: {{enable_access_log: false}}
applications:
- name: rayvino
  route_prefix: /
  import_path: app.build:build_app
  args: {{config_path: {config}, grpc_port: 0}}
"""


def wait_ready(server: subprocess.Popen, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server.poll() is not None:
            raise RuntimeError(f"the server ended with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/v2/health/ready", timeout=5) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"not ready after {timeout} s")


def check_every_pipeline(pipelines: int) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(f"127.0.0.1:{PORT}", network_timeout=120)
    image = rendered_text()
    for index in range(pipelines):
        given = triton.InferInput("image", list(image.shape), "FP32")
        given.set_data_from_numpy(image)
        read = [t.decode() for t in client.infer(name(index), [given]).as_numpy("texts_string").reshape(-1)]
        if read != LINES:
            raise RuntimeError(f"{name(index)} read {read}, not {LINES}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=PIPELINES, help="how many OCR pipelines")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measured")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for ready")
    parser.add_argument(
        "--apart",
        action="store_true",
        help="give every pipeline a deployment of its own and call node and model deployments "
        '(each pipeline "shared": false, "inline": false): the layout before the runner, for comparison',
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="rayvino-bench-scale-") as folder:
        config = write_scale_config(Path(folder), args.pipelines)
        if args.apart:
            apart = json.loads(config.read_text())
            apart["ray_serve"] = {
                "deployments": {
                    f"pipeline.{name(i)}": {"shared": False, "inline": False} for i in range(args.pipelines)
                }
            }
            config.write_text(json.dumps(apart))
        serve_config = Path(folder) / "serve_config.yaml"
        serve_config.write_text(SERVE_CONFIG.format(port=PORT, config=config))
        log = open(Path(folder) / "server.log", "w")  # noqa: SIM115  # kept open for the server's life
        command = [sys.executable, "-m", "app", "run", str(serve_config)]
        server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            ready = wait_ready(server, args.timeout)
            check_every_pipeline(args.pipelines)
            time.sleep(10)
            pids = descendants(server.pid)
            before = {pid: cpu_seconds(pid) for pid in pids}
            time.sleep(args.idle)
            pids = descendants(server.pid)
            cpu = sum(cpu_seconds(pid) - before.get(pid, 0.0) for pid in pids) / args.idle
            pss = sum(pss_bytes(pid) for pid in pids)
        finally:
            os.killpg(server.pid, signal.SIGINT)  # serve run's Ctrl-C: Serve and the local Ray shut down
            try:
                server.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
    print(
        f"\n{args.pipelines} OCR pipelines (3 custom nodes each, 2 models){', each apart' if args.apart else ''}, "
        "served by `python -m app run`:\n"
        f"  ready {ready:.1f} s after the command started; every pipeline read the text\n"
        f"  {len(pids)} processes, {pss / 2**30:.2f} GiB PSS, {100 * cpu:.1f} % of one core idle over {args.idle:g} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
