"""The teachers' HTTP client against real loopback servers that answer with scripted bytes:
keep-alive reuse, content-length, chunked and close-delimited bodies, streaming, a streamed
upload, HEAD, TLS, and every failure the teacher path turns into an answer (a pooled connection
the server closed, an answer that is not HTTP, timeouts, a refused connection)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from proxy.upstream_client import HttpClient
from proxy.upstream_http import BadHttp, BodyBroken, ConnectFailed, Disconnected, ReadTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMES = {"connect_timeout": 5.0, "read_timeout": 5.0, "total_timeout": 10.0}


class Server:
    """asyncio.start_server on a free loopback port; counts its connections, keeps requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []  # (head, decoded body)
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=self.tls())
        return self

    def tls(self) -> ssl.SSLContext | None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def url(self, path: str = "/v1/x", scheme: str = "http") -> str:
        assert self.server is not None
        return f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}{path}"

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        body = b""
        if b"transfer-encoding: chunked" in lower:
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                body += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")
        elif b"content-length:" in lower:
            length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
        self.requests.append((head, body))
        return head, body


def answer(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


async def whole(response: object) -> bytes:
    from proxy.upstream_http import Response

    assert isinstance(response, Response)
    parts = []
    while data := await response.read_any():
        parts.append(data)
    response.release()
    return b"".join(parts)


async def test_keep_alive_reuses_one_connection_and_sends_head_and_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, body = await server.read_request(reader)
            writer.write(answer(b"echo:" + body, "content-type: application/json\r\n"))

    client = HttpClient()
    async with Server(handler) as server:
        for i in range(5):
            sent = f'{{"i": {i}}}'.encode()
            headers = {"content-type": "application/json", "authorization": "Bearer k"}
            response = await client.request("POST", server.url("/v1/a b?q=1"), sent, headers,
                                            **TIMES)  # fmt: skip
            assert response.status == 200
            assert response.headers["content-type"] == "application/json"
            assert await whole(response) == b"echo:" + sent
    await client.close()
    assert server.connections == 1
    head = server.requests[0][0].decode()
    assert head.startswith("POST /v1/a%20b?q=1 HTTP/1.1\r\n")
    assert "\r\nhost: 127.0.0.1:" in head and "\r\nauthorization: Bearer k\r\n" in head
    assert "\r\ncontent-length: 8\r\n" in head


async def test_a_chunked_answer_streams_each_chunk_as_it_arrives() -> None:
    second = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await second.wait()  # the client must have the first chunk before this one exists
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await server.read_request(reader)  # the connection is reused after a chunked answer
        writer.write(answer(b"again"))

    client = HttpClient()
    async with Server(handler) as server:
        response = await client.request("POST", server.url(), b"{}", {}, **TIMES)
        assert await response.read_any() == b"first"
        assert not response.at_eof()
        second.set()
        assert await response.read_any() == b"second"
        assert await response.read_any() == b""
        assert response.at_eof()
        response.release()
        assert await whole(await client.request("GET", server.url(), None, {}, **TIMES)) == (
            b"again"
        )
    await client.close()
    assert server.connections == 1
    assert b"content-length" not in server.requests[1][0]  # a GET without a body has no length


async def test_a_body_ended_by_the_close_is_whole_and_its_connection_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
        await writer.drain()

    client = HttpClient()
    async with Server(handler) as server:
        for _ in range(2):
            response = await client.request("POST", server.url(), b"", {}, **TIMES)
            assert await whole(response) == b"until the end"
    await client.close()
    assert server.connections == 2


async def test_a_pooled_connection_the_server_closes_on_reuse_fails_before_any_byte() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(b"once"))  # keep-alive announced...
        await server.read_request(reader)  # ...then closed as the next request arrives

    client = HttpClient()
    async with Server(handler) as server:
        first = await client.request("POST", server.url(), b"{}", {}, **TIMES)
        assert await whole(first) == b"once"
        with pytest.raises(Disconnected) as caught:
            await client.request("POST", server.url(), b"{}", {}, **TIMES)
        assert caught.value.answered is False
        fresh = await client.request("POST", server.url(), b"{}", {}, fresh=True, **TIMES)
        assert await whole(fresh) == b"once"
    await client.close()
    assert server.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        b"this is not http\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"x-flood-%d: %d\r\n" % (i, i) for i in range(2000))
        + b"content-length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nbad\r\n",
    ],
    ids=["garbage", "2000 headers", "bad chunk"],
)
async def test_an_answer_that_is_not_http_is_bad_http(reply: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(reply)
        await writer.drain()
        await reader.read()  # hold the connection open: the client decides

    client = HttpClient()
    async with Server(handler) as server:
        with pytest.raises(BadHttp):
            await whole(await client.request("POST", server.url(), b"{}", {}, **TIMES))
    await client.close()


async def test_a_body_cut_inside_is_broken_and_a_silent_server_times_out() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")

    client = HttpClient()
    async with Server(cut) as server:
        response = await client.request("POST", server.url(), b"{}", {}, **TIMES)
        with pytest.raises(BodyBroken):
            await whole(response)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await reader.read()

    async with Server(silent) as server:
        times = TIMES | {"read_timeout": 0.2}
        with pytest.raises(ReadTimeout):
            await client.request("POST", server.url(), b"{}", {}, **times)
    await client.close()


async def test_a_trickling_answer_passes_its_total_time() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        for _ in range(1000):  # a byte every 50 ms: never silent for the read timeout
            writer.write(b"x")
            await asyncio.sleep(0.05)

    client = HttpClient()
    async with Server(trickle) as server:
        times = {"connect_timeout": 5.0, "read_timeout": 1.0, "total_timeout": 0.5}
        response = await client.request("POST", server.url(), b"{}", {}, **times)
        with pytest.raises(ReadTimeout):
            await whole(response)
    await client.close()


async def test_a_refused_connection_fails_to_connect() -> None:
    async with Server(lambda r, w: asyncio.sleep(0)) as server:
        url = server.url()
    client = HttpClient()
    with pytest.raises(ConnectFailed):
        await client.request("POST", url, b"{}", {}, **TIMES)
    await client.close()


async def test_a_streamed_upload_goes_chunked_and_head_has_no_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await server.read_request(reader)
        writer.write(answer(b"got %d" % len(body)))
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 12345\r\n\r\n")  # HEAD: no body

    async def upload() -> AsyncIterator[bytes]:
        for i in range(50):
            yield bytes([65 + i % 26]) * 10_000

    client = HttpClient()
    async with Server(handler) as server:
        response = await client.request("PUT", server.url(), upload(), {}, **TIMES)
        assert await whole(response) == b"got 500000"
        head = await client.request("HEAD", server.url(), None, {}, **TIMES)
        assert head.headers["content-length"] == "12345" and await whole(head) == b""
        again = await client.request("POST", server.url(), b"x", {}, **TIMES)  # a new connection
        assert await whole(again) == b"got 1"
    await client.close()
    assert server.connections == 2
    assert b"transfer-encoding: chunked" in server.requests[0][0]
    assert server.requests[0][1] == b"".join([bytes([65 + i % 26]) * 10_000 for i in range(50)])


async def test_a_large_answer_read_slowly_arrives_whole() -> None:
    big = bytes(range(256)) * 16_384  # 4 MiB: reading pauses and resumes on the way

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(big))
        await writer.drain()

    client = HttpClient()
    async with Server(handler) as server:
        response = await client.request("GET", server.url(), None, {}, **TIMES)
        parts = []
        while data := await response.read_any():
            parts.append(data)
            await asyncio.sleep(0)
        assert b"".join(parts) == big
    await client.close()


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


