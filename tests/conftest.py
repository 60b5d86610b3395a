"""Fixtures for tests that touch RabbitMQ and Redis: each test gets a fresh namespace,
deleted afterwards with its queues, exchanges and Redis keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support import Stack, delete_namespace, new_namespace


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    ns = new_namespace()
    yield ns
    await delete_namespace(ns)


@pytest.fixture
def processes(namespace: str, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(namespace, tmp_path)
    try:
        yield stack
    finally:
        stack.close()
