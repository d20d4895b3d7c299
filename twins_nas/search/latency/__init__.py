"""Per-device latency tables: every building block a space can produce, timed on the machine
that will run the models, and a predictor that adds a config's blocks up (plus a fitted
whole-model overhead) instead of building and timing the model.

`blocks` (pure Python) decomposes a config into blocks and enumerates a space's; `modules`
turns a block into a module to time; `build` makes a table; `table` reads and writes its
JSON; `predictor` answers from it."""
from .blocks import BlockKey, model_blocks, space_blocks
from .predictor import MEASURED, PREDICTED, LatencyPredictor, latency_source, space_predictor

__all__ = ["BlockKey", "model_blocks", "space_blocks", "LatencyPredictor", "latency_source", "space_predictor",
           "MEASURED", "PREDICTED"]
