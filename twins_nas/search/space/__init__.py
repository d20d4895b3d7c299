"""The YAML space and its settings: the stages' choices, objectives and constraints
(`space`), and the ``measure:``, ``halving:``, ``replicates:`` sections and metric names it refers to; the
``proxy:`` section is the proxy task's (`twins_nas.search.proxy.settings`)."""
from .halving import HalvingSettings
from .measure import MeasureBudget, MeasureSettings
from .metrics import METRICS
from .replication import ReplicateSettings
from .space import Bound, SearchSpace, StageSpace, apply_override, format_space_error, load_space, space_from_dict

__all__ = ["Bound", "HalvingSettings", "METRICS", "MeasureBudget", "MeasureSettings", "ReplicateSettings",
           "SearchSpace", "StageSpace", "apply_override", "format_space_error", "load_space", "space_from_dict"]
