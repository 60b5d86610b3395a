"""``postbacks stats``: queue depths and consumers, as a readable table."""

from __future__ import annotations

import aio_pika

from ingest.settings import Settings


async def report(settings: Settings) -> str:
    names = settings.names
    rows = []
    async with await aio_pika.connect(settings.amqp_url, timeout=10) as connection:
        for queue_name in (names.intake, names.quarantine, names.unrouted):
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(queue_name, passive=True)
                result = queue.declaration_result
                rows.append((queue_name, str(result.message_count), str(result.consumer_count)))
            except Exception:
                rows.append((queue_name, "-", "absent"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'queue':<{width}}  {'messages':>9}  {'consumers':>9}"]
    lines += [f"{q:<{width}}  {m:>9}  {c:>9}" for q, m, c in rows]
    return "\n".join(lines)
