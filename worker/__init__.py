"""Workers: turn accepted postbacks into deduplicated schema-1 events."""
