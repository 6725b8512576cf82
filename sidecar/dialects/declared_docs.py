"""The help of every field of a declaration (`dialects:`), for `sidecar.schema_docs`:
`trackgate schema` prints it and docs/configuration.md renders it. docs/dialects.md
is the reference with examples."""

from __future__ import annotations

_PLACES = {
    "header": "A request header holding the stream ID.",
    "query": "A query parameter holding it (a look-alike spelling is `stream_id_conflict`).",
    "path": "`stream_id`: the `{stream_id}` segment of the endpoint's path.",
    "basic": "`user`: the user of `Authorization: Basic`.",
    "body": "A JSON pointer into the decoded body (request level).",
    "command": "A JSON pointer into every command; commands may not disagree.",
}
_WRAPPING = {
    "base64": "`never` (default), `always`, or `optional` (base64 unless the text starts "
    "with `{` or `[`); both alphabets, padded or not, are read.",
    "alphabet": "`standard` (default) or `url`: written when the received text does not show it.",
    "padding": "Whether to pad with `=` when the received text does not show it (default true).",
}
_SET_NAMES = ("customer_ids", "event_types", "customer_properties", "event_properties")


def _places(prefix: str, what: str) -> dict[str, str]:
    return {prefix: what, **{f"{prefix}[].{k}": v for k, v in _PLACES.items()}}


def _containers(prefix: str, what: str) -> dict[str, str]:
    return {
        prefix: f"{what} containers: objects whose keys (arrays whose strings) are names.",
        f"{prefix}[].pointer": "Where the container is; absent or null is an empty one.",
        f"{prefix}[].in": "`command` (default) or `document`: where the pointer starts.",
        f"{prefix}[].exclude": "Keys of the container that are not properties.",
        f"{prefix}[].only": "Only these keys of the object are properties.",
        f"{prefix}[].operators": "Keys holding update operators (`$set`, `$unset`, …): the names "
        "inside them are properties; other keys are properties themselves.",
    }


def _case(prefix: str) -> dict[str, str]:
    return {
        f"{prefix}.kind": "`event` (default), `customer` (a customer update) or `passthrough` "
        "(forwarded untouched).",
        f"{prefix}.ids": "The customer ids of a command.",
        f"{prefix}.ids[].pointer": 'Where the id is; absent, null or "" is no id.',
        f"{prefix}.ids[].type": "Its id type, as `customer_ids` rules name it.",
        f"{prefix}.ids[].in": "`command` (default) or `document` (an id of every command).",
        f"{prefix}.event_type": "Where the event type is: `pointer`, `pointers` or `value`.",
        f"{prefix}.event_type.pointer": "A JSON pointer to the event type.",
        f"{prefix}.event_type.pointers": "Pointers tried in order; the first present wins.",
        f"{prefix}.event_type.value": "A fixed event type.",
        f"{prefix}.event_type.pattern": "A regular expression whose first group is the event type.",
        **_containers(f"{prefix}.event_properties", "Event property"),
        **_containers(f"{prefix}.customer_properties", "Customer property"),
    }


def _template(name: str, what: str) -> dict[str, str]:
    found = {f".templates.{name}": what}
    for set_name in _SET_NAMES:
        key = f".templates.{name}.{set_name}"
        found[key] = f"The template's `{set_name}` permission set."
        found[f"{key}.default"] = "Access for names not listed."
        found[f"{key}.allow"] = "Names accepted without a signature."
        found[f"{key}.signed_only"] = "Names accepted only with a valid JWT."
        found[f"{key}.deny"] = "Names never accepted."
    return found


def _answer(prefix: str, what: str) -> dict[str, str]:
    return {
        prefix: what,
        f"{prefix}.status": "Its HTTP status (default 200).",
        f"{prefix}.body": "Its body template: JSON, or a string sent as text.",
    }


