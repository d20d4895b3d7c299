"""Faults around the outputs: every file is written atomically (a failed write leaves the old
file or none, never a truncated one), and a full disk or a read-only folder is one line naming
the path and the problem, exit code 3, with the study intact and resumable."""
from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
from pathlib import Path

import optuna
import pytest
import torch
from strategies import TINY_SPACE
from typer.testing import CliRunner

from twins_nas.atomic import OutputError, atomic_path, write_text
from twins_nas.cli import app
from twins_nas.config import ArchConfig
from twins_nas.models.cost_model import analytic_params
from twins_nas.profile.memory import is_out_of_memory, measure_peak_memory, min_forward_bytes
from twins_nas.search.evaluate import objective as objective_mod

runner = CliRunner()
FAST = ["--timing-budget", "0.02", "--threads", "1", "--device", "cpu", "--set", "proxy.epochs=1"]


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "report.json"
    write_text(target, '{"complete": true}\n')
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"compl')  # the writer dies half-way
        raise RuntimeError("crash")
    assert json.loads(target.read_text()) == {"complete": True}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


@contextlib.contextmanager
def small_mount(path: Path, size: str, readonly: bool = False):
    """A tmpfs of `size` at `path` (root only); skips the test where it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    opts = f"size={size}" + (",ro" if readonly else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def one_line(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]  # beside the progress view
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_disk_full_is_one_line_no_truncated_file_and_the_study_resumes(tmp_path):
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    with small_mount(tmp_path / "small", "600k") as disk:
        out = disk / "out"
        r = runner.invoke(app, ["search", "--space", str(space), "--trials", "3", "--out", str(out), *FAST])
        line = one_line(r, 3)
        assert "no space left on the device" in line and str(out) in line
        for f in out.iterdir():  # what is there is whole: JSON parses, no half-written report
            assert not f.name.startswith("."), f"temporary file left: {f.name}"
            if f.suffix == ".json":
                json.loads(f.read_text())
            assert f.suffix != ".html", "plotly.min.js (~5 MB) cannot fit: pareto.html must not exist at all"
        study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
        assert sum(t.state.name == "COMPLETE" for t in study.trials) == 3  # every finished trial kept
        # the study is intact: its report, written elsewhere, is complete
        r = runner.invoke(app, ["export", "--study", "tiny", "--storage", str(out / "study.db"), "--out",
                                str(tmp_path / "report"), "--no-png"])
        assert r.exit_code == 0, r.output
        assert (tmp_path / "report" / "pareto.html").is_file()
        assert (tmp_path / "report" / "plotly.min.js").stat().st_size > 1e6


def test_read_only_folder_is_one_line(tmp_path):
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    with small_mount(tmp_path / "ro", "100k", readonly=True) as ro:
        r = runner.invoke(app, ["search", "--space", str(space), "--trials", "1", "--out", str(ro / "out"), *FAST])
        line = one_line(r, 3)
        assert "read-only file system" in line and str(ro / "out") in line
        r = runner.invoke(app, ["profile", "--resolutions", "224", "--no-latency", "--out", str(ro / "prof")])
        assert "read-only file system" in one_line(r, 3)


def test_unwritable_output_error_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=f"{blocker}/sub: cannot write"):
        write_text(blocker / "sub" / "a.json", "{}")


# ---- out of memory inside trials -------------------------------------------------------------
def test_out_of_memory_is_recognised():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: "
                                         "can't allocate memory: you tried to allocate 68719476736 bytes"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only allocator errors


def test_lower_bound_of_memory_is_below_the_measured_peak():
    """The closed-form bound that rejects configs before they are built never exceeds what a
    forward really takes (weights + measured peak of a fresh process), so it rejects nothing
    that would fit."""
    for name, res, batch in (("twins-svt-s", 224, 4), ("twins-pcpvt-s", 256, 2)):
        cfg = ArchConfig.preset(name)
        measured = measure_peak_memory(cfg, res, batch, device="cpu") * 2 ** 20 + 4 * analytic_params(cfg)
        if math.isnan(measured):
            pytest.skip("peak memory is measured on Linux only")
        assert min_forward_bytes(cfg, res, batch) <= measured, name


def test_out_of_memory_fails_the_trial_and_the_study_goes_on(tmp_path, monkeypatch):
    real, calls = objective_mod.time_model, []

    def first_runs_out(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8589934592 bytes")
        return real(*a, **k)

    monkeypatch.setattr(objective_mod, "time_model", first_runs_out)
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    out = tmp_path / "out"
    r = runner.invoke(app, ["search", "--space", str(space), "--trials", "2", "--out", str(out), "--no-png", *FAST])
    assert r.exit_code == 0, r.output
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[0].user_attrs["fail_reason"].startswith("out of memory (RuntimeError: DefaultCPUAllocator")


def test_a_config_that_cannot_fit_is_rejected_before_it_is_built(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(objective_mod, "timing_model", lambda cfg, head=None: built.append(cfg))
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    out = tmp_path / "out"
    r = runner.invoke(app, ["search", "--space", str(space), "--trials", "1", "--out", str(out), "--no-png",
                            "--set", f"measure.batch_size={10 ** 9}", *FAST])
    assert r.exit_code == 1 and "10 trials in a row failed" in r.stderr, r.output
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL"] * 10
    assert not [cfg for cfg in built if cfg.name.startswith("tiny-")]  # no trial's model was built
    assert all(t.user_attrs["fail_reason"].startswith("out of memory (MemoryError: needs at least")
               for t in study.trials)
