"""A local, fsynced spool for postbacks the broker cannot confirm (``INGEST_SPOOL_DIR``).

Appends go to the open segment ``spool-NNNNNNNNNNNN.log``; each record is framed with its
length and CRC32, so a torn tail left by a crash is recognised and ignored (its postback was
never answered 200: the answer waits for the fsync). To forward, the open segment is sealed
and every sealed segment is read in order, handed to the broker, then deleted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from ingest.envelope import Record, batches, pack, unpack

log = logging.getLogger("postbacks.spool")

_FRAME = struct.Struct("!II")  # payload length, crc32


def _segment_name(seq: int) -> str:
    return f"spool-{seq:012d}.log"


def read_segment(path: Path) -> list[Record]:
    """Every intact record of a segment, in order; stops at a torn or corrupt tail."""
    data = path.read_bytes()
    records: list[Record] = []
    pos = 0
    while pos + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        payload = data[pos + _FRAME.size : pos + _FRAME.size + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            log.warning("spool segment has a torn tail", extra={"segment": path.name, "at": pos})
            break
        records.extend(unpack(payload))
        pos += _FRAME.size + length
    return records


class Spool:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._lock = asyncio.Lock()
        self._forwarding = asyncio.Lock()
        existing = self._segments()
        self._seq = (int(existing[-1].stem.split("-")[1]) + 1) if existing else 1
        self._fd: int | None = None
        self.pending = sum(len(read_segment(p)) for p in existing)

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("spool-*.log"))

    def _open_path(self) -> Path:
        return self.directory / _segment_name(self._seq)

    def _write(self, frames: bytes) -> None:
        if self._fd is None:
            self._fd = os.open(self._open_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(self._fd, frames)
        os.fsync(self._fd)

    async def append(self, records: Sequence[Record]) -> None:
        """Append and fsync; when this returns the records survive a crash."""
        frames = b"".join(
            _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
            for payload in (pack([rec]) for rec in records)
        )
        async with self._lock:
            await asyncio.to_thread(self._write, frames)
            self.pending += len(records)

    async def _seal(self) -> None:
        async with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self._seq += 1

    async def forward(
        self, send: Callable[[list[Record]], Awaitable[None]], batch: int, max_bytes: int
    ) -> int:
        """Hand every spooled record to ``send`` in order, in batches of at most ``batch``
        records and about ``max_bytes`` bytes (as the live path cuts them); delete each
        segment once all its records were sent. Returns how many were forwarded. ``send``
        raising stops forwarding; what was not sent stays for the next call."""
        async with self._forwarding:
            if self.pending == 0:
                return 0
            await self._seal()
            forwarded = 0
            for path in self._segments():
                if path == self._open_path():
                    continue
                records = await asyncio.to_thread(read_segment, path)
                for part in batches(records, batch, max_bytes):
                    await send(part)
                path.unlink()
                async with self._lock:
                    self.pending = max(0, self.pending - len(records))
                forwarded += len(records)
                log.info(
                    "spool segment forwarded",
                    extra={"segment": path.name, "postbacks": len(records)},
                )
            return forwarded

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
