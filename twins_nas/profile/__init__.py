"""Profiling: FLOPs (fvcore, attention included), the closed-form cost model, latency,
throughput and peak memory (timed as a `MeasureSpec` says, through a `TimingBackend`: eager
PyTorch, `torch.compile` or onnxruntime), ONNX export, the resolution sweep and `run_profile`,
which is `twins-nas profile`."""
from ..models.cost_model import FlopReport, analytic_gmacs  # noqa: F401
from ..models.head_cost import analytic_flops, analytic_params  # noqa: F401  (head=None: the classifier)
from .backends import BACKENDS, EagerBackend, MeasureSpec, TimingBackend, get_backend, register_backend  # noqa: F401
from .flops import count_flops  # noqa: F401  (fvcore itself is imported on the first count)
from .latency import LatencyReport, measure_latency  # noqa: F401
from .memory import measure_peak_memory  # noqa: F401
from .onnx_export import OnnxExport, export_onnx  # noqa: F401  (onnxruntime itself is imported on use)
from .run import ProfileResult, profile_models, run_profile  # noqa: F401
from .runtimes import RUNTIMES, CompileBackend, OnnxRuntimeBackend, check_runtime  # noqa: F401
from .sweep import SWEEP_SPEC, default_resolutions, profile_sweep  # noqa: F401
