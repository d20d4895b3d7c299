"""Set-up shared by the end-to-end CLI tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()  # search sets the thread count of this (test) process
    yield
    torch.set_num_threads(n)
