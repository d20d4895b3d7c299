"""A weight-sharing supernet of a search space (one-shot NAS): every proxy network the
space's search trains is a subnet on slices of one set of weights. Train it once
(`train_supernet`), then score any config of the space with the inherited weights
(`SupernetScorer`) in well under a second instead of training its proxy."""
