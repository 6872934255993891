"""Command line: ``python -m app validate CONFIG``, ``python -m app schema``,
``python -m app graph CONFIG PIPELINE``, ``python -m app serve-flags``,
``python -m app serve-config [CONFIG]``, ``python -m app run SERVE_RUN_ARGS...`` and
``python -m app serve [CONFIG]``."""

from __future__ import annotations

import argparse
import json
import sys

from app import serve_flags
from app.config import ConfigError, ServerConfig, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="rayvino: OVMS configs on Ray Serve")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a config.json; print OK or every error")
    validate.add_argument("config")
    commands.add_parser("schema", help="print the JSON Schema of config.json")
    graph = commands.add_parser("graph", help="print a pipeline of a config.json as a Mermaid flowchart")
    graph.add_argument("config")
    graph.add_argument("pipeline")
    commands.add_parser(
        "serve-flags", help="print the Ray Serve settings as shell exports, for every node of a cluster"
    )
    serve_config = commands.add_parser(
        "serve-config",
        help="print the Serve config (KubeRay's serveConfigV2, serve deploy's file) that serves CONFIG "
        "on a cluster: serve_config.yaml on every interface, a proxy on every node",
    )
    _address_arguments(serve_config, config_default=None)
    serve_config.add_argument("--proxy-location", default="EveryNode", choices=["EveryNode", "HeadOnly", "Disabled"])
    run = commands.add_parser("run", help="serve run, on a local Ray without the dashboard (make run)")
    run.add_argument("serve_run_args", nargs=argparse.REMAINDER, help="what serve run takes")
    serve = commands.add_parser(
        "serve", help="serve CONFIG on every interface on a local Ray (the container image's entry point)"
    )
    _address_arguments(serve, config_default="configs/config.json")
    args = parser.parse_args(argv)
    if args.command == "run":
        from app.launch import serve_run  # Ray only for the commands that need it

        return serve_run(args.serve_run_args)
    if args.command == "serve":
        from app.launch import serve_container

        return serve_container(args.config, args.host, args.port, args.grpc_port)
    if args.command == "serve-config":
        from app.deploy_config import deploy_config, dump

        config = deploy_config(
            args.config, host=args.host, port=args.port, grpc_port=args.grpc_port, proxy_location=args.proxy_location
        )
        print(dump(config), end="")
        return 0
    if args.command == "serve-flags":
        print(serve_flags.exports())
        return 0
    if args.command == "schema":
        print(json.dumps(ServerConfig.model_json_schema(), indent=2))
        return 0
    if args.command == "graph":
        return _graph(args.config, args.pipeline)
    try:
        load_config(args.config)
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        return 1
    print("OK")
    return 0


def _address_arguments(parser: argparse.ArgumentParser, config_default: str | None) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        default=config_default,
        help="the OVMS config.json to serve (default: " + (config_default or "serve_config.yaml's config_path") + ")",
    )
    parser.add_argument("--host", default="0.0.0.0", help="REST address (default: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="REST port (default: 8000)")
    parser.add_argument(
        "--grpc-port", type=int, default=None, help="KServe v2 gRPC port, 0 for none (default: serve_config.yaml's)"
    )


def _graph(config_path: str, name: str) -> int:
    from app.pipeline.mermaid import to_mermaid

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    pipeline = next((p for p in config.pipeline_config_list if p.name == name), None)
    if pipeline is None:
        names = [p.name for p in config.pipeline_config_list]
        print(f"{config_path} has no pipeline '{name}'; its pipelines are {names or 'none'}", file=sys.stderr)
        return 1
    print(to_mermaid(pipeline), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
