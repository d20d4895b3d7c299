"""Chaos benchmark of searches with several workers: W worker processes share one study (on a
PostgreSQL server started here, and on a journal file), and every few seconds a random worker
is killed with SIGKILL and started again, for up to M minutes, until the study has N trials.

Checked at the end: exactly N COMPLETE trials, none RUNNING or WAITING, trial numbers unique,
and every trial seen COMPLETE before a kill unchanged afterwards (parameters and values).
Printed: kills survived, trials lost (must be 0), failed-and-retried trials, and the time
overhead against a clean run of the same W workers and N trials; also the clean runs' trials
per minute with 1 and with W workers (torch threads per worker: CPU cores // workers, at least
one, so workers do not fight for cores).

    python benchmarks/chaos.py                       # PostgreSQL and journal, 3 workers
    python benchmarks/chaos.py --backend postgresql --workers 3 --trials 100 --minutes 2

PostgreSQL workers run under their own host names where `unshare -u` works (as root), as on
separate machines: a killed worker's trial is then found by its missing heartbeat; on one host
(journal) by its missing process.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from local_postgres import LocalPostgres  # noqa: E402
from strategies import tiny_space  # noqa: E402

# the tests' tiny space: about a second per trial
SPACE = tiny_space("chaos", objectives="{accuracy: maximize, gmacs: minimize}", constraints=False, train_samples=600,
                   val_samples=200)


def can_unshare() -> bool:
    return (os.geteuid() == 0 and shutil.which("unshare") is not None
            and subprocess.run(["unshare", "-u", "true"], capture_output=True).returncode == 0)


class Workers:
    """W worker processes of one study; `kill(i)` SIGKILLs one, `start(i)` starts it again."""

    def __init__(self, root: Path, storage: str, trials: int, n: int, hosts: bool) -> None:
        self.root, self.storage, self.trials, self.hosts = root, storage, trials, hosts
        self.threads = max(1, (os.cpu_count() or 1) // n)
        root.mkdir(parents=True, exist_ok=True)
        self.space = root / "chaos.yaml"
        self.space.write_text(SPACE)
        self.procs: list = [None] * n
        self.started = 0

    def cmd(self, i: int) -> list:
        prefix = ["unshare", "-u", "sh", "-c", f'hostname worker{i} && exec "$0" "$@"'] if self.hosts else []
        return [*prefix, sys.executable, "-m", "twins_nas", "search", "--space", str(self.space), "--trials",
                str(self.trials), "--storage", self.storage, "--out", str(self.root / f"w{i}-{self.started}"),
                "--device", "cpu", "--threads", str(self.threads), "--heartbeat", "1", "--no-png",
                "--seed", str(self.started)]

    def start(self, i: int) -> None:
        self.procs[i] = subprocess.Popen(self.cmd(i), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         text=True, start_new_session=True)
        self.started += 1

    def kill(self, i: int) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def alive(self) -> list:
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    def wait(self, timeout: float) -> list:
        codes = []
        for p in self.procs:
            try:
                p.wait(timeout=max(1.0, timeout))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            codes.append(p.returncode)
        return codes


def load(storage: str) -> optuna.Study:
    if storage.startswith("journal:"):
        backend = optuna.storages.journal.JournalFileBackend(storage[len("journal:"):])
        return optuna.load_study(study_name="chaos", storage=optuna.storages.JournalStorage(backend))
    return optuna.load_study(study_name="chaos", storage=storage)


def snapshot(storage: str) -> dict:
    try:
        study = load(storage)
    except KeyError:
        return {}
    return {t.number: (t.params, t.values) for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE}


def run(root: Path, storage: str, trials: int, workers: int, hosts: bool, chaos: bool, minutes: float,
        kill_every: float, rng: random.Random) -> dict:
    """One run to N trials; with `chaos`, kills and restarts until the study is done."""
    pool = Workers(root, storage, trials, workers, hosts)
    t0 = time.perf_counter()
    for i in range(workers):
        pool.start(i)
    kills, seen, changed = 0, {}, 0
    end = t0 + minutes * 60
    while chaos and time.perf_counter() < end:
        time.sleep(kill_every * rng.uniform(0.5, 1.5))
        now = snapshot(storage)
        changed += sum(1 for k, v in seen.items() if now.get(k) != v)
        seen.update(now)
        if len(now) >= trials:
            break
        victims = pool.alive()
        if not victims:
            break
        i = rng.choice(victims)
        pool.kill(i)
        kills += 1
        pool.start(i)
    codes = pool.wait(timeout=end + 600 - time.perf_counter())
    wall = time.perf_counter() - t0
    study = load(storage)
    all_trials = study.get_trials(deepcopy=False)
    final = {t.number: (t.params, t.values) for t in all_trials if t.state == TrialState.COMPLETE}
    changed += sum(1 for k, v in seen.items() if final.get(k) != v)
    numbers = [t.number for t in all_trials]
    by = {s: sum(t.state == s for t in all_trials) for s in TrialState}
    return dict(wall=wall, kills=kills, complete=by[TrialState.COMPLETE], running=by[TrialState.RUNNING],
                waiting=by[TrialState.WAITING], failed=by[TrialState.FAIL], lost=changed,
                retried=sum(1 for t in all_trials if "retry_of" in t.user_attrs),
                unique=len(numbers) == len(set(numbers)), codes=codes)


def backend_storage(kind: str, root: Path, name: str, pg: LocalPostgres | None) -> str:
    if kind == "journal":
        return f"journal:{root / (name + '.journal')}"
    return pg.create_database(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("postgresql", "journal", "both"), default="both")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=4.0, help="kill for at most this long")
    ap.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills (on average)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="twins-nas-chaos-"))
    root.chmod(0o755)  # the PostgreSQL server's user reads its folder below it
    kinds = ["postgresql", "journal"] if args.backend == "both" else [args.backend]
    pg = LocalPostgres(root / "pg").start() if "postgresql" in kinds else None
    hosts = can_unshare()
    rows, ok = [], True
    try:
        for kind in kinds:
            h = hosts and kind == "postgresql"
            one = run(root / f"{kind}-1", backend_storage(kind, root, f"{kind}_one", pg), args.trials, 1, h,
                      False, 0, 0, rng)
            clean = run(root / f"{kind}-clean", backend_storage(kind, root, f"{kind}_clean", pg), args.trials,
                        args.workers, h, False, 0, 0, rng)
            chaos = run(root / f"{kind}-chaos", backend_storage(kind, root, f"{kind}_chaos", pg), args.trials,
                        args.workers, h, True, args.minutes, args.kill_every, rng)
            passed = (chaos["complete"] == args.trials and chaos["running"] == 0 and chaos["waiting"] == 0
                      and chaos["lost"] == 0 and chaos["unique"] and clean["complete"] == args.trials
                      and one["complete"] == args.trials)
            ok &= passed
            rows.append((kind, one, clean, chaos, passed))
    finally:
        if pg is not None:
            pg.stop()
        for sub in root.glob("*"):
            shutil.rmtree(sub, ignore_errors=True)
    print(f"\nchaos: {args.workers} workers, N = {args.trials} trials, a SIGKILL + restart every ~"
          f"{args.kill_every:g} s (separate host names: {hosts}); {os.cpu_count()} CPU cores")
    print("| storage | trials/min, 1 worker | trials/min, W workers | kills | COMPLETE | RUNNING | finished "
          "trials lost | retried configs | clean wall | chaos wall | overhead | checks |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kind, one, clean, chaos, passed in rows:
        print(f"| {kind} | {60 * args.trials / one['wall']:.1f} | {60 * args.trials / clean['wall']:.1f} | "
              f"{chaos['kills']} | {chaos['complete']}/{args.trials} | {chaos['running']} | {chaos['lost']} | "
              f"{chaos['retried']} | {clean['wall']:.0f} s | {chaos['wall']:.0f} s | "
              f"{100 * (chaos['wall'] / clean['wall'] - 1):+.0f} % | {'pass' if passed else 'FAIL'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
