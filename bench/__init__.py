"""Benchmark harness for the postbacks intake: run with ``python -m bench`` (see README.md)."""