async def test_https_is_verified_and_kept_alive(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    class TlsServer(Server):
        def tls(self) -> ssl.SSLContext:
            return server_tls

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(answer(b"secret"))

    async with TlsServer(handler) as server:
        url = server.url(scheme="https").replace("127.0.0.1", "localhost")
        untrusting = HttpClient()  # the system's CAs do not know this certificate
        with pytest.raises(ConnectFailed):
            await untrusting.request("GET", url, None, {}, **TIMES)
        await untrusting.close()
        client = HttpClient(tls=ssl.create_default_context(cafile=str(cert)))
        for _ in range(3):
            assert await whole(await client.request("GET", url, None, {}, **TIMES)) == b"secret"
        await client.close()
    assert server.connections == 1  # (a refused handshake never reaches it): one, kept alive


async def test_past_max_connections_a_request_waits_for_one_or_closes_an_idle_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, body = await server.read_request(reader)
            writer.write(answer(body))

    client = HttpClient(max_connections=1)
    async with Server(handler) as server, Server(handler) as other:
        first = await client.request("POST", server.url(), b"one", {}, **TIMES)
        waiting = asyncio.ensure_future(client.request("POST", server.url(), b"two", {}, **TIMES))
        assert await first.read_any() == b"one"
        assert not waiting.done()  # the only connection is still first's
        first.release()  # parked: the waiting request takes it
        assert await whole(await waiting) == b"two"
        # Another server: the idle connection to the first is closed to make room.
        assert await whole(await client.request("POST", other.url(), b"3", {}, **TIMES)) == b"3"
    await client.close()
    assert (server.connections, other.connections) == (1, 1)
