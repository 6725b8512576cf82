"""Hypothesis strategies for tracking bodies of both dialects.

Bodies are dialect-shaped JSON whose keys are sometimes spelled the way a
case-folding collector confuses them (case variants, the long s U+017F, the
Kelvin sign U+212A, a trailing NUL), sometimes repeated under another spelling,
and — with `wild` — whose values are sometimes any JSON at all. They are kept as
`Obj` (ordered key/value pairs) and rendered as raw JSON text, so one object can
hold two keys that fold alike, as an attacker's body does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

LONG_S, KELVIN = "\u017f", "\u212a"


class Obj(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs, in order (a key may repeat)."""


def render(value: Any, ascii_only: bool = True) -> str:
    """JSON text of `value`; `Obj` pairs are written as they are."""
    if isinstance(value, Obj):
        return "{" + ",".join(
            json.dumps(key, ensure_ascii=ascii_only) + ":" + render(item, ascii_only)
            for key, item in value
        ) + "}"  # fmt: skip
    if isinstance(value, list):
        return "[" + ",".join(render(item, ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def lookalikes(name: str) -> list[str]:
    """Spellings of `name` that Go's decoder (or a C-string reader) takes for it."""
    found = [name.upper(), name[:1].upper() + name[1:], name.swapcase(), name.lower(), name + "\0"]
    if "s" in name:
        found.append(name.replace("s", LONG_S, 1))
    if "k" in name.lower():
        found.append(name.replace("k", KELVIN, 1).replace("K", KELVIN, 1))
    return [spelling for spelling in dict.fromkeys(found) if spelling != name]


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False,
    allow_infinity=False), st.text(max_size=8),
)  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=6), inner, max_size=3).map(lambda d: Obj(d.items())),
    ),
    max_leaves=8,
)


@dataclass(frozen=True)
class Shape:
    """How to draw one kind of object: its fields and each field's values."""

    fields: dict[str, st.SearchStrategy[Any]]
    optional: frozenset[str] = frozenset()


@st.composite
def obj(draw: st.DrawFn, shape: Shape, wild: bool, misspell: bool) -> Obj:
    """An object of `shape`; with `misspell`, some keys are look-alikes, repeated or not."""
    pairs = Obj()
    for name, values in shape.fields.items():
        if name in shape.optional and draw(st.booleans()):
            continue
        value = draw(st.one_of(values, JSON) if wild else values)
        pairs.append((name, value))
    for _ in range(draw(st.integers(0, 2)) if misspell else 0):
        name = draw(st.sampled_from(sorted(shape.fields)))
        key = draw(st.sampled_from(lookalikes(name)))
        pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(shape.fields[name])))
    return pairs


def names(
    pool: list[str], values: st.SearchStrategy[Any], misspell: bool, min_size: int = 0
) -> st.SearchStrategy[Obj]:
    """A container of names drawn from `pool` (and, with `misspell`, their look-alikes)."""
    keys = st.sampled_from(pool)
    if misspell:
        spellings = sorted({s for name in pool for s in [name, *lookalikes(name)]})
        keys = st.one_of(keys, st.sampled_from(spellings))
    return st.dictionaries(keys, values, min_size=min_size, max_size=4).map(
        lambda d: Obj(d.items())
    )


ID_TYPES, ID_VALUES = ["cookie", "registered", "phone_id"], st.sampled_from(["c-1", "victim"])
PROPERTY_NAMES = ["path", "title", "password", "first_name", "email"]


def bloomreach(wild: bool, misspell: bool) -> dict[str, st.SearchStrategy[Any]]:
    """Bodies by bloomreach endpoint name."""
    data = Shape(
        {
            "customer_ids": names(ID_TYPES, ID_VALUES, misspell, min_size=1),
            "event_type": st.sampled_from(["page_visit", "purchase", "view_item"]),
            "timestamp": st.sampled_from([None, 1700000000.5, 17]),
            "properties": st.one_of(st.none(), names(PROPERTY_NAMES, SCALARS, misspell)),
        },
        frozenset({"timestamp", "properties"}),
    )
    event = obj(data, wild, misspell)
    item = obj(
        Shape(
            {
                "name": st.sampled_from(["customers/events", "customers", "system/time"]),
                "data": event,
            }
        ),
        wild,
        misspell,
    )
    batch = obj(Shape({"commands": st.lists(item, max_size=4)}), wild, misspell)
    return {"customers/events": event, "customers": event, "batch": batch}


def segment(wild: bool, misspell: bool, write_key: str) -> dict[str, st.SearchStrategy[Any]]:
    """Bodies by segment endpoint name (`batch` for the batch endpoints)."""
    traits = names(["name", "email", "password", "plan"], SCALARS, misspell)
    context = obj(Shape({"traits": st.one_of(st.none(), traits)}), wild, misspell)
    message_fields: dict[str, st.SearchStrategy[Any]] = {
        "userId": st.sampled_from([None, "u-1", "victim"]),
        "anonymousId": st.sampled_from([None, "a-1"]),
        "previousId": st.just("p-1"),
        "event": st.sampled_from(["Product Viewed", "Order Completed"]),
        "properties": st.one_of(st.none(), names(PROPERTY_NAMES, SCALARS, misspell)),
        "traits": st.one_of(st.none(), traits),
        "context": context,
        "writeKey": st.just(write_key),
    }
    optional = frozenset(message_fields) - {"anonymousId"}
    bodies = {}
    for message_type in ("track", "identify", "page", "group", "alias"):
        shape = Shape({"type": st.just(message_type), **message_fields}, optional | {"type"})
        bodies[message_type] = obj(shape, wild, misspell)
    message = st.one_of(*bodies.values())
    envelope = Shape(
        {
            "batch": st.lists(message, max_size=4),
            "context": context,
            "writeKey": st.just(write_key),
        },
        frozenset({"context", "writeKey"}),
    )
    bodies["batch"] = obj(envelope, wild, misspell)
    return bodies
