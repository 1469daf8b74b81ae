"""The UI forwarder (multi-host UIs on the manager's loopback) carries bytes both ways, per route."""

import asyncio

from cluster import ui_forwarder


async def forward_once(payload: bytes) -> bytes:
    async def echo(reader, writer):
        writer.write(b"echo:" + await reader.read(100))
        await writer.drain()
        writer.close()

    upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
    upstream_port = upstream.sockets[0].getsockname()[1]
    listener = await asyncio.start_server(ui_forwarder.handler("127.0.0.1", upstream_port), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
    writer.write(payload)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(100), 5)
    writer.close()
    listener.close()
    upstream.close()
    return answer


async def refused() -> bytes:
    listener = await asyncio.start_server(ui_forwarder.handler("127.0.0.1", 1), "127.0.0.1", 0)  # nothing on port 1
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
    answer = await asyncio.wait_for(reader.read(100), 15)
    writer.close()
    listener.close()
    return answer


def test_a_connection_reaches_its_service_and_the_answer_comes_back():
    assert asyncio.run(forward_once(b"GET /")) == b"echo:GET /"


def test_a_service_that_does_not_answer_closes_the_connection_instead_of_hanging():
    assert asyncio.run(refused()) == b""
