"""Workers: turn accepted postbacks into deduplicated schema-2 events, each with its lifecycle step."""