_FIELDS = {
    "": "Wire formats declared in YAML (docs/dialects.md); streams name them in `dialect`.",
    ".name": "The dialect's name; not a built-in one's.",
    ".anonymous_id": "The id type its web SDKs track anonymous visitors by (a lint).",
    **_places(".stream_id", "Where the stream ID travels, in order; all values must agree."),
    ".secret_from": "Where a private stream's secret travels, instead of the Basic password "
    "and `X-Stream-Secret`.",
    ".secret_from[].header": "A header holding the secret.",
    ".secret_from[].basic": "`user` or `password` of `Authorization: Basic`.",
    ".token_from": "Where a JWT travels for its streams without `jwt.token_from` "
    "(default `Authorization: Bearer`).",
    ".token_from[].header": "A header holding the token.",
    ".token_from[].scheme": "The auth scheme before the token, e.g. `Bearer`.",
    ".token_from[].cookie": "A cookie holding the token.",
    ".endpoints": "The tracking endpoints (POST).",
    ".endpoints[].path": "The exact path, with at most one `{stream_id}` segment.",
    ".endpoints[].name": "Its name in logs (default: the path).",
    ".endpoints[].carrier": "How the body carries the document (default: JSON).",
    ".endpoints[].carrier.form": "The form field (`application/x-www-form-urlencoded`) "
    "holding the document.",
    ".endpoints[].carrier.gzip": "`header` (default: gzip when `Content-Encoding: gzip` says "
    "so) or `magic`: also a body starting with gzip's magic bytes (posthog-js's `gzip-js`).",
    **{f".endpoints[].carrier.{k}": v for k, v in _WRAPPING.items()},
    ".endpoints[].commands": "Where the commands are, in body order.",
    ".endpoints[].commands[].pointer": 'Where in the document ("": the whole document, used '
    "only when no other source is present).",
    ".endpoints[].commands[].shape": "The shape of these commands.",
    ".endpoints[].commands[].as": "`array` (default), `object` (one command) or `either`.",
    **_places(".endpoints[].stream_id", "This endpoint's stream ID places instead."),
    ".endpoints[].secret_from": "This endpoint's secret places instead.",
    ".endpoints[].secret_from[].header": "A header holding the secret.",
    ".endpoints[].secret_from[].basic": "`user` or `password` of `Authorization: Basic`.",
    ".shapes": "The kinds of command, each read by JSON pointers.",
    ".shapes[].name": "The shape's name.",
    **_case(".shapes[]"),
    ".shapes[].embedded": "Members that are strings holding JSON; pointers go through them.",
    ".shapes[].embedded[].pointer": "The member holding the string.",
    **{f".shapes[].embedded[].{k}": v for k, v in _WRAPPING.items()},
    ".shapes[].discriminator": "A pointer to the value that picks one of `cases`.",
    ".shapes[].cases": "Per discriminator value, keys replacing the shape's own.",
    ".shapes[].cases[].when": "The discriminator values of this case.",
    **_case(".shapes[].cases[]"),
    ".shapes[].otherwise": "The case of any other value (none: such a command is malformed).",
    **_case(".shapes[].otherwise"),
    ".answers": "How its SDKs are answered when trackgate answers itself.",
    ".answers.rejected": "A request rejected whole.",
    ".answers.rejected.body": "Its body template (`{code}`, `{message}`, `{status}`).",
    ".answers.rejected.statuses": "The 4xx statuses its SDKs drop without retrying; another "
    "4xx becomes the first.",
    ".answers.rejected.overrides": "Other answers for some reason codes.",
    ".answers.rejected.overrides[].reasons": "The reason codes.",
    ".answers.rejected.overrides[].status": "Their status (default: the reason's own).",
    ".answers.rejected.overrides[].body": "Their body template.",
    **_answer(".answers.all_rejected", "Every command of a batch rejected: nothing forwarded."),
    **_answer(".answers.partial", "Some commands rejected (default: the collector's answer)."),
    ".templates": "`public` and `private` templates (default: derived from the id types).",
    **_template("public", "The `public` template."),
    **_template("private", "The `private` template."),
}

FIELDS: dict[str, str] = {
    f"dialects[]{key}" if key else "dialects": text for key, text in _FIELDS.items()
}
