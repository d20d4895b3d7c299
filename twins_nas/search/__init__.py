"""Architecture search: YAML space -> ArchConfig -> proxy accuracy (+ profiler) -> study -> report."""
from .proxy.data import ProxyData, load_proxy_data
from .proxy.network import proxy_arch
from .proxy.settings import ProxySettings
from .proxy.train import ProxyDiverged, ProxyResult, train_proxy
from .report.export import export_study
from .run.settings import SearchSettings
from .space.measure import MeasureSettings
from .space.metrics import METRICS
from .space.space import Bound, SearchSpace, StageSpace, load_space
from .study import run_search

__all__ = ["METRICS", "Bound", "MeasureSettings", "ProxySettings", "SearchSpace", "StageSpace", "load_space",
           "ProxyData", "load_proxy_data", "ProxyDiverged", "ProxyResult", "proxy_arch", "train_proxy",
           "SearchSettings", "run_search", "export_study"]
