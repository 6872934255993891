"""The config actor's core without Ray: what a reload deploys, deletes and leaves running."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from app.applications import application
from app.config_service import ConfigService, ConfigSettings, ReloadOutcome
from app.dataplane import DataPlane, RetiredServable
from app.errors import PipelineRetired
from app.inference import InferRequest
from app.plan import Plan, Planned, PlanSettings
from loaders.specs import LoaderActorConfig
from tests import factory


class FakeDeployer:
    """Records what would reach Serve; every deployed application is RUNNING at once."""

    def __init__(self) -> None:
        self.deployed: list[list[str]] = []
        self.deleted: list[list[str]] = []
        self.serving: dict[str, Planned] = {}  # what Serve runs, which outlives a config actor
        self.routes: list[dict[str, str | None]] = []  # each deploy's route prefixes, by deployment

    async def deploy(self, planned: list[Planned]) -> None:
        for entry in planned:
            application(entry)  # the bound application must build
            self.serving[entry.name] = entry
        self.deployed.append(sorted(p.name for p in planned))
        self.routes.append({p.name: p.route_prefix for p in planned})

    async def delete(self, names: list[str]) -> None:
        for name in names:
            self.serving.pop(name, None)
        self.deleted.append(sorted(names))

    async def statuses(self, names: list[str]) -> dict[str, str]:
        return {name: "RUNNING" for name in names if name in self.serving}


class FakeLoaders:
    """Records what the loader actor would be given; a poll reports ``blacklists_changed``."""

    def __init__(self) -> None:
        self.applied: list[Plan] = []
        self.polls: list[float] = []  # the timeout of each poll
        self.blacklists_changed = False
        self.shut_down = False

    async def apply(self, plan: Plan) -> list[str]:
        self.applied.append(plan)
        return []

    async def poll(self, timeout: float) -> bool:
        self.polls.append(timeout)
        return self.blacklists_changed

    async def ensure(self, plan: Plan) -> None:
        pass

    async def shutdown(self) -> None:
        self.shut_down = True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served(tmp_path: Path) -> Path:
    for name in ("a", "b"):
        factory.write_dummy(tmp_path / name, [1])
    return tmp_path


def model(name: str, **fields) -> dict:
    return {"config": {"name": name, "base_path": name, **fields}}


def pipeline(name: str, model_name: str) -> dict:
    return {
        "name": name,
        "inputs": ["x"],
        "nodes": [
            {
                "name": "m",
                "type": "DL model",
                "model_name": model_name,
                "inputs": [{"b": {"node_name": "request", "data_item": "x"}}],
                "outputs": [{"data_item": "a", "alias": "y"}],
            },
            {
                "name": "decode",
                "type": "custom",
                "library_name": "ctc",
                "inputs": [{"logits": {"node_name": "m", "data_item": "y"}}],
                "outputs": [{"data_item": "texts", "alias": "texts"}],
            },
        ],
        "outputs": [{"texts": {"node_name": "decode", "data_item": "texts"}}],
    }


def write(path: Path, models: list[dict], pipelines: list[dict] = (), **extra) -> None:
    config = {
        "model_config_list": models,
        "pipeline_config_list": list(pipelines),
        "custom_node_library_config_list": [{"name": "ctc", "base_path": "builtin:ctc_decode"}],
        **extra,
    }
    path.write_text(json.dumps(config))


def service(
    path: Path, clock: Clock | None = None, deployer: FakeDeployer | None = None
) -> tuple[ConfigService, FakeDeployer, FakeLoaders]:
    settings = ConfigSettings(str(path), PlanSettings({}, LoaderActorConfig((), ())), idle_shutdown_seconds=10)
    deployer, loaders = deployer or FakeDeployer(), FakeLoaders()
    return ConfigService(settings, deployer, loaders, clock or Clock()), deployer, loaders


def reloads(path: Path, *edits: Callable[[], None]) -> tuple[ConfigService, FakeDeployer, list[ReloadOutcome]]:
    """A config actor's core that loaded ``path``, then again after each edit of it, in turn."""

    async def scenario():
        config, deployer, _ = service(path)
        outcomes = [await config.load()]
        for edit in edits:
            edit()
            outcomes.append(await config.load())
        return config, deployer, outcomes

    return asyncio.run(scenario())


