"""A worker's small HTTP side: ``/metrics``, ``/healthz``, ``/readyz``."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.worker import Worker

WORKER = web.AppKey("worker", Worker)


def create_app(worker: Worker) -> web.Application:
    app = web.Application()
    app[WORKER] = worker

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks = {name: problem or "ok" for name, problem in worker.problems.items()}
        return web.json_response(
            {"ready": worker.ready, "checks": checks}, status=200 if worker.ready else 503
        )

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(worker.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
