"""The ``halving:`` section of a space (``fidelity:`` in older files): successive halving on
the front, which trials are trained again, longer (see `twins_nas.search.run.rungs`)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class HalvingSettings(BaseModel):
    """Successive halving on the front (the ``halving:`` section of a space): every trial is
    trained at rung 0 (the ``proxy:`` settings); after every `batch` finished trials the best
    1/eta of the trials at a rung (non-dominated rank, then crowding distance) are trained again
    at the next rung, with eta x the training images. `rungs: 1` turns it off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rungs: StrictInt = Field(default=1, ge=1, le=4, description="number of rungs (1 = every trial at rung 0 only)")
    eta: StrictInt = Field(default=3, ge=2, description="1/eta of a rung is promoted, with eta x the images")
    batch: StrictInt = Field(default=12, ge=2, description="finished trials between two promotion rounds")
