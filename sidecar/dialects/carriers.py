"""How a declared dialect's document travels, read strictly and written back in the same form.

Three wrappings, any combination, each undone on the way in and redone on the
way out exactly as the client chose it (SPEC §3.5):

- a form field (`application/x-www-form-urlencoded`, `data=…`): the other fields
  are kept byte for byte, in place;
- base64, standard or URL-safe alphabet, padded or not: the alphabet and padding
  the client used are written again (`Base64Form`);
- JSON inside a JSON string (`ue_pr`): written back as a compact JSON string.

Everything is read the way a strict collector would (no parser differential,
SPEC §3.3): a form field given twice, or a field spelled like the payload field
(`Data`, `data[]`), a base64 text mixing both alphabets or with stray characters,
is `malformed_payload`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote_plus, unquote_to_bytes

from sidecar.errors import Reason, Rejection
from sidecar.jsoncodec import dump_json, parse_json
from sidecar.spelling import fold

_STANDARD = re.compile(rb"[A-Za-z0-9+/]*={0,2}", re.ASCII)
_URL = re.compile(rb"[A-Za-z0-9_-]*={0,2}", re.ASCII)
_FORM_KEY = re.compile(r"[^&=]*", re.ASCII)
_STARTS_JSON = (b"{", b"[")
_JSON_SPACE = b" \t\r\n"


class Base64Use(StrEnum):
    """Whether a payload is wrapped in base64."""

    NEVER = "never"
    ALWAYS = "always"
    OPTIONAL = "optional"  # base64 unless the text starts with `{` or `[`


@dataclass(frozen=True, slots=True)
class Base64Form:
    """How one base64 text was written: its alphabet and whether it was padded."""

    url: bool
    padded: bool

    def encode(self, data: bytes) -> bytes:
        text = base64.urlsafe_b64encode(data) if self.url else base64.b64encode(data)
        return text if self.padded else text.rstrip(b"=")


@dataclass(frozen=True, slots=True)
class Wrapping:
    """A declared base64 wrapping: when it applies, and the form to write when the
    received text does not show it (no alphabet-specific character, no padding needed)."""

    use: Base64Use = Base64Use.NEVER
    url: bool = False
    padded: bool = True

    def unwrap(self, text: bytes, what: str) -> tuple[bytes, Base64Form | None]:
        """The JSON text inside `text`, and its base64 form (None: it was not base64).
        Rejects: malformed_payload."""
        if self.use is Base64Use.NEVER:
            return text, None
        if self.use is Base64Use.OPTIONAL and text.lstrip(_JSON_SPACE).startswith(_STARTS_JSON):
            return text, None
        form = self._form_of(text, what)
        padding = b"=" * (-len(text.rstrip(b"=")) % 4)
        try:
            if form.url:
                data = base64.urlsafe_b64decode(text.rstrip(b"=") + padding)
            else:
                data = base64.b64decode(text.rstrip(b"=") + padding, validate=True)
        except (binascii.Error, ValueError):
            raise Rejection(Reason.MALFORMED_PAYLOAD, f"{what} is not valid base64") from None
        return data, form

    def _form_of(self, text: bytes, what: str) -> Base64Form:
        url_chars = b"-" in text or b"_" in text
        standard_chars = b"+" in text or b"/" in text
        if url_chars and standard_chars:
            raise Rejection(Reason.MALFORMED_PAYLOAD, f"{what} mixes two base64 alphabets")
        url = url_chars or (self.url and not standard_chars)
        if not (_URL if url else _STANDARD).fullmatch(text):
            raise Rejection(Reason.MALFORMED_PAYLOAD, f"{what} is not valid base64")
        if text.endswith(b"="):
            if len(text) % 4:
                raise Rejection(Reason.MALFORMED_PAYLOAD, f"{what} is not valid base64")
            padded = True
        elif len(text) % 4:
            padded = False
        else:  # no padding was needed: the text does not tell
            padded = self.padded
        return Base64Form(url, padded)


def wrap(data: bytes, form: Base64Form | None) -> bytes:
    """`data` written in the base64 form it was received in (as is without one)."""
    return data if form is None else form.encode(data)


@dataclass(frozen=True, slots=True)
class FormBody:
    """A form body split around its payload field: what precedes the value, the value
    (percent-decoded) and what follows, so only the value is ever rewritten."""

    before: bytes
    value: bytes
    after: bytes

    def with_value(self, value: bytes) -> bytes:
        """The form with the payload field's value replaced (`quote_plus`, as browsers
        and `urlencode` write forms)."""
        return self.before + quote_plus(value, safe="").encode() + self.after


def split_form(body: bytes, field: str) -> FormBody:
    """The form `body` around its `field`. Rejects: malformed_payload (not a form, the
    field missing or given twice, a field spelled like it, bad percent-encoding)."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise Rejection(Reason.MALFORMED_PAYLOAD, "the form body is not ASCII") from None
    found: tuple[int, int] | None = None
    position = 0
    for part in text.split("&"):
        key = part.partition("=")[0]
        name = _unquote(key).decode("utf-8", "replace")
        if name == field:
            if found is not None or "=" not in part:
                problem = "is given twice" if found is not None else "has no value"
                raise Rejection(Reason.MALFORMED_PAYLOAD, f"the form field {field!r} {problem}")
            found = (position + len(key) + 1, position + len(part))
        elif fold(name).removesuffix("[]") == fold(field):
            raise Rejection(
                Reason.MALFORMED_PAYLOAD, f"a form field is spelled like {field!r} without being it"
            )
        position += len(part) + 1
    if found is None:
        raise Rejection(Reason.MALFORMED_PAYLOAD, f"the form has no {field!r} field")
    start, end = found
    return FormBody(body[:start], _unquote(text[start:end]), body[end:])


def _unquote(text: str) -> bytes:
    """Form decoding: `+` is a space, `%XX` a byte; a `%` not followed by two hex
    digits is malformed (decoders differ on it)."""
    if "%" in text and re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise Rejection(Reason.MALFORMED_PAYLOAD, "the form body has a bad percent-escape")
    return unquote_to_bytes(text.replace("+", " "))


@dataclass(frozen=True, slots=True)
class Embedded:
    """A JSON document carried in a JSON string (e.g. Snowplow's `ue_pr`, `ue_px`)."""

    wrapping: Wrapping

    def read(self, text: str, where: str) -> Any:
        """The document in `text`. Rejects: malformed_payload."""
        try:
            raw = text.encode()
        except UnicodeEncodeError:
            raise Rejection(Reason.MALFORMED_PAYLOAD, f"{where} is not UTF-8 text") from None
        data, _ = self.wrapping.unwrap(raw, where)
        try:
            return parse_json(data)
        except Rejection:
            raise Rejection(Reason.MALFORMED_PAYLOAD, f"{where} does not hold JSON") from None

    def write(self, document: Any, like: str) -> str:
        """`document` as a string in the form of `like` (the string it was read from)."""
        _, form = self.wrapping.unwrap(like.encode(), "")
        return wrap(dump_json(document), form).decode()
