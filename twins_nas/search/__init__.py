"""Architecture search: YAML space -> ArchConfig -> proxy accuracy (+ profiler) -> study -> report."""
from .data import ProxyData, load_proxy_data
from .export import export_study
from .metrics import METRICS
from .proxy_arch import proxy_arch
from .proxy_train import ProxyDiverged, ProxyResult, train_proxy
from .search_settings import SearchSettings
from .settings import MeasureSettings, ProxySettings
from .space import Bound, SearchSpace, StageSpace, load_space
from .study import run_search

__all__ = ["METRICS", "Bound", "MeasureSettings", "ProxySettings", "SearchSpace", "StageSpace", "load_space",
           "ProxyData", "load_proxy_data", "ProxyDiverged", "ProxyResult", "proxy_arch", "train_proxy",
           "SearchSettings", "run_search", "export_study"]
