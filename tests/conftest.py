"""Shared test set-up. Strategies and helpers live in `tests/strategies.py` (importable as
`strategies` from any test file); this file only makes that import work in every pytest
import mode and provides small fixtures."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU generator: each test draws its own reproducible tensors."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's tiny models on one thread (restored afterwards). For the few-KB tensors of
    the property tests, two OpenMP threads on a shared 2-core machine spend most of their time
    waiting for each other: one thread is ~5x faster there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """One torch thread for a test (restored afterwards): OpenMP's barriers make 2-thread
    timings erratic on a busy shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
