"""The README's examples that need no server: nodes, loaders, configs, the C header, the CLI.

The client examples run against the test server in tests/integration/test_readme.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import yaml

from app.__main__ import main
from app.build import AppArgs
from app.config import parse_config
from app.inference import InferRequest
from app.pipeline.local import LocalCatalog
from app.pipeline.servable import PipelineServable
from app.plan import PlanSettings, loader_specs, plan_config
from app.status import ModelVersionState
from loaders.manager import LoaderManager
from loaders.specs import LoaderActorConfig
from nodes.loading import load_node_class
from tests import factory, readme
from tests.unit._loaders_support import infer

CONFIGS = readme.REPO / "configs"


def test_every_example_is_run():
    claimed = [*readme.RUN_BY_TESTS, *readme.NOT_RUN]
    for example in readme.examples():
        if example.language in readme.CHECKED_LANGUAGES:
            owners = [m for m in claimed if m[0] == example.language and m[1] in example.text]
            assert len(owners) == 1, f"{example}: claimed by {owners}; give it a marker in tests/readme.py"
    for marker in claimed:
        readme.example(marker)  # every marker still finds its example


def test_the_python_node_example_runs_as_a_node(tmp_path):
    (tmp_path / "my_nodes.py").write_text(readme.example(readme.PYTHON_NODE).text)
    for base_path in ("my_nodes.py", "my_nodes.py:Threshold"):
        node = load_node_class(base_path, tmp_path)()
        node.initialize({"level": "0.3"})
        assert [(t.name, t.datatype, t.shape) for t in node.inputs_info()] == [("scores", "FP32", (1, -1))]
        scores = np.array([[0.1, 0.5, 0.2, 0.9]], np.float32)
        np.testing.assert_array_equal(node.run({"scores": scores}, ["mask"])["mask"], [[0, 1, 0, 1]])


def test_the_c_node_example_builds_with_its_command_and_serves_its_pipeline(tmp_path):
    shutil.copy(readme.REPO / "tests" / "integration" / "scale_node.c", tmp_path)
    (tmp_path / "nodes").symlink_to(readme.REPO / "nodes")
    [command] = [line for line in readme.example(readme.C_NODE_BUILD).text.splitlines() if line.startswith("gcc")]
    subprocess.run(shlex.split(command), cwd=tmp_path, check=True)
    # The fragment is the part a C node adds; OVMS requires a model list, even an empty one.
    config = parse_config({"model_config_list": [], **readme.config_fragment(readme.C_NODE_CONFIG)}, tmp_path)
    numbers = np.array([[1.0, 2.0, 4.0]], np.float32)
    outputs = asyncio.run(_run_pipeline(config, tmp_path, "scale", {"numbers": numbers}))
    np.testing.assert_allclose(outputs["result"], numbers * 2.5)


async def _run_pipeline(config, config_dir, name, inputs):
    catalog = LocalCatalog.from_config(config, config_dir)

    async def source() -> LocalCatalog:
        return catalog

    try:
        [pipeline_config] = [p for p in config.pipeline_config_list if p.name == name]
        pipeline = PipelineServable(pipeline_config, source, catalog.call)
        return (await pipeline.infer(InferRequest(name, None, inputs))).outputs
    finally:
        catalog.close()


def test_the_c_functions_shown_are_the_headers():
    header = (readme.REPO / "nodes" / "custom_node_interface.h").read_text()
    shown = _prototypes(readme.example(readme.C_NODE_FUNCTIONS).text)
    assert set(shown) == {"initialize", "deinitialize", "execute", "getInputsInfo", "getOutputsInfo", "release"}
    assert shown == {name: types for name, types in _prototypes(header).items() if name in shown}


def _prototypes(c: str) -> dict[str, list[str]]:
    """``{function: parameter types}``: the names of parameters may differ, their types may not."""
    found = {}
    for name, params in re.findall(r"^int (\w+)\(([^)]*)\);", c, re.MULTILINE):
        found[name] = [" ".join(p.split()[:-1]).replace(" *", "*") for p in params.split(",")]
    return found


def test_the_loader_example_loads_and_blacklists(tmp_path):
    (tmp_path / "my_loader.py").write_text(readme.example(readme.PYTHON_LOADER).text)
    (tmp_path / "blocked.txt").write_text("")
    factory.write_dummy(tmp_path / "models" / "m", [1])
    config = parse_config(readme.config_fragment(readme.LOADER_CONFIG), tmp_path)
    manager = LoaderManager()
    assert manager.apply(*loader_specs(config, tmp_path)) == []
    manager.poll()
    assert [s.state for s in manager.statuses("m")] == [ModelVersionState.AVAILABLE]
    np.testing.assert_array_equal(infer(manager.buffers("m", 1)), np.full((1, 10), 2, np.float32))
    (tmp_path / "blocked.txt").write_text("m:1\n")
    manager.poll()
    assert [s.state for s in manager.statuses("m")] == [ModelVersionState.END]


def test_the_cpp_loader_example_builds_with_its_command_loads_and_blacklists(tmp_path):
    (tmp_path / "my_loader.cpp").write_text(readme.example(readme.CPP_LOADER).text)
    (tmp_path / "loaders").symlink_to(readme.REPO / "loaders")
    [command] = [line for line in readme.example(readme.CPP_LOADER_BUILD).text.splitlines() if line.startswith("g++")]
    subprocess.run(shlex.split(command), cwd=tmp_path, check=True)
    factory.write_dummy(tmp_path / "models" / "m", [1])
    config = parse_config(readme.config_fragment(readme.CPP_LOADER_CONFIG), tmp_path)
    manager = LoaderManager()
    assert manager.apply(*loader_specs(config, tmp_path)) == []
    assert [s.state for s in manager.statuses("m")] == [ModelVersionState.AVAILABLE]
    np.testing.assert_array_equal(infer(manager.buffers("m", 1)), np.full((1, 10), 2, np.float32))
    (tmp_path / "models" / "m" / "1" / "blocked").write_text("")
    manager.poll()
    assert [s.state for s in manager.statuses("m")] == [ModelVersionState.END]
    manager.apply([], [])


def test_the_config_example_is_valid_next_to_the_default_config():
    config = parse_config(json.loads(readme.example(readme.CONFIG_EXCERPT).text), CONFIGS)
    assert [m.name for m in config.models] == ["face-detection", "text-recognition"]
    assert all((CONFIGS / m.base_path).is_dir() for m in config.models)


def test_the_ray_serve_block_and_serve_config_args_fit_the_default_config():
    config = json.loads((CONFIGS / "config.json").read_text())
    config["ray_serve"] = readme.config_fragment(readme.RAY_SERVE_BLOCK)["ray_serve"]
    [application] = yaml.safe_load(readme.example(readme.SERVE_CONFIG_ARGS).text)["applications"]
    args = AppArgs.model_validate({**application["args"], "config_path": str(CONFIGS / "config.json")})
    settings = PlanSettings(args.deployments, LoaderActorConfig((), ()))
    assert plan_config(parse_config(config, CONFIGS), CONFIGS, settings).errors == []


def test_the_autoscaling_example_gives_face_detection_its_serve_options():
    config = json.loads((CONFIGS / "config.json").read_text())
    config["ray_serve"] = readme.config_fragment(readme.AUTOSCALING_BLOCK)["ray_serve"]
    plan = plan_config(parse_config(config, CONFIGS), CONFIGS, PlanSettings({}, LoaderActorConfig((), ())))
    assert plan.errors == []
    options = plan.deployments["model.face-detection"].options
    assert options["autoscaling_config"]["max_replicas"] == 4 and options["ray_actor_options"]["num_cpus"] == 1


def test_the_inline_example_runs_the_ocr_nodes_inline_but_one():
    config = json.loads((CONFIGS / "config.json").read_text())
    config["ray_serve"] = readme.config_fragment(readme.INLINE_BLOCK)["ray_serve"]
    plan = plan_config(parse_config(config, CONFIGS), CONFIGS, PlanSettings({}, LoaderActorConfig((), ())))
    assert plan.errors == []
    assert [name for name in plan.deployments if name.startswith("node.ocr.")] == ["node.ocr.crop"]
    assert plan.deployments["node.ocr.crop"].options["num_replicas"] == 2
    assert "node.ocr.prepare" in plan.inline_nodes and "node.faces.crop" in plan.inline_nodes


def test_the_validate_command_prints_what_the_readme_shows(tmp_path):
    shown = readme.example(readme.VALIDATE).text.splitlines()
    broken = json.loads((CONFIGS / "config.json").read_text())
    broken["model_config_list"][0]["config"]["nmae"] = broken["model_config_list"][0]["config"].pop("name")
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    assert _cli(["validate", str(CONFIGS / "config.json")]) == shown[1:2]
    printed = _cli(["validate", str(tmp_path / "broken.json")])
    expected = shown[3:]
    assert len(printed) == len(expected), printed
    for line, readme_line in zip(printed, expected, strict=True):
        assert line.startswith(readme_line.removesuffix("...")) if readme_line.endswith("...") else line == readme_line


def test_the_pipeline_pictures_are_what_the_graph_command_draws():
    for marker, pipeline in ((readme.OCR_GRAPH, "ocr"), (readme.FACES_GRAPH, "faces")):
        drawn = _cli(["graph", str(CONFIGS / "config.json"), pipeline])
        assert drawn == readme.example(marker).text.splitlines(), pipeline


def _cli(argv: list[str]) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(argv)
    return out.getvalue().splitlines()


def test_the_public_imports_work_in_a_fresh_interpreter():
    code = (
        "from nodes import Node, TensorInfo; from loaders import Loader, ModelBuffers, LoaderStatus, ModelLoadError, "
        "parse_options; import sys; print('ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=readme.REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"  # a node or loader author's import does not start Ray's import
