"""The ceiling: a bare aiohttp app that reads the body and answers 200 ``OK``.

``python -m bench.ceiling --port 18080``. Same event loop (uvloop) and server settings as
the project's receiver would use, no broker: the best any aiohttp receiver can do here.
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def postbacks(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="OK")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="OK")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/postbacks", postbacks)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ceiling")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18080)
    args = ap.parse_args(argv)
    import uvloop

    uvloop.install()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
