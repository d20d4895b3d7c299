"""The ``replicates:`` section of a space: further trainings, with other seeds, of the
architectures on the accuracy front and of those within `z` standard errors of it (see
`twins_nas.search.run.replication`)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class ReplicateSettings(BaseModel):
    """Replicates where they matter (the ``replicates:`` section of a space). When the search
    has its N trials, the architectures on the front of the mean accuracies and those within
    `z` combined standard errors of it are trained again with further seeds until each has
    `count` replicates (its trials included), closest to the front first, at most
    ``budget x N`` trainings in all. The trainings are extra work, not trials. `count: 1`
    turns it off. The section is left out of the space's hash: raising `count` and running the
    search again adds replicates to a finished study."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: StrictInt = Field(default=1, ge=1, le=10,
                             description="replicates per architecture near the front, its trials included (1 = off)")
    z: float = Field(default=2.0, gt=0, le=5,
                     description="an architecture within z combined standard errors of the front is near it")
    budget: float = Field(default=0.2, ge=0, le=10,
                          description="at most budget x the trial count of further trainings in all")
