"""The upstream pool against real sockets: a scripted HTTP/1.1 server on loopback
answers with the framings a collector may use, and counts its connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from sidecar.answers import Flaw, InvalidAnswer
from sidecar.upstream import Pool, UpstreamError

MAX_ANSWER = 1 << 20
REQUEST = b"POST /track HTTP/1.1\r\nHost: collector\r\nContent-Length: 2\r\n\r\n"
BODY = b"{}"

Script = Callable[[int], list[bytes]]  # request number → the pieces of its answer
Serve = Callable[..., Awaitable["Scripted"]]


@dataclass
class Scripted:
    """A loopback server that answers request N with `script(N)`, piece by piece."""

    script: Script
    close_after: bool = False  # close the connection after each answer
    delay: float = 0.0  # seconds before a new connection is served
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await asyncio.sleep(self.delay)
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                for piece in self.script(len(self.requests)):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(script: Script, close_after: bool = False, delay: float = 0.0) -> Scripted:
        scripted = Scripted(script, close_after, delay)
        server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
        servers.append(server)
        scripted.port = server.sockets[0].getsockname()[1]
        return scripted

    yield start
    for server in servers:
        server.close()


def answer(body: bytes, *headers: bytes, status: bytes = b"200 OK") -> list[bytes]:
    head = b"HTTP/1.1 " + status + b"\r\n" + b"".join(h + b"\r\n" for h in headers)
    return [head + b"Content-Length: %d\r\n\r\n" % len(body) + body]


async def send(pool: Pool, timeout: float = 2.0, head_request: bool = False) -> tuple[int, bytes]:
    result = await pool.send(
        REQUEST, BODY, timeout, head_request=head_request, max_answer=MAX_ANSWER
    )
    return result.status, result.body


async def test_keep_alive_reuses_one_connection(serve: Serve) -> None:
    server = await serve(lambda n: answer(b'{"n":%d}' % n))
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    assert [await send(pool) for _ in range(5)] == [(200, b'{"n":%d}' % n) for n in range(1, 6)]
    assert server.connections == 1
    assert server.requests[0] == REQUEST + BODY


async def test_chunked_answer_split_into_single_bytes(serve: Serve) -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
        b'4;ext=1\r\n{"su\r\n9\r\nccess":tr\r\n3\r\nue}\r\n0\r\nTrailer: x\r\n\r\n'
    )
    server = await serve(lambda n: [wire[i : i + 1] for i in range(len(wire))])
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    result = await pool.send(REQUEST, BODY, 2.0, head_request=False, max_answer=MAX_ANSWER)
    assert result.body == b'{"success":true}'
    assert ("X-A", "1") in result.headers
    assert await send(pool) == (200, b'{"success":true}')
    assert server.connections == 1  # a complete chunked answer leaves the connection reusable


async def test_close_delimited_answer_ends_at_close(serve: Serve) -> None:
    server = await serve(
        lambda n: [b"HTTP/1.1 200 OK\r\n\r\n", b"all ", b"of it"], close_after=True
    )
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    assert await send(pool) == (200, b"all of it")
    assert await send(pool) == (200, b"all of it")
    assert server.connections == 2  # never reused


async def test_interim_answers_are_skipped(serve: Serve) -> None:
    server = await serve(lambda n: [b"HTTP/1.1 100 Continue\r\n\r\n", *answer(b"ok")])
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    assert await send(pool) == (200, b"ok")


async def test_connection_close_is_honoured(serve: Serve) -> None:
    server = await serve(lambda n: answer(b"ok", b"Connection: close"), close_after=True)
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    assert [await send(pool) for _ in range(3)] == [(200, b"ok")] * 3
    assert server.connections == 3


async def test_http_1_0_without_keep_alive_is_not_reused(serve: Serve) -> None:
    server = await serve(
        lambda n: [b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"], close_after=True
    )
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    assert [await send(pool) for _ in range(2)] == [(200, b"ok")] * 2
    assert server.connections == 2


@pytest.mark.parametrize(
    ("pieces", "head_request"),
    [
        ([b"HTTP/1.1 204 No Content\r\n\r\n"], False),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"], True),  # HEAD: no body follows
    ],
)
async def test_answers_without_a_body(
    serve: Serve, pieces: list[bytes], head_request: bool
) -> None:
    server = await serve(lambda n: pieces)
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    for _ in range(2):
        status, body = await send(pool, head_request=head_request)
        assert (status, body) == (int(pieces[0][9:12]), b"")
    assert server.connections == 1


async def test_a_silent_collector_times_out_and_the_connection_is_dropped(serve: Serve) -> None:
    server = await serve(lambda n: [] if n == 1 else answer(b"late but fine"))
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError):
        await send(pool, timeout=0.3)
    assert asyncio.get_running_loop().time() - started < 2.0
    assert await send(pool) == (200, b"late but fine")
    assert server.connections == 2  # the timed-out connection was never reused


@pytest.mark.parametrize(
    ("pieces", "flaw"),
    [
        ([b"SPDY/3 200 OK\r\n\r\n"], Flaw.STATUS_LINE),
        ([b"HTTP/1.1 999 Nine\r\nContent-Length: 0\r\n\r\n"], Flaw.STATUS_LINE),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok"], Flaw.CONTENT_LENGTH),
        ([b"HTTP/1.1 200 OK\r\n folded: header\r\nContent-Length: 0\r\n\r\n"], Flaw.HEADER_LINE),
        ([b"HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\nContent-Length: 0\r\n\r\n"], Flaw.BARE_LINE_END),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], Flaw.CHUNK_SIZE),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n"], Flaw.TOO_LARGE),
    ],
    ids=["not-http", "status-999", "two-lengths", "obs-fold", "bare-lf", "bad-chunk", "too-large"],
)  # fmt: skip
async def test_invalid_answers_name_their_flaw_while_the_connection_is_open(
    serve: Serve, pieces: list[bytes], flaw: Flaw
) -> None:
    """The collector keeps the connection open: only the parser can end the wait, so
    each case fails with its own flaw (not with a timeout or "closed early")."""
    server = await serve(lambda n: pieces)
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    with pytest.raises(InvalidAnswer) as raised:
        await send(pool, timeout=5.0)
    assert raised.value.flaw is flaw
    assert pool._open == 0  # the connection was dropped, never reused


@pytest.mark.parametrize(
    "pieces",
    [
        [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"],  # closed mid-body
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"],  # mid-chunk
        [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"],  # closed inside the head
        [],  # closed without a byte
    ],
    ids=["cut-body", "cut-chunk", "cut-head", "nothing"],
)
async def test_answers_cut_short_are_unavailable_not_invalid(
    serve: Serve, pieces: list[bytes]
) -> None:
    server = await serve(lambda n: pieces, close_after=True)
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    with pytest.raises(UpstreamError, match="closed early"):
        await send(pool)


async def test_reading_stops_at_the_answer_cap(serve: Serve) -> None:
    """A close-delimited answer far over the cap: the pool stops reading and drops the
    connection once the cap is passed; the collector sees its writes fail."""
    piece = b"x" * 65536
    sent: list[int] = []

    def script(n: int) -> list[bytes]:
        sent.append(0)
        return [b"HTTP/1.1 200 OK\r\n\r\n", *([piece] * 1600)]  # 100 MiB

    server = await serve(script, close_after=True)
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    with pytest.raises(InvalidAnswer) as raised:
        await send(pool)
    assert raised.value.flaw is Flaw.TOO_LARGE
    for _ in range(500):  # the abort reaches the collector, whose writes then fail
        if server.open_now == 0:
            break
        await asyncio.sleep(0.01)
    assert server.open_now == 0


async def test_a_refused_connection_is_an_upstream_error(unused_tcp_port: int) -> None:
    pool = Pool(f"http://127.0.0.1:{unused_tcp_port}", 8)
    with pytest.raises(UpstreamError):
        await send(pool)
    assert pool._open == 0  # the failed attempt gave its place back


async def test_an_idle_connection_the_collector_closed_is_not_used(serve: Serve) -> None:
    server = await serve(lambda n: answer(b"ok"), close_after=True)  # closes after answering
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    assert await send(pool) == (200, b"ok")
    await asyncio.sleep(0.05)  # the close reaches the idle connection
    assert await send(pool) == (200, b"ok")
    assert server.connections == 2


async def test_max_connections_bounds_what_is_open_and_queues_the_rest(serve: Serve) -> None:
    server = await serve(lambda n: answer(b"ok"), delay=0.05)  # slow to start answering
    pool = Pool(f"http://127.0.0.1:{server.port}", 2)
    results = await asyncio.gather(*(send(pool) for _ in range(12)))
    assert results == [(200, b"ok")] * 12
    assert server.connections <= 2 and server.most_open <= 2


async def test_close_drops_idle_connections(serve: Serve) -> None:
    server = await serve(lambda n: answer(b"ok"))
    pool = Pool(f"http://127.0.0.1:{server.port}", 8)
    await send(pool)
    pool.close()
    for _ in range(100):
        if server.open_now == 0:
            break
        await asyncio.sleep(0.01)
    assert server.open_now == 0
