"""One trial: a config -> its metrics (closed-form costs, timing, memory, proxy accuracy,
zero-cost scores) -> constraints -> objective values, and the status it ends with."""
