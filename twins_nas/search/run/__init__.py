"""Running a study: where it lives (storage), the exact-N trial loop with heartbeats and
retries, worker processes, samplers, successive-halving rungs, and provenance."""
