"""deploy/kuberay/rayservice.yaml against KubeRay's RayService CRD, and its serveConfigV2 against
``python -m app serve-config``, which writes it."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from app.__main__ import main
from app.config import parse_config
from app.plan import PlanSettings, plan_config
from loaders.specs import LoaderActorConfig
from tests.readme import REPO

MANIFEST = REPO / "deploy" / "kuberay" / "rayservice.yaml"
# KubeRay's own CRD (Apache-2.0), beside the project, never copied into it.
CRD = REPO.parent / "shared" / "reference" / "kuberay" / "ray.io_rayservices.yaml"


def documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}


def rayservice() -> dict:
    return documents()["RayService"]


@cache
def crd_schema() -> dict:
    if not CRD.is_file():
        pytest.fail(f"KubeRay's CRD is not at {CRD} (the shared reference folder beside the checkout)")
    crd = yaml.safe_load(CRD.read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def without_extensions(schema):
    """The schema less Kubernetes' ``x-kubernetes-*`` keys, which JSON Schema does not know."""
    if isinstance(schema, dict):
        return {k: without_extensions(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if isinstance(schema, list):
        return [without_extensions(v) for v in schema]
    return schema


def pruned_fields(value, schema, path="") -> list[str]:
    """Fields the API server would drop without a word (structural schemas prune unknown keys)."""
    found: list[str] = []
    if isinstance(value, dict) and schema.get("type") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return found
        known = schema.get("properties")
        for key, item in value.items():
            if known is not None and key not in known and "additionalProperties" not in schema:
                found.append(f"{path}.{key}")
            elif known is not None and key in known:
                found += pruned_fields(item, known[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += pruned_fields(item, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += pruned_fields(item, schema["items"], f"{path}[{index}]")
    return found


def validation_errors(manifest: dict) -> list[str]:
    schema = crd_schema()
    validator = jsonschema.Draft7Validator(without_extensions(schema))
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]
    return errors + [f"{field}: unknown to the CRD, would be pruned" for field in pruned_fields(manifest, schema)]


def test_the_rayservice_validates_against_kuberays_crd():
    assert validation_errors(rayservice()) == []


@pytest.mark.parametrize(
    "break_it",
    [
        lambda m: m["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(maxReplicas="four"),
        lambda m: m["spec"]["rayClusterConfig"]["autoscalerOptions"].update(upscalingMode="Fast"),
        lambda m: m["spec"]["rayClusterConfig"]["headGroupSpec"].pop("template"),
        lambda m: m["spec"]["rayClusterConfig"]["headGroupSpec"].update(rayStartParam={}),
    ],
    ids=["type", "enum", "required", "misspelt"],
)
def test_the_validation_catches_a_broken_manifest(break_it):
    manifest = copy.deepcopy(rayservice())
    break_it(manifest)
    assert validation_errors(manifest)


def serve_config_command(*args: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["serve-config", *args]) == 0
    return yaml.safe_load(out.getvalue())


def test_serve_config_v2_is_what_the_serve_config_command_writes():
    spec = rayservice()["spec"]
    embedded = yaml.safe_load(spec["serveConfigV2"])
    assert embedded == serve_config_command("/etc/rayvino/config.json")
    # and it serves serve_config.yaml's application, with the cluster's paths and addresses
    local = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    assert [a["import_path"] for a in embedded["applications"]] == [a["import_path"] for a in local["applications"]]
    assert embedded["http_options"]["host"] == "0.0.0.0" and embedded["proxy_location"] == "EveryNode"


def pods() -> list[dict]:
    cluster = rayservice()["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]


def test_every_pod_runs_the_image_make_image_builds_and_the_locked_ray():
    image = re.search(r"^IMAGE\s*\?=\s*(\S+)", (REPO / "Makefile").read_text(), re.MULTILINE).group(1)
    assert {c["image"] for pod in pods() for c in pod["containers"]} == {image}
    ray_version = re.search(r"^ray==(\S+)", (REPO / "requirements.lock").read_text(), re.MULTILINE).group(1)
    assert rayservice()["spec"]["rayClusterConfig"]["rayVersion"] == ray_version
    assert rayservice()["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True


def test_every_pod_mounts_the_config_where_serve_config_v2_reads_it_and_the_models_where_it_names_them():
    config_path = Path(yaml.safe_load(rayservice()["spec"]["serveConfigV2"])["applications"][0]["args"]["config_path"])
    config = json.loads(documents()["ConfigMap"]["data"][config_path.name])
    base_paths = {m["config"]["base_path"] for m in config["model_config_list"]}
    for pod in pods():
        volumes = {v["name"]: v for v in pod["volumes"]}
        [container] = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert (
            volumes[mounts[str(config_path.parent)]]["configMap"]["name"]
            == documents()["ConfigMap"]["metadata"]["name"]
        )
        assert all(any(path.startswith(mount + "/") for mount in mounts) for path in base_paths), base_paths


def test_the_configmaps_config_is_valid_and_plans_without_errors(tmp_path):
    """Its models are the demo models, mounted at /models in the pods; here, the repository's."""
    text = documents()["ConfigMap"]["data"]["config.json"].replace('"/models/', f'"{REPO / "models"}/')
    config = parse_config(json.loads(text), tmp_path)
    plan = plan_config(config, tmp_path, PlanSettings({}, LoaderActorConfig((), ())))
    assert plan.errors == []
    assert {"model.face-detection", "model.face-landmarks", "pipelines"} <= set(plan.deployments)


def test_the_s3_variant_names_ovms_storage_variables():
    text = MANIFEST.read_text()
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "S3_ENDPOINT", "s3://"):
        assert variable in text


def test_the_readmes_serve_config_command_prints_the_manifests_serve_config_v2():
    from tests import readme

    [line] = [line for line in readme.example(readme.SERVE_CONFIG_COMMAND).text.splitlines() if "serve-config" in line]
    argv = line.split("#")[0].split()
    assert argv[:3] == ["python", "-m", "app"]
    assert serve_config_command(*argv[4:]) == yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
