"""The import-cycle check of CI (scripts/check_import_cycles.py): it finds cycles that go
through function-level imports and through a package's __init__, and twins_nas has none."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _checker():
    spec = importlib.util.spec_from_file_location("check_import_cycles", ROOT / "scripts" / "check_import_cycles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
    """pkg: a -> b -> a (b's import inside a function), pkg/__init__ <-> pkg.c, d alone."""
    pkg = tmp_path / "toypkg_cycles"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from . import c\nVERSION = 1\n")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    (pkg / "c.py").write_text("from . import VERSION\n")
    (pkg / "d.py").write_text("import json\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "toypkg_cycles"
    sys.modules.pop("toypkg_cycles", None)


def test_finds_cycles_through_functions_and_package_inits(toy_package):
    groups = _checker().strongly_connected(grimp.build_graph(toy_package, cache_dir=None))
    assert sorted(groups) == [["toypkg_cycles", "toypkg_cycles.c"], ["toypkg_cycles.a", "toypkg_cycles.b"]]
    assert _checker().main(toy_package) == 1


def test_twins_nas_has_no_import_cycle(capsys):
    assert _checker().main("twins_nas") == 0
    assert "no import cycles" in capsys.readouterr().out
