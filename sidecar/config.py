"""Rules file → validated, compiled, frozen `Rules` (SPEC §2 and §4).

Loading happens in three steps, each refusing the file with a `ConfigError`
that names the path of the bad field:

1. `parse_yaml`       YAML with duplicate keys refused;
2. `structural_errors` the JSON Schema of `schema.py` (types, unknown keys);
3. `compile_rules`    cross-field rules, templates, secrets and keys resolved.

Nothing here runs on the request path.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from sidecar.dialects import DEFAULT, Dialect, Template
from sidecar.dialects.catalog import available_dialects, router_for
from sidecar.errors import ConfigError
from sidecar.keys import KeySource, combine, jwks_file_keys, static_keys
from sidecar.keys.fetch import check_ca
from sidecar.keys.remote import is_remote, refuse_remote_only, remote_keys
from sidecar.lints import lint
from sidecar.rules import (
    Access,
    Cors,
    EdgeLimits,
    Enforcement,
    JwtSettings,
    Mode,
    Permissions,
    PermissionSet,
    Rules,
    Server,
    SetName,
    SharedSecret,
    Stream,
    StreamType,
    Subject,
    TokenPlace,
    Upstream,
)
from sidecar.schema import ACCESS_LEVELS, structural_errors
from sidecar.sources import SourceReader

SECONDS_PER_DAY = 86_400
MAX_KIDLESS_KEYS = 3  # Braze's own limit of public keys per app (SPEC §5.2 step 2)
_DEFAULT_ACCESS = {
    SetName.CUSTOMER_IDS: Access.DENY,
    SetName.EVENT_TYPES: Access.DENY,
    SetName.CUSTOMER_PROPERTIES: Access.DENY,
    SetName.EVENT_PROPERTIES: Access.ALLOW,
}


def load_rules(path: Path, env: Mapping[str, str] | None = None) -> Rules:
    """Read, validate and compile the rules file at `path`."""
    try:
        text = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the rules file: {error.strerror}") from None
    document = parse_yaml(text, path)
    problems = structural_errors(document)
    if problems or not isinstance(document, dict):
        raise ConfigError(*problems)
    version = hashlib.sha256(text).hexdigest()[:12]
    reader = SourceReader(path.parent, env)
    try:
        return compile_rules(document, reader, version=version, origin=path)
    except ConfigError as error:
        raise ConfigError(*error.problems, sources=reader.files) from None


def parse_yaml(text: bytes, path: Path) -> object:
    """The YAML document in `text`; duplicate keys and syntax errors are `ConfigError`s."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: {problem}") from None


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate mapping keys instead of keeping the last,
    and reads booleans as YAML 1.2 does: `enforcement: off` is the string "off"."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BOOL_TAG = "tag:yaml.org,2002:bool"
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def compile_rules(
    document: Mapping[str, Any], reader: SourceReader, version: str, origin: Path
) -> Rules:
    """Compile a structurally valid document; every cross-field problem is reported."""
    problems: list[str] = []
    streams: list[Stream] = []
    dialects = available_dialects(document.get("dialects", ()))
    for index, raw in enumerate(document["streams"]):
        try:
            streams.append(_compile_stream(raw, f"streams[{index}]", reader, dialects))
        except ConfigError as error:
            problems.extend(error.problems)
    problems.extend(_uniqueness_problems(document["streams"]))
    if problems:
        raise ConfigError(*problems)
    router = router_for(dialects, (s.dialect for s in streams))
    return Rules(
        server=_compile_server(document.get("server", {}), reader),
        streams=tuple(streams),
        by_id=MappingProxyType({s.id: s for s in streams}),
        version=version,
        sources=(origin, *dict.fromkeys(reader.files)),
        warnings=tuple(w for s in streams for w in lint(s, dialects[s.dialect])),
        router=router,
    )


