"""The proxy task: the data set (in memory), the proxy network (widths scaled, attention
geometry kept) and its short training; the ``proxy:`` section of a space is `ProxySettings`."""
from .data import ProxyData, load_proxy_data
from .network import proxy_arch
from .settings import ProxySettings
from .train import ProxyDiverged, ProxyResult, train_proxy

__all__ = ["ProxyData", "ProxyDiverged", "ProxyResult", "ProxySettings", "load_proxy_data", "proxy_arch",
           "train_proxy"]
