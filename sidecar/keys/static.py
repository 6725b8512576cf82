"""The `static` key source: `jwt.keys[]` entries (HMAC secrets and PEM public keys)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sidecar.errors import ConfigError
from sidecar.keys.base import FixedKeys, KeySet, VerificationKey
from sidecar.keys.material import load_key
from sidecar.sources import SourceReader


def static_keys(raw: Sequence[Mapping[str, Any]], path: str, reader: SourceReader) -> FixedKeys:
    """The configured keys, each checked; a duplicate kid fails the load."""
    keys: dict[str, VerificationKey] = {}
    for index, item in enumerate(raw):
        key_path = f"{path}[{index}]"
        if item["kid"] in keys:
            raise ConfigError(f"{key_path}.kid: {item['kid']!r} is already used in this stream")
        keys[item["kid"]] = load_key(item, key_path, reader)
    return FixedKeys("static", KeySet.of(keys.values()))