def test_the_first_load_deploys_every_model_pipeline_and_node(served):
    path = served / "config.json"
    write(path, [model("a"), model("b")], [pipeline("p", "a")])
    config, deployer, _ = service(path)
    outcome = asyncio.run(config.load())
    assert outcome.changed and outcome.error is None
    assert deployer.deployed == [["model.a", "model.b", "pipelines"]]  # the node runs inline in the runner
    catalog = config.catalog()
    assert catalog.servables == {"a": "model.a", "b": "model.b", "p": "pipelines"}  # p runs in the shared runner
    assert catalog.versions["a"] == (1,)
    assert not catalog.ready and catalog.starting == {"model.a", "model.b", "pipelines"}
    assert catalog.loading == {"a", "b", "p"}
    assert asyncio.run(config.wait_ready(timeout=60)) and config.catalog().ready


def test_an_unchanged_file_deploys_nothing_and_an_equivalent_one_changes_nothing(served):
    path = served / "config.json"
    write(path, [model("a")])

    async def scenario():
        config, deployer, _ = service(path)
        await config.load()
        again = await config.load()
        path.write_text(json.dumps(json.loads(path.read_text()), indent=4))  # other bytes, same config
        reformatted = await config.load()
        return again, reformatted, deployer

    again, reformatted, deployer = asyncio.run(scenario())
    assert not again.changed and not reformatted.changed
    assert deployer.deployed == [["model.a"]] and deployer.deleted == []


def test_adding_a_model_deploys_only_that_model(served):
    path = served / "config.json"
    write(path, [model("a")], [pipeline("p", "a")])
    config, deployer, outcomes = reloads(path, lambda: write(path, [model("a"), model("b")], [pipeline("p", "a")]))
    assert outcomes[-1].changed
    assert deployer.deployed[-1] == ["model.b"]
    assert config.catalog().servables["b"] == "model.b"


def test_changing_a_model_redeploys_it_and_the_pipelines_that_use_it(served):
    path = served / "config.json"
    pipelines = [pipeline("p", "a"), pipeline("q", "b")]
    write(path, [model("a"), model("b")], pipelines)

    async def scenario():
        config, deployer, _ = service(path)
        await config.load()
        await config.wait_ready(timeout=60)
        write(path, [model("a", nireq=2), model("b")], pipelines)
        await config.load()
        return config.catalog(), deployer

    catalog, deployer = asyncio.run(scenario())
    assert deployer.deployed[-1] == ["model.a", "pipelines"]  # b and the node keep running
    runner = deployer.serving["pipelines"]
    assert runner.options["user_config"]["pipelines"].keys() == {"p", "q"}
    assert catalog.loading == {"a", "p"}  # the runner reconfigures p in place; q keeps serving


def test_a_pipeline_with_serve_options_of_its_own_gets_its_own_deployment(served):
    path = served / "config.json"
    pipelines = [pipeline("p", "a"), pipeline("q", "a"), pipeline("r", "a")]
    options = {
        "deployments": {
            **{f"pipeline.{name}": {"inline": False} for name in "pqr"},
            "pipeline.q": {"num_replicas": 2, "inline": False},
            "pipeline.r": {"shared": False, "inline": False},
        }
    }
    write(path, [model("a")], pipelines, ray_serve=options)
    config, deployer, _ = service(path)
    asyncio.run(config.load())
    assert config.catalog().servables == {"a": "model.a", "p": "pipelines", "q": "pipeline.q", "r": "pipeline.r"}
    assert deployer.serving["pipeline.q"].options == {"num_replicas": 2}
    # The three use the same library with the same params: one node deployment serves them all.
    assert sorted(n for n in deployer.serving if n.startswith("node.")) == ["node.p.decode"]


def test_a_removed_shared_pipeline_is_listed_as_end_and_answers_404(served):
    path = served / "config.json"
    write(path, [model("a")], [pipeline("p", "a"), pipeline("q", "a")])
    config, deployer, _ = reloads(path, lambda: write(path, [model("a")], [pipeline("q", "a")]))
    catalog = config.catalog()
    assert catalog.retired == {"p": (1,)} and catalog.retired_pipelines == {"p"}
    assert deployer.deployed[-1] == ["pipelines"] and deployer.deleted == []
    assert deployer.serving["pipelines"].options["user_config"]["pipelines"].keys() == {"q"}


