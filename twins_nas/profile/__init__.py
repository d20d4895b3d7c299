"""Profiling: FLOPs (fvcore, attention included), the closed-form cost model, latency,
throughput and peak memory, and the resolution sweep behind `twins-nas profile`."""
from ..models.cost_model import FlopReport, analytic_gmacs  # noqa: F401
from ..models.head_cost import analytic_flops, analytic_params  # noqa: F401  (head=None: the classifier)
from .flops import count_flops  # noqa: F401  (fvcore itself is imported on the first count)
from .latency import LatencyReport, measure_latency  # noqa: F401
from .memory import measure_peak_memory  # noqa: F401
from .sweep import default_resolutions, profile_sweep  # noqa: F401
