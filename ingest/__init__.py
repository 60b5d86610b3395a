"""Durable intake for Sinch MMS postbacks.

``ingest`` holds the HTTP receiver and everything both sides share: settings, topology
names, the code table, parsing and normalization into the schema-1 event.
"""

__version__ = "0.1.0"
