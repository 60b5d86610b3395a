"""The baseline receiver: the straightforward way to do what ``postbacks receive`` does.

``python -m bench.baseline_receiver --namespace NS --port 18081``. One aio-pika
connection, one channel with publisher confirms; each postback is published on its own to
the quorum queue ``NS.intake`` (persistent) and the handler awaits that publish's confirm
before answering 200 ``OK`` (503 if the broker nacks or does not answer in time).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import aio_pika
from aiohttp import web

CHANNEL: web.AppKey[aio_pika.abc.AbstractChannel] = web.AppKey("channel")
INTAKE: web.AppKey[str] = web.AppKey("intake")


async def postbacks(request: web.Request) -> web.Response:
    body = await request.read()
    if not body.strip():
        return web.Response(status=400, text="empty body")
    channel = request.app[CHANNEL]
    message = aio_pika.Message(
        body,
        content_type=request.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    try:
        await asyncio.wait_for(
            channel.default_exchange.publish(message, routing_key=request.app[INTAKE]), 5.0
        )
    except Exception:
        return web.Response(status=503, text="broker unavailable", headers={"Retry-After": "1"})
    return web.Response(text="OK")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="OK")


def make_app(amqp_url: str, namespace: str) -> web.Application:
    app = web.Application()
    app[INTAKE] = f"{namespace}.intake"

    async def broker(app: web.Application) -> AsyncIterator[None]:
        connection = await aio_pika.connect_robust(amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(app[INTAKE], durable=True, arguments={"x-queue-type": "quorum"})
        app[CHANNEL] = channel
        yield
        await connection.close()

    app.cleanup_ctx.append(broker)
    app.router.add_post("/postbacks", postbacks)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.baseline_receiver")
    ap.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18081)
    args = ap.parse_args(argv)
    import uvloop

    uvloop.install()
    web.run_app(
        make_app(args.amqp_url, args.namespace),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
