"""The `jwks_file` key source: a local JWKS file, watched and reloaded like the rules.

The operator controls this file, so every entry must be a usable signing key:
a JWK meant for encryption or of an unsupported type fails the load (a remote
set, which a provider controls, skips such keys instead).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from sidecar.errors import ConfigError
from sidecar.keys.base import FixedKeys, KeySet, VerificationKey
from sidecar.keys.material import HMAC_MIN_BYTES, jwk_key
from sidecar.sources import SourceReader


def jwks_file_keys(raw: Mapping[str, str], path: str, reader: SourceReader) -> FixedKeys:
    """The file's keys as a source."""
    return FixedKeys("jwks_file", KeySet.of(load_jwks(raw, path, reader)))


def load_jwks(raw: Mapping[str, str], path: str, reader: SourceReader) -> list[VerificationKey]:
    """The keys of a JWKS file, each checked like a configured key."""
    try:
        document = json.loads(reader.read(raw, path))
    except ValueError:
        raise ConfigError(f"{path}.file: not a JSON document") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ConfigError(f"{path}.file: a JWKS is an object with a `keys` list")
    keys: dict[str, VerificationKey] = {}
    for index, jwk in enumerate(document["keys"]):
        key = jwk_key(jwk, f"{path}.keys[{index}]")
        if key.kid in keys:
            raise ConfigError(f"{path}.keys[{index}].kid: {key.kid!r} appears twice")
        keys[key.kid] = key
    if len({key.alg in HMAC_MIN_BYTES for key in keys.values()}) > 1:
        raise ConfigError(
            f"{path}.file: mixes shared secrets with public keys; keep secrets in their own file"
        )
    return list(keys.values())
