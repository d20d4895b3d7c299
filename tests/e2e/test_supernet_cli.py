"""`twins-nas supernet` end to end on the tiny space: it trains and writes its checkpoint and
curve, a second run continues it to the planned steps, and bad input (a corrupt checkpoint, one
of another space, a bad setting or run length) is one line with exit code 2."""
from __future__ import annotations

import csv

import pytest
from strategies import tiny_space_file
from typer.testing import CliRunner

from twins_nas.cli import app

pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()
SMALL = ["--set", "proxy.train_samples=100", "--set", "proxy.val_samples=100", "--set", "proxy.batch_size=50",
         "--set", "supernet.random_subnets=0", "--set", "supernet.eval_every=2"]


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_supernet_trains_then_continues_to_the_planned_steps(tmp_path):
    space, out = tiny_space_file(tmp_path), tmp_path / "sn"
    base = ["supernet", "--space", str(space), "--out", str(out), *SMALL]
    r = runner.invoke(app, [*base, "--steps", "3", "--set", "supernet.checkpoint_every=1"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())  # rich wraps at the terminal's width
    assert "a fresh supernet" in text and "3/3 steps" in text and f"wrote {out / 'curve.csv'}" in text
    rows = _rows(out / "curve.csv")
    assert [int(row["step"]) for row in rows] == [1, 2, 3]
    assert [bool(row["acc_largest"]) for row in rows] == [False, True, True]  # every 2 steps and at the end
    assert (out / "supernet.pt").is_file()
    r = runner.invoke(app, base)  # planned steps done: nothing to train, the same files
    assert r.exit_code == 0 and "continuing at step 3 of 3" in " ".join(r.stdout.split()), r.output
    assert len(_rows(out / "curve.csv")) == 3


def test_bad_input_is_one_line_with_exit_code_2(tmp_path):
    space, out = tiny_space_file(tmp_path), tmp_path / "sn"
    base = ["supernet", "--space", str(space), "--out", str(out), *SMALL]
    assert runner.invoke(app, [*base, "--steps", "1"]).exit_code == 0
    ckpt = out / "supernet.pt"
    for extra, says in ((["--set", "proxy.lr=0.001"], "the supernet of another space"),
                        (["--set", "proxy.lr=0.001"], "use another --out"),
                        (["--seed", "4"], "--seed=4: the supernet"),
                        (["--steps", "2"], "--steps=2: the supernet"),
                        (["--set", "supernet.random_subnets=1"], "supernet.random_subnets=1: the supernet"),
                        (["--set", "supernet.sandwich=3"], "supernet.sandwich: unknown setting"),
                        (["--minutes", "0"], "--minutes=0.0: must be > 0")):
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, (extra, r.output)
        assert len(r.output.strip().splitlines()) == 1, r.output
    ckpt.write_bytes(b"not a checkpoint")
    r = runner.invoke(app, base)
    assert r.exit_code == 2 and f"{ckpt}: not a readable supernet checkpoint" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
