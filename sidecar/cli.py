"""The `trackgate` command line (SPEC §7). Nothing imports this module."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from sidecar import __version__, logs
from sidecar.config import load_rules
from sidecar.errors import ConfigError
from sidecar.rules import Rules
from sidecar.schema import SCHEMA


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `trackgate` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logs.configure()
    return int(args.run(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trackgate", description="Authorization sidecar for event-tracking collectors."
    )
    parser.add_argument("--version", action="version", version=f"trackgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the sidecar")
    _config_option(serve)
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check", help="validate the rules file and print lint warnings")
    _config_option(check)
    check.set_defaults(run=_check)

    schema = commands.add_parser("schema", help="print the JSON Schema of the rules file")
    schema.set_defaults(run=_schema)

    demo = commands.add_parser("demo", help="run a demo collector with the sidecar in front")
    demo.add_argument("--config", type=Path, default=None, help="default: config/demo.yaml")
    demo.set_defaults(run=_demo)
    return parser


def _config_option(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("TRACKGATE_CONFIG")
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(default) if default else None,
        required=default is None,
        help="rules file (default: $TRACKGATE_CONFIG)",
    )


def _load(path: Path) -> Rules | None:
    try:
        return load_rules(path)
    except ConfigError as error:
        print(f"trackgate: {path} is invalid:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    from sidecar.app import serve  # noqa: PLC0415 - keep `check`/`schema` free of aiohttp start-up

    rules = _load(args.config)
    if rules is None:
        return 1
    asyncio.run(serve(args.config, rules))
    return 0


def _check(args: argparse.Namespace) -> int:
    rules = _load(args.config)
    if rules is None:
        return 1
    for warning in rules.warnings:
        print(f"warning: {warning}")
    print(f"{args.config}: ok ({len(rules.streams)} streams, version {rules.version})")
    return 0


def _schema(_: argparse.Namespace) -> int:
    print(json.dumps(SCHEMA, indent=2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sidecar.demo import run_demo  # noqa: PLC0415

    path = args.config or _demo_config()
    rules = _load(path)
    if rules is None:
        return 1
    asyncio.run(run_demo(path, rules))
    return 0


def _demo_config() -> Path:
    local = Path("config/demo.yaml")
    return local if local.exists() else Path(__file__).resolve().parent.parent / local
