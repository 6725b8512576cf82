"""The collector-answer parser, sans-IO (SPEC §5.4): feed bytes, assert the answer
or the specific flaw. The pool and the sidecar use it over real sockets
(tests/test_upstream.py, tests/test_forward.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.answers import Answer, AnswerParser, Flaw, InvalidAnswer

CAP = 1024
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def parse(*pieces: bytes, head_request: bool = False, cap: int = CAP) -> tuple[Answer, bool]:
    """Feed the pieces; the answer and whether the connection may be reused."""
    parser = AnswerParser(head_request=head_request, max_body=cap)
    for piece in pieces:
        done = parser.feed(piece)
        if done is not None:
            return done, parser.keep_alive and not parser.trailing
    done = parser.close()
    assert done is not None, "the answer never completed"
    return done, False


def flaw_of(*pieces: bytes, cap: int = CAP) -> Flaw:
    parser = AnswerParser(head_request=False, max_body=cap)
    with pytest.raises(InvalidAnswer) as raised:
        for piece in pieces:
            assert parser.feed(piece) is None
        parser.close()
    return raised.value.flaw


@pytest.mark.parametrize(
    ("wire", "status", "body", "reusable"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", True),
        (b"HTTP/1.1 201 \r\nContent-Length: 0\r\n\r\n", 201, b"", True),  # empty reason
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length:2  \r\n\r\nok", 200, b"ok", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", True),
        (b"HTTP/1.1 599 Custom\tReason \xc3\xa9\r\nContent-Length: 0\r\n\r\n", 599, b"", True),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", True),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", 304, b"", True),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil close", 200, b"until close", False),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
            b"4;name=value\r\nabcd\r\nA \t; x\r\n0123456789\r\n0\r\n\r\n",
            200, b"abcd0123456789", True,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
            200, b"ok", True,
        ),
    ],
)  # fmt: skip
def test_valid_answers_whole_and_byte_by_byte(
    wire: bytes, status: int, body: bytes, reusable: bool
) -> None:
    for pieces in ([wire], [wire[i : i + 1] for i in range(len(wire))]):
        answer, reuse = parse(*pieces)
        assert (answer.status, answer.body, reuse) == (status, body, reusable)


def test_bytes_after_the_answer_make_the_connection_unusable() -> None:
    answer, reusable = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok+")
    assert (answer.body, reusable) == (b"ok", False)
    answer, reusable = parse(CHUNKED + b"2\r\nok\r\n0\r\n\r\nHTTP/1.1")
    assert (answer.body, reusable) == (b"ok", False)


def test_headers_keep_their_order_and_spelling() -> None:
    answer, _ = parse(
        b"HTTP/1.1 200 OK\r\nX-B: 1\r\nx-a:  two  words \r\nContent-Length: 0\r\n\r\n"
    )
    assert answer.headers == [("X-B", "1"), ("x-a", "two  words"), ("Content-Length", "0")]


def test_a_head_request_has_no_body_whatever_the_framing() -> None:
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n"
    answer, reusable = parse(wire, head_request=True)
    assert (answer.body, reusable) == (b"", True)


@pytest.mark.parametrize(
    ("wire", "flaw"),
    [
        # status lines (finding 10: 000 and 999 were relayed)
        (b"HTTP/1.1 000 Zero\r\n\r\n", Flaw.STATUS_LINE),
        (b"HTTP/1.1 999 Nine\r\n\r\n", Flaw.STATUS_LINE),
        (b"HTTP/1.1 099 Low\r\n\r\n", Flaw.STATUS_LINE),
        (b"HTTP/1.1 600 High\r\n\r\n", Flaw.STATUS_LINE),
        (b"HTTP/1.1 20 OK\r\n\r\n", Flaw.STATUS_LINE),
        (b"HTTP/1.1 2000 OK\r\n\r\n", Flaw.STATUS_LINE),
        (b"HTTP/1.1 \xd9\xa2\xd9\xa0\xd9\xa0 OK\r\n\r\n", Flaw.STATUS_LINE),  # Arabic-Indic 200
        (b"HTTP/1.1 200\r\n\r\n", Flaw.STATUS_LINE),  # no SP before the reason
        (b"HTTP/1.1  200 OK\r\n\r\n", Flaw.STATUS_LINE),
        (b"HTTP/2 200 OK\r\n\r\n", Flaw.STATUS_LINE),
        (b"http/1.1 200 OK\r\n\r\n", Flaw.STATUS_LINE),
        (b"SPDY/3 200 OK\r\n\r\n", Flaw.STATUS_LINE),
        (b"HTTP/1.1 200 O\x00K\r\n\r\n", Flaw.STATUS_LINE),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", Flaw.SWITCHED_PROTOCOLS),
        # line ends (finding 10: a bare LF gave the client an empty reply)
        (b"HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\nContent-Length: 0\r\n\r\n", Flaw.BARE_LINE_END),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", Flaw.BARE_LINE_END),
        (b"HTTP/1.1 200 OK\r\nX-A: 1\rX-B: 2\r\nContent-Length: 0\r\n\r\n", Flaw.BARE_LINE_END),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n", Flaw.BARE_LINE_END),
        # header lines
        (b"HTTP/1.1 200 OK\r\n folded: header\r\nContent-Length: 0\r\n\r\n", Flaw.HEADER_LINE),
        (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\tfolded\r\nContent-Length: 0\r\n\r\n", Flaw.HEADER_LINE),
        (b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", Flaw.HEADER_LINE),
        (b"HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n", Flaw.HEADER_LINE),
        (b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n", Flaw.HEADER_LINE),
        (b"HTTP/1.1 200 OK\r\n: 1\r\n\r\n", Flaw.HEADER_LINE),
        (b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", Flaw.HEADER_LINE),
        (b"HTTP/1.1 200 OK\r\nX-A: \xff\xfe\r\n\r\n", Flaw.HEADER_LINE),  # not UTF-8
        (b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 70_000 + b"\r\n\r\n", Flaw.HEAD_TOO_LARGE),
        # Content-Length: ASCII digits only, one value
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok", Flaw.CONTENT_LENGTH),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", Flaw.CONTENT_LENGTH),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", Flaw.CONTENT_LENGTH),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", Flaw.CONTENT_LENGTH),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok", Flaw.CONTENT_LENGTH),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n", Flaw.CONTENT_LENGTH),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xd9\xa2\r\n\r\nok", Flaw.CONTENT_LENGTH),
        (b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", Flaw.CONTENT_LENGTH),
        # transfer codings
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", Flaw.TRANSFER_CODING),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Flaw.TRANSFER_CODING),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Flaw.TRANSFER_CODING),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
            Flaw.TRANSFER_CODING,
        ),
    ],
)  # fmt: skip
def test_invalid_heads_name_their_flaw(wire: bytes, flaw: Flaw) -> None:
    assert flaw_of(wire) is flaw
    assert flaw_of(*[wire[i : i + 1] for i in range(len(wire))]) is flaw


@pytest.mark.parametrize(
    ("chunks", "flaw"),
    [
        (b"zz\r\n", Flaw.CHUNK_SIZE),
        (b"0x2\r\nok\r\n0\r\n\r\n", Flaw.CHUNK_SIZE),
        (b"+2\r\nok\r\n0\r\n\r\n", Flaw.CHUNK_SIZE),
        (b"-2\r\nok\r\n0\r\n\r\n", Flaw.CHUNK_SIZE),
        (b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n", Flaw.CHUNK_SIZE),
        (b" 2\r\nok\r\n0\r\n\r\n", Flaw.CHUNK_SIZE),
        (b"\r\nok\r\n0\r\n\r\n", Flaw.CHUNK_SIZE),
        ("\u0662\r\nok\r\n0\r\n\r\n".encode(), Flaw.CHUNK_SIZE),  # Arabic-Indic 2: int() takes it
        ("\uff12\r\nok\r\n0\r\n\r\n".encode(), Flaw.CHUNK_SIZE),  # fullwidth 2
        (b"2;\x00\r\nok\r\n0\r\n\r\n", Flaw.CHUNK_SIZE),
        (b"2" + b" " * 5000 + b"\r\nok\r\n", Flaw.CHUNK_SIZE),
        (b"2\nok\r\n0\r\n\r\n", Flaw.BARE_LINE_END),
        (b"2\r\nok\n0\r\n\r\n", Flaw.CHUNK_DATA),
        (b"2\r\nokk\r\n0\r\n\r\n", Flaw.CHUNK_DATA),
        (b"2\r\nok\r\n0\r\nX-T: 1\n\r\n", Flaw.BARE_LINE_END),
        (b"2\r\nok\r\n0\r\nno colon\r\n\r\n", Flaw.HEADER_LINE),
        (b"2\r\nok\r\n0\n\n", Flaw.BARE_LINE_END),
    ],
)
def test_invalid_chunks_name_their_flaw(chunks: bytes, flaw: Flaw) -> None:
    assert flaw_of(CHUNKED + chunks) is flaw
    assert flaw_of(CHUNKED, *[chunks[i : i + 1] for i in range(len(chunks))]) is flaw


@pytest.mark.parametrize(
    "pieces",
    [
        [b"HTTP/1.1 200 OK\r\nContent-Length: 1025\r\n\r\n"],  # declared: refused at once
        [b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"],
        [CHUNKED + b"401\r\n"],  # one chunk over the cap, refused before its data
        [CHUNKED + b"200\r\n" + b"x" * 512 + b"\r\n", b"201\r\n"],  # the sum of chunks
        [CHUNKED + b"1" * 40 + b"\r\n"],
        [b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 1000, b"x" * 25],  # close-delimited
    ],
    ids=["declared", "declared-huge", "chunk", "chunks", "chunk-huge", "until-close"],
)
def test_bodies_over_the_cap_are_refused_as_they_arrive(pieces: list[bytes]) -> None:
    assert flaw_of(*pieces) is Flaw.TOO_LARGE


def test_a_body_of_exactly_the_cap_is_fine() -> None:
    body = b"x" * CAP
    for wire in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + body,
        CHUNKED + b"400\r\n" + body + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n" + body,
    ):
        assert parse(wire)[0].body == body


# -- properties -----------------------------------------------------------------------

TOKEN = st.text("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12)  # fmt: skip
VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
FRAMED_BY = {"content-length", "transfer-encoding", "connection"}


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[str, str]], bytes, str]:
    """A valid answer on the wire and what it says."""
    status = draw(st.integers(200, 599).filter(lambda s: s not in (204, 304)))
    headers = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=6))
    headers = [(n, v) for n, v in headers if n.lower() not in FRAMED_BY]
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    head = b"HTTP/1.1 %d %s\r\n" % (status, draw(VALUE).encode())
    head += b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in headers)
    if framing == "length":
        wire = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
        wire = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    else:
        wire = head + b"\r\n" + body
    return wire, status, headers, body, framing


@settings(max_examples=300, deadline=None)
@given(answers(), st.lists(st.integers(1, 64), max_size=8))
def test_round_trip_in_any_split(
    sent: tuple[bytes, int, list[tuple[str, str]], bytes, str], sizes: list[int]
) -> None:
    wire, status, headers, body, framing = sent
    pieces, rest = [], wire
    for size in sizes:
        pieces.append(rest[:size])
        rest = rest[size:]
    answer, reusable = parse(*pieces, rest)
    assert (answer.status, answer.body) == (status, body)
    assert [h for h in answer.headers if h[0].lower() not in FRAMED_BY] == headers
    assert reusable == (framing != "close")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([b"", b"HTTP/1.1 200 OK\r\n", CHUNKED]))
def test_arbitrary_bytes_give_an_answer_or_a_named_flaw(noise: bytes, prefix: bytes) -> None:
    parser = AnswerParser(head_request=False, max_body=CAP)
    try:
        parser.feed(prefix + noise)
        parser.close()
    except InvalidAnswer as invalid:
        assert isinstance(invalid.flaw, Flaw)
