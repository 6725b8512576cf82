"""Carriers of declared dialects, sans-IO: base64 in every alphabet and padding, form
bodies, JSON in JSON strings; each read strictly and written back in its own form."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.dialects.carriers import (
    Base64Form,
    Base64Use,
    Embedded,
    Wrapping,
    split_form,
    wrap,
)
from sidecar.errors import Reason, Rejection

ALWAYS = Wrapping(Base64Use.ALWAYS)
DATA = b'{"event":"a+b/c?","n":1}~~~~'  # encodes with + and / (standard) or - and _ (url)


def encoded(url: bool, padded: bool, data: bytes = DATA) -> bytes:
    text = base64.urlsafe_b64encode(data) if url else base64.b64encode(data)
    return text if padded else text.rstrip(b"=")


@pytest.mark.parametrize("url", [False, True], ids=["standard", "url"])
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
def test_base64_is_read_in_any_form_and_written_back_in_the_same(url: bool, padded: bool) -> None:
    text = encoded(url, padded)
    data, form = ALWAYS.unwrap(text, "the body")
    assert data == DATA
    assert form == Base64Form(url, padded)
    assert wrap(data, form) == text
    assert wrap(b'{"other":"longer value"}', form) == encoded(
        url, padded, b'{"other":"longer value"}'
    )


@pytest.mark.parametrize(
    ("wrapping", "text", "form"),
    [
        (Wrapping(Base64Use.ALWAYS, url=True, padded=False), b"e30", Base64Form(True, False)),
        (Wrapping(Base64Use.ALWAYS, url=False, padded=True), b"e30=", Base64Form(False, True)),
        # Nothing in the text tells the alphabet or whether it was padded: the declared ones.
        (
            Wrapping(Base64Use.ALWAYS, url=True, padded=False),
            b"eyJhIjoxfQ",
            Base64Form(True, False),
        ),
        (Wrapping(Base64Use.ALWAYS, url=True, padded=True), b"e30gICAg", Base64Form(True, True)),
        (
            Wrapping(Base64Use.ALWAYS, url=False, padded=False),
            b"e30gICAg",
            Base64Form(False, False),
        ),
    ],
)
def test_a_text_that_does_not_tell_its_form_takes_the_declared_one(
    wrapping: Wrapping, text: bytes, form: Base64Form
) -> None:
    assert wrapping.unwrap(text, "x")[1] == form


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"ab+c-d==", "mixes two base64 alphabets"),
        (b"ab c", "is not valid base64"),
        (b"a", "is not valid base64"),
        (b"abc==", "is not valid base64"),  # padded to a wrong length
        (b"ab=c", "is not valid base64"),
        (b"ab\x00c", "is not valid base64"),
    ],
)
def test_bad_base64_is_malformed(text: bytes, problem: str) -> None:
    with pytest.raises(Rejection) as caught:
        ALWAYS.unwrap(text, "the body")
    assert caught.value.reason is Reason.MALFORMED_PAYLOAD
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("text", "is_base64"),
    [(b'{"a":1}', False), (b"  [1]", False), (b"eyJhIjoxfQ==", True)],
)
def test_optional_base64_is_told_by_the_first_character(text: bytes, is_base64: bool) -> None:
    data, form = Wrapping(Base64Use.OPTIONAL).unwrap(text, "x")
    assert (form is not None) == is_base64
    assert data.strip() in (b'{"a":1}', b"[1]")


def test_never_is_the_text_itself() -> None:
    assert Wrapping().unwrap(b"eyJhIjoxfQ==", "x") == (b"eyJhIjoxfQ==", None)


@given(st.binary(max_size=300), st.booleans(), st.booleans())
def test_any_bytes_round_trip_in_their_form(data: bytes, url: bool, padded: bool) -> None:
    text = encoded(url, padded, data)
    wrapping = Wrapping(Base64Use.ALWAYS, url=url, padded=padded)
    found, form = wrapping.unwrap(text, "x")
    assert found == data
    assert wrap(found, form) == text


@given(st.binary(max_size=80))
def test_any_text_is_read_or_refused_never_crashes(text: bytes) -> None:
    try:
        ALWAYS.unwrap(text, "x")
    except Rejection as rejection:
        assert rejection.reason is Reason.MALFORMED_PAYLOAD


# -- forms ------------------------------------------------------------------------------------


def test_a_form_is_split_around_its_field_and_only_the_value_is_rewritten() -> None:
    body = b"verbose=1&data=%7B%22a%22%3A+1%7D&ip=0"
    form = split_form(body, "data")
    assert form.value == b'{"a": 1}'
    assert form.with_value(form.value) == b"verbose=1&data=%7B%22a%22%3A+1%7D&ip=0"
    assert form.with_value(b"eyJhIjoxfQ==") == b"verbose=1&data=eyJhIjoxfQ%3D%3D&ip=0"


def test_the_field_may_be_first_last_or_alone() -> None:
    assert split_form(b"data=x", "data").value == b"x"
    assert split_form(b"data=x&y=1", "data").with_value(b"z") == b"data=z&y=1"
    assert split_form(b"y=1&data=", "data").value == b""


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"data=1&data=2", "is given twice"),
        (b"Data=1", "spelled like"),
        (b"data%5B%5D=1", "spelled like"),
        (b"DATA=1&data=2", "spelled like"),
        (b"verbose=1", "has no 'data' field"),
        (b"data", "has no value"),
        (b"data=%7", "bad percent-escape"),
        (b"data=%zz", "bad percent-escape"),
        ("data=é".encode(), "not ASCII"),
    ],
)
def test_forms_a_collector_could_read_otherwise_are_malformed(body: bytes, problem: str) -> None:
    with pytest.raises(Rejection) as caught:
        split_form(body, "data")
    assert caught.value.reason is Reason.MALFORMED_PAYLOAD
    assert problem in caught.value.message


# -- JSON in a JSON string ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("embedded", "text"),
    [
        (Embedded(Wrapping()), '{"data":{"a":1,"b":"é"}}'),
        (
            Embedded(Wrapping(Base64Use.ALWAYS, url=True)),
            base64.urlsafe_b64encode('{"data":{"a":1,"b":"é"}}'.encode()).decode(),
        ),
        (
            Embedded(Wrapping(Base64Use.ALWAYS, url=True)),
            base64.urlsafe_b64encode('{"data":{"a":1,"b":"é"}}'.encode()).decode().rstrip("="),
        ),
    ],
    ids=["json", "base64url-padded", "base64url-unpadded"],
)
def test_an_embedded_document_is_written_back_in_its_form(embedded: Embedded, text: str) -> None:
    document = embedded.read(text, "ue")
    assert document == {"data": {"a": 1, "b": "é"}}
    assert embedded.write(document, like=text) == text


def test_an_embedded_string_that_is_not_json_is_malformed() -> None:
    with pytest.raises(Rejection, match="ue_pr does not hold JSON"):
        Embedded(Wrapping()).read("{not json", "ue_pr")
