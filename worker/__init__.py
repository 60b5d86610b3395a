"""Workers: turn accepted postbacks into deduplicated schema-2 events with their lifecycle."""
