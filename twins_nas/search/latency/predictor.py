"""`LatencyPredictor`: a config's latency from a latency table, without building a model.

The prediction is the fitted ``a * (sum of the config's block latencies) + b`` (see
`table.Fit`): the blocks come from `blocks.model_blocks` at the table's size, batch and head,
each looked up by its id. A table answers only for what it was timed at: another size, batch
or head, or a block it lacks, is a one-line ConfigError naming it.
"""
from __future__ import annotations

from pathlib import Path

from ...config import ArchConfig
from ...errors import ConfigError
from ...models.head_config import DenseHead, head_config
from ...profile.backends import DEFAULT_BACKEND
from ...sizes import Size, as_size, format_size
from ..space.space import SearchSpace
from .blocks import BlockKey, model_blocks, space_blocks
from .table import LatencyTable, read_table

MEASURED, PREDICTED = "measured", "predicted"  # where a trial's or a profile row's latency comes from


def _head_name(head: DenseHead | None) -> str:
    return "the classifier" if head is None else f"head {head.type} ({head.num_classes} classes)"


def images_per_second(batch: int, ms: float) -> float:
    """Throughput of a forward of `batch` images taking `ms` milliseconds (inf for 0 ms)."""
    return batch * 1e3 / ms if ms > 0 else float("inf")


class LatencyPredictor:
    """Predicts whole-model latency (ms per batch) from a `LatencyTable` read from `path`."""

    def __init__(self, table: LatencyTable, path: str | Path = "<memory>"):
        self.table = table
        self.path = Path(path)

    @classmethod
    def load(cls, path: str | Path) -> LatencyPredictor:
        """The table in `path` (one-line ConfigError when it is missing, corrupt, of another version)."""
        return cls(read_table(path), path)

    @property
    def rebuild(self) -> str:
        space = self.table.space.get("source") or self.table.space.get("name", "SPACE.yaml")
        return f"rebuild it with twins-nas latency-table --space {space} --out {self.path}"

    def _where(self, size: int | Size | None, batch: int | None,
               head: DenseHead | str | None) -> tuple[Size, int, DenseHead | None]:
        t = self.table
        return self._check(t.size if size is None else as_size(size), t.batch if batch is None else batch,
                           t.head if head is None else head_config(head))

    def _check(self, s: Size, b: int, h: DenseHead | None) -> tuple[Size, int, DenseHead | None]:
        t = self.table
        if s != t.size:
            raise ConfigError(f"latency table {self.path} was measured at {format_size(t.size)} px, not "
                              f"{format_size(s)}: build a table at that size", field="size")
        if b != t.batch:
            raise ConfigError(f"latency table {self.path} was measured at batch {t.batch}, not {b}: build a table "
                              f"at that batch", field="batch")
        if h != t.head:
            raise ConfigError(f"latency table {self.path} was measured with {_head_name(t.head)}, not "
                              f"{_head_name(h)}: build a table with that head", field="head")
        return s, b, h

    def missing(self, keys: list[BlockKey] | set[BlockKey]) -> BlockKey | None:
        """The first of `keys` (in order; a set: by id) the table lacks, or None."""
        ordered = sorted(keys, key=lambda k: k.id) if isinstance(keys, set) else keys
        return next((k for k in ordered if k.id not in self.table.blocks), None)

    def _no_block(self, key: BlockKey) -> ConfigError:
        return ConfigError(f"latency table {self.path} has no {key.describe()}: {self.rebuild}")

    def blocks_ms(self, cfg: ArchConfig, size: int | Size | None = None, batch: int | None = None,
                  head: DenseHead | str | None = None) -> float:
        """The sum of `cfg`'s block latencies (ms), before the whole-model fit."""
        return self._sum(cfg, *self._where(size, batch, head))

    def _sum(self, cfg: ArchConfig, s: Size, b: int, h: DenseHead | None) -> float:
        blocks = self.table.blocks
        total = 0.0
        for key in model_blocks(cfg, s, b, h):
            entry = blocks.get(key.id)
            if entry is None:
                raise self._no_block(key)
            total += entry.latency_ms
        return total

    def predict(self, cfg: ArchConfig, size: int | Size | None = None, batch: int | None = None,
                head: DenseHead | str | None = None) -> float:
        """Predicted latency (ms) of one forward pass of `cfg` on a batch; size, batch and head
        default to the table's (any other is a one-line ConfigError)."""
        return max(0.0, self.table.fit(self.blocks_ms(cfg, size, batch, head)))

    def predict_at(self, cfg: ArchConfig, size: int | Size, batch: int, head: DenseHead | None) -> float:
        """`predict` with every setting given: `head` None is the classifier (not the table's head)."""
        return max(0.0, self.table.fit(self._sum(cfg, *self._check(as_size(size), batch, head))))

    def throughput(self, cfg: ArchConfig) -> float:
        """Predicted images per second at the table's batch."""
        return images_per_second(self.table.batch, self.predict(cfg))

    def check_space(self, space: SearchSpace) -> None:
        """A one-line ConfigError unless this table answers for every config of `space`: the
        same runtime, dtype, batch, size and head as its ``measure:`` section, and every block
        of `blocks.space_blocks` (the first one missing is named)."""
        t, m = self.table, space.measure
        runtime = m.runtime or DEFAULT_BACKEND
        where = f"space {space.source}"
        for name, table_value, space_value in (("runtime", t.runtime, runtime), ("dtype", t.dtype, m.dtype),
                                               ("batch", t.batch, m.batch_size)):
            if table_value != space_value:
                raise ConfigError(f"latency table {self.path} was measured with {name} {table_value}, {where} "
                                  f"measures with {space_value}: {self.rebuild}")
        if t.size != space.measure_size:
            raise ConfigError(f"latency table {self.path} was measured at {format_size(t.size)} px, {where} "
                              f"measures at {format_size(space.measure_size)}: {self.rebuild}")
        if t.head != m.head_config:
            raise ConfigError(f"latency table {self.path} was measured with {_head_name(t.head)}, {where} "
                              f"measures {_head_name(m.head_config)}: {self.rebuild}")
        key = self.missing(space_blocks(space))
        if key is not None:
            raise self._no_block(key)


def space_predictor(space: SearchSpace) -> LatencyPredictor | None:
    """The predictor a space's ``measure.predictor`` names, checked against the space
    (`LatencyPredictor.check_space`); None when it names none."""
    path = space.predictor_path
    if path is None:
        return None
    predictor = LatencyPredictor.load(path)
    predictor.check_space(space)
    return predictor


def latency_source(space: SearchSpace) -> str:
    """Where the timed metrics of a space's trials come from: `PREDICTED` with a
    ``measure.predictor``, `MEASURED` otherwise."""
    return PREDICTED if space.measure.predictor is not None else MEASURED
