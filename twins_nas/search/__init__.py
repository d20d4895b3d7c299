"""Architecture search: YAML space -> ArchConfig -> proxy accuracy (+ profiler) -> study."""
from .data import ProxyData, load_proxy_data
from .proxy_train import ProxyDiverged, ProxyResult, proxy_arch, train_proxy
from .space import METRICS, Bound, MeasureSettings, ProxySettings, SearchSpace, StageSpace, load_space
from .study import SearchSettings, export_study, run_search  # noqa: F401  (study -> report)

__all__ = ["METRICS", "Bound", "MeasureSettings", "ProxySettings", "SearchSpace", "StageSpace", "load_space",
           "ProxyData", "load_proxy_data", "ProxyDiverged", "ProxyResult", "proxy_arch", "train_proxy"]
