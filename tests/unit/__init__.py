"""Unit tests: pure logic of the ``ingest`` package, no broker, no network, no files."""
