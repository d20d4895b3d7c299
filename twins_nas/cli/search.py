"""`twins-nas search` / `twins-nas export` (see twins_nas.search)."""
