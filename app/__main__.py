"""Command line: ``python -m app validate CONFIG``, ``python -m app schema``,
``python -m app graph CONFIG PIPELINE``, ``python -m app serve-flags`` and
``python -m app run SERVE_RUN_ARGS...``."""

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
    run = commands.add_parser("run", help="serve run, on a local Ray without the dashboard (make run)")
    run.add_argument("serve_run_args", nargs=argparse.REMAINDER, help="what serve run takes")
    args = parser.parse_args(argv)
    if args.command == "run":
        from app.launch import serve_run  # Ray only for the command that needs it

        return serve_run(args.serve_run_args)
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
