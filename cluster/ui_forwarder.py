"""Forward TCP ports to services on the overlay: the web UIs of a multi-host cluster on the manager's loopback.

Swarm publishes a service's ports on every address of every host (moby/moby#26696), so the
services publish nothing; this runs in a plain container on the manager, attached to the
overlay, whose ports Docker publishes on cluster.bind_address like a single engine's. Its
source is passed to `python3 -c` in the Spark image: standard library only.

Arguments: LISTEN_PORT=HOST:PORT ...
"""

import asyncio
import sys

CHUNK = 1 << 16


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass  # either side went away: the other is closed below
    finally:
        writer.close()


def handler(host: str, port: int):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:  # resolved per connection: a service's task may move to a new address
            upstream_reader, upstream_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    return handle


async def main(routes: list[str]) -> None:
    servers = []
    for route in routes:
        listen, _, target = route.partition("=")
        host, _, port = target.rpartition(":")
        servers.append(await asyncio.start_server(handler(host, int(port)), "0.0.0.0", int(listen)))
    print(f"ui-forwarder: {' '.join(routes)}", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
