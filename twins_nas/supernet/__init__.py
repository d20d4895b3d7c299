"""A weight-sharing supernet of a search space (one-shot NAS): every proxy network the
space's search trains is a subnet on slices of one set of weights. Train it once
(`train_supernet`), then score any config of the space with the inherited weights
(`SupernetScorer`) in well under a second instead of training its proxy."""
from .choices import largest_config, smallest_config, subnet_of
from .extract import extract_subnet
from .model import Supernet
from .score import SupernetScorer
from .settings import SupernetSettings
from .shape import SupernetShape, supernet_shape
from .train import SupernetRun, train_supernet

__all__ = ["Supernet", "SupernetRun", "SupernetScorer", "SupernetSettings", "SupernetShape", "extract_subnet",
           "largest_config", "smallest_config", "subnet_of", "supernet_shape", "train_supernet"]