def _compile_server(raw: Mapping[str, Any], reader: SourceReader) -> Server:
    upstream = raw["upstream"]
    ca_pem = None
    if "ca_file" in upstream:
        ca_pem = reader.read({"file": upstream["ca_file"]}, "server.upstream.ca_file")
        check_ca(ca_pem, "server.upstream.ca_file")
    return Server(
        listen=_address(raw.get("listen", "0.0.0.0:8080"), "server.listen"),
        admin_listen=_address(raw.get("admin_listen", "0.0.0.0:9090"), "server.admin_listen"),
        max_body_bytes=raw.get("max_body_bytes", 1_048_576),
        reload_interval_seconds=raw.get("reload_interval_seconds", 1),
        shutdown_delay_seconds=raw.get("shutdown_delay_seconds", 5),
        workers=raw.get("workers", 1),
        upstream=Upstream(
            url=upstream["url"].rstrip("/"),
            timeout_seconds=upstream.get("timeout_seconds", 10),
            max_connections=upstream.get("max_connections", 256),
            idle_seconds=upstream.get("idle_seconds", 2),
            max_answer_bytes=upstream.get("max_answer_bytes", 1_048_576),
            ca_pem=ca_pem,
        ),
        limits=EdgeLimits(**raw.get("limits", {})),
        trusted_proxies=tuple(
            _network(cidr, f"server.trusted_proxies[{index}]")
            for index, cidr in enumerate(raw.get("trusted_proxies", ()))
        ),
    )


