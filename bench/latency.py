#!/usr/bin/env python3
"""Loopback TCP proxy that holds each request for DELAY_MS before passing it on: the round
trip to a real AWS region, which an emulator on loopback does not have. A request is what
the client sends after the last answer on its connection (its headers and body may come in
several writes; only the first waits), so one request costs one round trip however the
client writes it. Usage: latency.py UPSTREAM_PORT DELAY_MS; prints its own port."""
import asyncio
import sys


async def main(upstream, delay):
    async def handle(client_r, client_w):
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_w.close()
            return
        # True when the next bytes from the client begin a new request.
        turn = {"request": True}

        async def to_server():
            try:
                while data := await client_r.read(65536):
                    if turn["request"] and delay:
                        turn["request"] = False
                        await asyncio.sleep(delay)
                    up_w.write(data)
                    await up_w.drain()
            except ConnectionError:
                pass
            finally:
                up_w.close()

        async def to_client():
            try:
                while data := await up_r.read(65536):
                    turn["request"] = True
                    client_w.write(data)
                    await client_w.drain()
            except ConnectionError:
                pass
            finally:
                client_w.close()

        await asyncio.gather(to_server(), to_client())

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]) / 1000))
