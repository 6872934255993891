"""Command line: ``python -m app validate CONFIG`` and ``python -m app schema``."""
from __future__ import annotations

import argparse
import json
import sys

from app.config import ConfigError, ServerConfig, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="rayvino: OVMS configs on Ray Serve")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a config.json; print OK or every error")
    validate.add_argument("config")
    commands.add_parser("schema", help="print the JSON Schema of config.json")
    args = parser.parse_args(argv)
    if args.command == "schema":
        print(json.dumps(ServerConfig.model_json_schema(), indent=2))
        return 0
    try:
        load_config(args.config)
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