def test_the_runners_long_polls_are_no_heartbeat(served):
    path = served / "config.json"
    write(path, [model("a")])
    clock = Clock()

    async def scenario():
        config, _, _ = service(path, clock)
        await config.load()
        await config.wait_for_change(None, 0)  # the ingress
        clock.now += 11
        await config.wait_for_change(None, 0, heartbeat=False)  # the runner, still polling
        return config.app_gone()

    assert asyncio.run(scenario())


def test_deployment_options_from_the_ray_serve_block_are_a_change(served):
    path = served / "config.json"
    write(path, [model("a"), model("b")])
    options = {"deployments": {"model.b": {"num_replicas": 2}}}
    _, deployer, _ = reloads(path, lambda: write(path, [model("a"), model("b")], ray_serve=options))
    assert deployer.deployed[-1] == ["model.b"]


def test_a_removed_model_is_deleted_and_listed_as_end(served):
    path = served / "config.json"
    write(path, [model("a"), model("b")])

    async def scenario():
        config, deployer, _ = service(path)
        await config.load()
        write(path, [model("a")])
        await config.load()
        removed = config.catalog()
        write(path, [model("a"), model("b")])
        await config.load()
        return deployer, removed, config.catalog()

    deployer, removed, back = asyncio.run(scenario())
    assert deployer.deleted == [["model.b"]]
    assert "b" not in removed.servables and removed.retired == {"b": (1,)}
    assert back.servables["b"] == "model.b" and back.retired == {}


def test_a_file_that_fails_the_schema_applies_nothing(served):
    path = served / "config.json"
    write(path, [model("a")])

    async def scenario():
        config, deployer, _ = service(path)
        await config.load()
        before = config.catalog()
        path.write_text(json.dumps({"model_config_list": [{"config": {"nmae": "b", "base_path": "b"}}]}))
        outcome = await config.load()
        assert (await config.load()).error == outcome.error  # asked again (the watcher was first): same answer
        return deployer, before, config.catalog(), outcome

    deployer, before, after, outcome = asyncio.run(scenario())
    assert not outcome.changed
    assert "model_config_list[0].config.nmae: unknown key; did you mean 'name'?" in outcome.error
    assert deployer.deployed == [["model.a"]] and deployer.deleted == []
    assert after.servables == before.servables and outcome.error in after.errors


def test_an_invalid_entry_is_skipped_and_the_rest_applied(served):
    path = served / "config.json"
    write(path, [model("a")], [pipeline("a", "a"), pipeline("p", "a"), pipeline("p", "a")])
    config, deployer, _ = service(path)
    asyncio.run(config.load())
    catalog = config.catalog()
    assert catalog.servables == {"a": "model.a", "p": "pipelines"}
    assert any("pipeline 'a' not registered (PIPELINE_NAME_OCCUPIED)" in e for e in catalog.errors)
    assert any("pipeline 'p' is defined twice" in e for e in catalog.errors)


def test_the_ingress_long_poll_returns_when_the_catalog_changes(served):
    path = served / "config.json"
    write(path, [model("a")])

    async def scenario():
        config, _, _ = service(path)
        await config.load()
        seen = config.catalog().revision
        waiting = asyncio.create_task(config.wait_for_change(seen, timeout=30))
        await asyncio.sleep(0)
        assert not waiting.done()
        write(path, [model("a"), model("b")])
        await config.load()
        return await asyncio.wait_for(waiting, 5)

    assert "b" in asyncio.run(scenario()).servables


def test_once_no_ingress_calls_the_config_cleans_up(served):
    path = served / "config.json"
    write(path, [model("a"), model("b")])
    clock = Clock()

    async def scenario():
        config, deployer, loaders = service(path, clock)
        await config.load()
        await config.wait_for_change(None, 0)
        clock.now += 5
        assert not config.app_gone()
        clock.now += 6
        assert config.app_gone()
        await config.shutdown()
        return deployer, loaders

    deployer, loaders = asyncio.run(scenario())
    assert deployer.deleted == [["model.a", "model.b"]] and loaders.shut_down