def _network(text: str, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(
            f"{path}: {text!r} is not an IP address or CIDR block (e.g. 10.0.0.0/8, ::1)"
        ) from None


def _address(text: str, path: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not 0 < int(port) < 65536:
        raise ConfigError(f"{path}: port {port} is out of range 1-65535")
    return host or "0.0.0.0", int(port)  # noqa: S104 - the documented default


def _uniqueness_problems(raw_streams: list[Mapping[str, Any]]) -> list[str]:
    problems = []
    for field in ("name", "id"):
        first: dict[str, int] = {}
        for index, raw in enumerate(raw_streams):
            value = raw[field]
            if value in first:
                used_by = f"streams[{first[value]}]"
                problems.append(f"streams[{index}].{field}: {value!r} is already used by {used_by}")
            first.setdefault(value, index)
    return problems


def _compile_stream(
    raw: Mapping[str, Any], path: str, reader: SourceReader, dialects: Mapping[str, Dialect]
) -> Stream:
    stream_type = StreamType(raw["type"])
    if stream_type is StreamType.PRIVATE and "jwt" in raw:
        raise ConfigError(f"{path}.jwt: only public streams take a `jwt` block")
    if stream_type is StreamType.PUBLIC and "secrets" in raw:
        raise ConfigError(f"{path}.secrets: only private streams take `secrets`")
    if stream_type is StreamType.PRIVATE and "secrets" not in raw:
        raise ConfigError(f"{path}.secrets: a private stream needs at least one secret")
    dialect = _dialect(raw.get("dialect", DEFAULT), f"{path}.dialect", dialects)
    template = _template(dialect, raw.get("template"), f"{path}.template")
    cors = raw.get("cors")
    return Stream(
        name=raw["name"],
        id=raw["id"],
        type=stream_type,
        dialect=dialect.name,
        permissions=Permissions(
            **{s.value: _permission_set(s, raw, template, path) for s in SetName}
        ),
        secrets=tuple(
            _shared_secret(item, f"{path}.secrets[{i}]", reader)
            for i, item in enumerate(raw.get("secrets", ()))
        ),
        jwt=_compile_jwt(raw["jwt"], f"{path}.jwt", reader, dialect.default_token_from)
        if "jwt" in raw
        else None,
        cors=Cors(frozenset(cors["allowed_origins"])) if cors else None,
        debug_headers=raw.get("debug_headers", False),
        options=_options(dialect, raw, path, dialects),
        forward_cookies=frozenset(raw.get("forward_cookies", ())),
        mode=Mode(raw.get("mode", Mode.ENFORCE.value)),
    )


def _dialect(name: str, path: str, dialects: Mapping[str, Dialect]) -> Dialect:
    """The dialect called `name`: built in, or declared under `dialects:`."""
    if name not in dialects:
        have = ", ".join(dialects)
        raise ConfigError(f"{path}: {name!r} is no dialect; declare it under dialects: ({have})")
    return dialects[name]


def _template(dialect: Dialect, name: str | None, path: str) -> Template:
    """The dialect's template called `name` (none: an empty one)."""
    if name is None:
        return {}
    if name not in dialect.templates:
        have = ", ".join(sorted(dialect.templates)) or "none"
        raise ConfigError(f"{path}: the {dialect.name} dialect has no {name!r} template ({have})")
    return dialect.templates[name]


def _options(
    dialect: Dialect, raw: Mapping[str, Any], path: str, dialects: Mapping[str, Dialect]
) -> object:
    """The stream keys only its dialect takes, compiled by the dialect; another
    dialect's option is an error naming the field."""
    for other in dialects.values():
        for key in other.option_schemas.keys() - dialect.option_schemas.keys():
            if key in raw:
                raise ConfigError(
                    f"{path}.{key}: only {other.name} streams take `{key}` "
                    f"(this stream speaks {dialect.name})"
                )
    return dialect.compile_options(raw, path)


def _permission_set(
    name: SetName, raw: Mapping[str, Any], template: Mapping[str, Any], path: str
) -> PermissionSet:
    """Merge the stream's own lists over its template's, name by name."""
    base = template.get(name.value, {})
    own = raw.get(name.value, {})
    listed = _listed(base, f"template.{name.value}")
    listed.update(_listed(own, f"{path}.{name.value}"))
    default = own.get("default", base.get("default", _DEFAULT_ACCESS[name].value))
    return PermissionSet(default=Access(default), listed=MappingProxyType(listed))


def _listed(raw: Mapping[str, Any], path: str) -> dict[str, Access]:
    listed: dict[str, Access] = {}
    for level in ACCESS_LEVELS:
        for item in raw.get(level, ()):
            if item in listed:
                raise ConfigError(
                    f"{path}.{level}: {item!r} is also listed under {listed[item].value}; "
                    "a name may appear in only one list"
                )
            listed[item] = Access(level)
    return listed


def _shared_secret(raw: Mapping[str, Any], path: str, reader: SourceReader) -> SharedSecret:
    if "sha256" in raw:
        return SharedSecret(id=raw["id"], digest=bytes.fromhex(raw["sha256"]))
    value = reader.read_secret(raw["value"], f"{path}.value")
    if not value:
        raise ConfigError(f"{path}.value: the secret is empty")
    return SharedSecret(id=raw["id"], digest=hashlib.sha256(value).digest())


def _compile_jwt(
    raw: Mapping[str, Any], path: str, reader: SourceReader, token_from: tuple[TokenPlace, ...]
) -> JwtSettings:
    subject = raw.get("subject")
    keys = _key_source(raw, path, reader)
    kid_required = raw.get("kid_required", True)
    if not kid_required and len(keys.current()) > MAX_KIDLESS_KEYS:
        raise ConfigError(
            f"{path}.kid_required: a stream that accepts tokens without kid may hold at most "
            f"{MAX_KIDLESS_KEYS} keys (it has {len(keys.current())})"
        )
    return JwtSettings(
        enforcement=Enforcement(raw.get("enforcement", "enforce")),
        leeway_seconds=raw.get("leeway_seconds", 30),
        max_lifetime_seconds=int(raw.get("max_lifetime_days", 90) * SECONDS_PER_DAY),
        keys=keys,
        kid_required=kid_required,
        subject=Subject(subject["claim"], subject["id_type"]) if subject else None,
        token_from=_token_places(raw.get("token_from"), f"{path}.token_from", token_from),
        issuer=raw.get("issuer"),
        audiences=frozenset(raw.get("audiences", ())),
    )


def _key_source(raw: Mapping[str, Any], path: str, reader: SourceReader) -> KeySource:
    """The stream's keys: static ones, plus a JWKS file's or a remote key set."""
    static = static_keys(raw.get("keys", ()), f"{path}.keys", reader)
    jwks = raw.get("jwks")
    if jwks is None:
        return static
    if is_remote(jwks):
        if "discovery" in jwks and "issuer" not in raw:
            raise ConfigError(
                f"{path}.issuer: is required with jwks.discovery "
                "(the discovery document's issuer must equal it)"
            )
        return remote_keys(jwks, f"{path}.jwks", reader, raw.get("issuer"), static.keys)
    refuse_remote_only(jwks, f"{path}.jwks")
    from_file = jwks_file_keys(jwks, f"{path}.jwks", reader)
    _check_unique_kids({f"{path}.keys": static, f"{path}.jwks": from_file})
    return combine((static, from_file))


def _check_unique_kids(sources: Mapping[str, KeySource]) -> None:
    """A kid names one key of a stream, whichever source holds it."""
    seen: set[str] = set()
    for path, source in sources.items():
        for kid in source.current().by_kid:
            if kid in seen:
                raise ConfigError(f"{path}: kid {kid!r} is already used in this stream")
            seen.add(kid)


def _token_places(
    raw: list[Mapping[str, str]] | None, path: str, default: tuple[TokenPlace, ...]
) -> tuple[TokenPlace, ...]:
    if raw is None:
        return default
    places = []
    for index, item in enumerate(raw):
        if "cookie" in item and "scheme" in item:
            raise ConfigError(f"{path}[{index}].scheme: only a header place takes a scheme")
        places.append(TokenPlace(item.get("header"), item.get("scheme"), item.get("cookie")))
    return tuple(places)
