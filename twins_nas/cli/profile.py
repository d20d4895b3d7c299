"""`twins-nas profile` (see twins_nas.profile)."""