def test_an_ingress_waiting_in_a_long_poll_keeps_the_app_alive(served):
    """A poll pending longer than the idle time (a slow or loaded ingress) is a live ingress."""
    path = served / "config.json"
    write(path, [model("a")])
    clock = Clock()

    async def scenario():
        config, _, _ = service(path, clock)
        await config.load()
        polling = asyncio.create_task(config.wait_for_change(config.catalog().revision, 30))
        await asyncio.sleep(0)  # the poll is now waiting
        clock.now += 60
        alive_while_polling = not config.app_gone()
        polling.cancel()  # the ingress went away mid-poll
        await asyncio.gather(polling, return_exceptions=True)
        gone_at_once = config.app_gone()
        clock.now += 11
        return alive_while_polling, gone_at_once, config.app_gone()

    assert asyncio.run(scenario()) == (True, False, True)


def test_a_reload_request_reports_what_the_watcher_applied_just_before(served):
    path = served / "config.json"
    write(path, [model("a")])

    async def scenario():
        config, _, _ = service(path)
        await config.load()
        config.mark_answered()
        write(path, [model("a"), model("b")])
        await config.load()  # the watcher's tick comes first
        first = await config.reload(wait_seconds=5)
        second = await config.reload(wait_seconds=5)
        return first, second

    first, second = asyncio.run(scenario())
    assert first == (True, None) and second == (False, None)


def test_a_reload_polls_the_loaders_blacklists_even_when_the_file_is_unchanged(served):
    """As OVMS's reload runs its watcher's path: every loader's blacklist is checked, watcher or not."""
    path = served / "config.json"
    write(path, [model("a")])

    async def scenario():
        config, deployer, loaders = service(path)
        await config.load()
        config.mark_answered()
        unchanged = await config.reload(wait_seconds=5)
        loaders.blacklists_changed = True  # a loader blacklisted a version a moment ago
        blacklisted = await config.reload(wait_seconds=5)
        return unchanged, blacklisted, loaders.polls, deployer.deployed

    unchanged, blacklisted, polls, deployed = asyncio.run(scenario())
    assert unchanged == (False, None) and blacklisted == (True, None)  # 200, then 201
    assert polls == [5, 5]  # each reload waits for the replicas as long as for the deployments
    assert deployed == [["model.a"]]  # a blacklist redeploys nothing


def test_options_for_a_deployment_the_config_does_not_make_are_reported(served):
    path = served / "config.json"
    write(path, [model("a")], ray_serve={"deployments": {"model.aa": {"num_replicas": 2}}})
    config, _, _ = service(path)
    asyncio.run(config.load())
    (error,) = config.catalog().errors
    assert error.startswith(
        "config.json ray_serve.deployments.model.aa: this config deploys no such deployment; did you mean 'model.a'?"
    )


def test_a_model_a_reload_adds_is_bridged_until_its_deployment_runs(served):
    """The ingress serves a newly added model itself while its replica process starts (app/bridge.py)."""
    path = served / "config.json"
    for name in ("c", "d"):
        factory.write_dummy(served / name, [1])
    write(path, [model("a")])
    batched = {"deployments": {"model.d": {"dynamic_batching": {"max_batch_size": 4}}}}

    async def scenario():
        config, _, _ = service(path)
        await config.load()
        first = config.catalog().bridges
        write(path, [model("a"), model("b"), model("c"), model("d")], ray_serve=batched)
        await config.load()
        added = config.catalog().bridges
        await config.check_ready()
        return first, added, config.catalog().bridges

    first, added, running = asyncio.run(scenario())
    assert first == {}  # the first load starts everything at once: nothing to bridge from
    assert sorted(added) == ["b", "c"] and added["b"].base_path == str(served / "b")
    assert running == {}  # RUNNING: requests go to the deployment


def test_a_loader_backed_model_is_not_bridged(served):
    """Its versions live in the loader actor, not on disk where the ingress could read them."""
    path = served / "config.json"
    (served / "loader.py").write_text("from loaders.base import CustomLoader\n")
    write(path, [model("a")])
    loader = {"custom_loader_config_list": [{"config": {"loader_name": "l", "library_path": "loader.py"}}]}
    options = {"loader_name": "l", "model_file": "model.xml", "bin_file": "model.bin"}

    async def scenario():
        config, _, _ = service(path)
        await config.load()
        write(path, [model("a"), model("b", custom_loader_options=options)], **loader)
        await config.load()
        return config.catalog()

    catalog = asyncio.run(scenario())
    assert "b" in catalog.servables and catalog.bridges == {}


