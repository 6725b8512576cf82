"""The `trackgate` command line (SPEC §7). Nothing imports this module."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from sidecar import __version__, logs
from sidecar.config import load_rules
from sidecar.errors import ConfigError, StartupError
from sidecar.explain import ExplainError, explain, failures
from sidecar.keys.fetch import FetchError
from sidecar.keys.refresh import fetch_once
from sidecar.keys.remote import RemoteKeys
from sidecar.keytools import (
    ToolError,
    hmac_secret,
    load_signing_key,
    mint_token,
    parse_ids,
    parse_ttl,
    rsa_key_pair,
    shared_secret,
    write_new_file,
)
from sidecar.rules import Rules
from sidecar.schema_docs import documented_schema
from sidecar.workers import WORKER_ENV, supervise


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `trackgate` console script; returns the exit code. Every
    failure a user can cause ends in one line naming what to fix, never a traceback."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "needs_config", False) and args.config is None:
        parser.error(f"{args.command}: give --config PATH or set TRACKGATE_CONFIG")
    try:
        return int(args.run(args))
    except (ToolError, ExplainError) as error:
        return _fail(str(error), 2)
    except StartupError as error:
        return _fail(str(error), 1)
    except OSError as error:  # a file named on the command line, a terminal gone
        return _fail(f"{error.filename or ''}: {error.strerror or type(error).__name__}", 1)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> int:
    print(f"trackgate: {message}", file=sys.stderr)
    return code


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
    check.add_argument(
        "--fetch",
        action="store_true",
        help="also fetch each remote key set (jwks url or discovery) once and list its keys",
    )
    check.set_defaults(run=_check)

    explain_cmd = commands.add_parser(
        "explain", help="show the decision for a body, without sending it"
    )
    _config_option(explain_cmd)
    explain_cmd.add_argument("--stream", required=True, help="stream name")
    explain_cmd.add_argument("--token", help="a JWT, as the client would send it")
    explain_cmd.add_argument("--endpoint", help="request path (default: by body shape)")
    explain_cmd.add_argument("body", type=Path, help="JSON body file (- for stdin)")
    explain_cmd.add_argument(
        "--fail-on",
        action="append",
        choices=["reject", "strip"],
        default=[],
        help="exit 1 when mode: enforce would reject (or strip) anything: a CI gate",
    )
    explain_cmd.set_defaults(run=_explain)

    keygen = commands.add_parser("keygen", help="generate keys and secrets")
    kinds = keygen.add_subparsers(dest="kind", required=True)
    hmac = kinds.add_parser("hmac", help="an HMAC signing key (printed once)")
    hmac.add_argument("--alg", default="HS256", choices=["HS256", "HS384", "HS512"])
    hmac.add_argument("--kid", default=None, help="default: hmac-YYYY-MM")
    hmac.add_argument(
        "--out", type=Path, help="write the secret to this new file (mode 0600) instead of stdout"
    )
    hmac.set_defaults(run=_keygen_hmac)
    rsa = kinds.add_parser("rsa", help="an RSA key pair as PEM files")
    rsa.add_argument("--bits", type=int, default=2048)
    rsa.add_argument("--kid", default=None, help="default: rsa-YYYY-MM")
    rsa.add_argument("--out", type=Path, required=True, help="directory for KID.key and KID.pem")
    rsa.set_defaults(run=_keygen_rsa)
    secret = kinds.add_parser("secret", help="a private-stream secret and its sha256 line")
    secret.set_defaults(run=_keygen_secret)

    token = commands.add_parser("token", help="mint a JWT for testing and backend examples")
    source = token.add_mutually_exclusive_group(required=True)
    source.add_argument("--secret-env", metavar="VAR", help="HMAC secret from this variable")
    source.add_argument("--private-key", type=Path, metavar="FILE", help="PEM private key")
    token.add_argument("--kid", required=True)
    token.add_argument("--ids", nargs="*", default=[], metavar="TYPE=VALUE")
    token.add_argument("--subject", help="a `sub` claim, for streams with jwt.subject")
    token.add_argument("--ttl", default="24h", help="lifetime: 90s, 30m, 24h, 7d")
    token.add_argument("--alg", help="default: HS256 for secrets, by key type otherwise")
    token.set_defaults(run=_token)

    schema = commands.add_parser("schema", help="print the JSON Schema of the rules file")
    schema.set_defaults(run=_schema)

    demo = commands.add_parser("demo", help="run a demo collector with the sidecar in front")
    demo.add_argument("--config", type=Path, default=None, help="default: config/demo.yaml")
    demo.set_defaults(run=_demo)
    return parser


def _config_option(parser: argparse.ArgumentParser) -> None:
    """`--config`, optional on the command line: $TRACKGATE_CONFIG is the default
    (`main` says so when neither is given)."""
    default = os.environ.get("TRACKGATE_CONFIG")
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(default) if default else None,
        help="rules file (default: $TRACKGATE_CONFIG)",
    )
    parser.set_defaults(needs_config=True)


def _load(path: Path) -> Rules | None:
    try:
        return load_rules(path)
    except ConfigError as error:
        print(f"trackgate: {path} is invalid:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    from sidecar.app import check_ports, run  # noqa: PLC0415 - only `serve` needs the server

    rules = _load(args.config)
    if rules is None:
        return 1
    logs.configure()
    if rules.server.workers > 1 and WORKER_ENV not in os.environ:
        check_ports(rules.server)
        return supervise(args.config, rules.server.workers)
    run(args.config, rules)
    return 0


def _check(args: argparse.Namespace) -> int:
    rules = _load(args.config)
    if rules is None:
        return 1
    for warning in rules.warnings:
        print(f"warning: {warning}")
    print(f"{args.config}: ok ({len(rules.streams)} streams, version {rules.version})")
    return _fetch_remote_keys(rules) if args.fetch else 0


def _fetch_remote_keys(rules: Rules) -> int:
    """`check --fetch`: each remote key set fetched once, as the sidecar would, and
    what it holds (kids, algorithms, skipped keys); 1 when any fetch fails."""
    failed = 0
    for stream in rules.streams:
        source = stream.jwt.keys if stream.jwt is not None else None
        if not isinstance(source, RemoteKeys):
            continue
        where = f"stream {stream.name!r}: {source.settings.where}"
        try:
            fetched = asyncio.run(fetch_once(source.settings))
        except FetchError as error:
            print(f"{where}: fetch failed ({error.result}): {error.message}", file=sys.stderr)
            failed += 1
            continue
        print(f"{where}: {len(fetched.keys)} keys")
        for key in fetched.keys.by_kid.values():
            print(f"  kid {key.kid}  alg {key.alg}")
        for skipped in fetched.skipped:
            print(f"  skipped {skipped}")
        if fetched.max_age is not None:
            print(f"  refreshed every {fetched.max_age:g} s (Cache-Control max-age, clamped)")
    return 1 if failed else 0


def _explain(args: argparse.Namespace) -> int:
    rules = _load(args.config)
    if rules is None:
        return 1
    body = sys.stdin.buffer.read() if str(args.body) == "-" else _read(args.body)
    report = explain(rules, args.stream, body, args.endpoint, args.token)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    failed = failures(report, args.fail_on)
    for message in failed:
        print(f"trackgate: {message}", file=sys.stderr)
    return 1 if failed else 0


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ToolError(f"{path}: cannot read the body file ({error.strerror})") from None


def _keygen_hmac(args: argparse.Namespace) -> int:
    kid = args.kid or time.strftime("hmac-%Y-%m")
    secret = hmac_secret(args.alg)
    if args.out is None:
        print(f"kid: {kid}\nalg: {args.alg}\nsecret: {secret}")
        source = "{env: YOUR_SECRET_VARIABLE}"
        where = "Store the secret in a Secret (it is shown only now) and add to jwt.keys"
    else:
        write_new_file(args.out, f"{secret}\n".encode(), 0o600)
        print(f"kid: {kid}\nalg: {args.alg}\nsecret: written to {args.out}")
        source = f"{{file: {args.out}}}"
        where = "Give the file to the signing backend and to trackgate, and add to jwt.keys"
    print(
        f"\n# {where}:\n#   - {{kid: {kid}, alg: {args.alg}, secret: {source}}}",
        file=sys.stderr,
    )
    return 0


def _keygen_rsa(args: argparse.Namespace) -> int:
    kid = args.kid or time.strftime("rsa-%Y-%m")
    private_path, public_path = rsa_key_pair(args.bits, args.out, kid)
    print(f"kid: {kid}\nprivate key: {private_path} (keep it on the backend)")
    print(f"public key: {public_path}")
    print(
        f"# jwt.keys entry:\n#   - {{kid: {kid}, alg: RS256, public_key: {{file: {public_path}}}}}"
    )
    return 0


def _keygen_secret(_: argparse.Namespace) -> int:
    secret = shared_secret()
    print(f"secret: {secret.value}")
    print(f'sha256: "{secret.sha256}"')
    return 0


def _token(args: argparse.Namespace) -> int:
    if args.secret_env:
        if args.secret_env not in os.environ:
            raise ToolError(f"environment variable {args.secret_env} is not set")
        key: object = os.environ[args.secret_env]
    else:
        key = load_signing_key(args.private_key)
    ids = parse_ids(args.ids)
    ttl = parse_ttl(args.ttl)
    print(mint_token(key, args.kid, alg=args.alg, ids=ids, ttl=ttl, subject=args.subject))
    return 0


def _schema(_: argparse.Namespace) -> int:
    print(json.dumps(documented_schema(), indent=2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sidecar.demo import run_demo  # noqa: PLC0415

    path = args.config or _demo_config()
    rules = _load(path)
    if rules is None:
        return 1
    logs.configure()
    asyncio.run(run_demo(path, rules))
    return 0


def _demo_config() -> Path:
    local = Path("config/demo.yaml")
    return local if local.exists() else Path(__file__).resolve().parent.parent / local