def test_a_removed_pipeline_is_retired_as_a_pipeline_and_remembered_across_a_restart(served):
    path = served / "config.json"
    write(path, [model("a")], [pipeline("p", "a")])

    async def scenario():
        first, deployer, _ = service(path)
        await first.load()
        write(path, [model("a")])
        await first.load()
        restarted = ConfigService(first.settings, deployer, FakeLoaders(), memory=first.memory)
        await restarted.load()
        return first.catalog(), restarted.catalog()

    for catalog in asyncio.run(scenario()):
        assert catalog.retired == {"p": (1,)} and catalog.retired_pipelines == {"p"}
    body = DataPlane({"p": RetiredServable("p", (1,), pipeline=True)})
    with pytest.raises(PipelineRetired, match="^Pipeline is retired - 'p' was removed from the config$"):
        asyncio.run(body.infer(InferRequest("p", None, {})))


def test_a_restarted_config_actor_redeploys_only_what_changed_meanwhile(served):
    """Ray restarts the config actor if its process dies; Serve's applications run on meanwhile."""
    path = served / "config.json"
    factory.write_dummy(served / "c", [1])
    write(path, [model("a"), model("b"), model("c")], [pipeline("p", "a")])

    async def scenario():
        first, deployer, _ = service(path)
        await first.load()
        write(path, [model("a"), model("b")], [pipeline("p", "a")])
        await first.load()  # c retired: END from now on
        write(path, [model("a", nireq=2), model("b")], [pipeline("p", "a")])  # edited while it was down
        restarted = ConfigService(first.settings, deployer, FakeLoaders(), memory=first.memory)
        await restarted.load()
        return deployer, restarted.catalog()

    deployer, catalog = asyncio.run(scenario())
    assert deployer.deployed[1:] == [["model.a", "pipelines"]]  # not model.b, not the node
    assert sorted(catalog.servables) == ["a", "b", "p"] and catalog.retired == {"c": (1,)}
    assert catalog.bridges == {}  # a changed model is served by its old replicas while Serve rolls it


def test_a_first_start_deploys_everything_and_bridges_nothing(served):
    path = served / "config.json"
    write(path, [model("a")])

    async def scenario():
        config, deployer, _ = service(path)
        await config.load()
        return deployer, config.catalog(), config.memory.read()

    deployer, catalog, memory = asyncio.run(scenario())
    assert deployer.deployed == [["model.a"]] and catalog.bridges == {}
    assert memory["deployments"]["model.a"][0] == "model"


def test_a_route_opens_once_its_application_runs_and_a_redeploy_keeps_it(served):
    """Until its first replica runs, the front application serves a new model; then the front door
    sends its requests straight to it. Opening the route redeploys the same entry, route and all."""
    path = served / "config.json"
    write(path, [model("a")])

    async def scenario():
        config, deployer, _ = service(path)
        await config.load()
        await config.check_ready()  # model.a runs: its route opens
        write(path, [model("a", nireq=2), model("b")])
        await config.load()  # a changed (its route stays), b is new (no route yet)
        await config.check_ready()
        await config.check_ready()  # nothing left to open
        return deployer

    deployer = asyncio.run(scenario())
    assert deployer.routes == [
        {"model.a": None},
        {"model.a": "/v2/models/a"},
        {"model.a": "/v2/models/a", "model.b": None},
        {"model.b": "/v2/models/b"},
    ]
    assert deployer.serving["model.a"].fingerprint != deployer.serving["model.b"].fingerprint


def test_a_reload_answers_at_its_deadline_when_serve_is_slow_to_say_what_runs(served):
    """On a busy machine one call to Serve's controller can take longer than the reload's whole
    wait; the reload answers at its deadline all the same, and the wait goes on behind it."""
    path = served / "config.json"
    write(path, [model("a")])
    never = asyncio.Event()

    class StuckDeployer(FakeDeployer):
        async def statuses(self, names: list[str]) -> dict[str, str]:
            await never.wait()  # the controller does not answer within the reload's wait
            return await super().statuses(names)

    async def scenario():
        config, _, _ = service(path, deployer=StuckDeployer())
        await config.load()
        config.mark_answered()
        write(path, [model("a"), model("b")])
        answer = await config.reload(wait_seconds=0.2)
        never.set()  # the controller answers at last: the wait behind the answer finishes
        await asyncio.sleep(0.01)
        return answer

    assert asyncio.run(scenario()) == (True, None)  # 201: the file changed, b is starting
