"""Fault benchmark: a search is hit by the faults a user meets, and after each the expected
outcome is checked. Prints one table row per fault (the README's fault table).

    python benchmarks/faults.py                # 20 of each signal, every fault
    python benchmarks/faults.py --each 5       # quicker

Faults and what must hold afterwards:
- disk full (a 600 KiB tmpfs when root; otherwise a read-only folder is all we can make): exit
  code 3 with one error line naming the file, no truncated or temporary file in the report
  folder, every finished trial in the study, and its report written elsewhere is complete;
- SIGINT, SIGTERM, SIGKILL at random moments of a search (`--each` of each), one study resumed
  again and again: exit 130 for SIGINT/SIGTERM (-9 for SIGKILL), no trial that had finished
  lost or changed, no truncated file in the report folder (JSON parses, HTML is whole), and in
  the end the same command completes exactly N;
- a truncated and a corrupted storage file: exit 2 with one line, nothing else written;
- out of memory (a child process whose data segment is capped at 1.5 GiB, timing at batch
  1200): the trials that do not fit fail as "out of memory", the others complete, exactly N at
  the end.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from strategies import tiny_space  # noqa: E402

# the tests' tiny space: about a second per trial
SPACE = tiny_space("faults", constraints=False, measure_batch=4, train_samples=400)


def search_cmd(space: Path, out: Path, trials: int, *extra: str) -> list:
    return [sys.executable, "-m", "twins_nas", "search", "--space", str(space), "--trials", str(trials), "--out",
            str(out), "--device", "cpu", "--timing-budget", "0.02", "--no-png", *extra]


def finished(db: Path, name: str = "faults") -> dict:
    try:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    except (KeyError, Exception):  # noqa: BLE001 (no study yet)
        return {}
    return {t.number: (t.params, t.values) for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE}


def running_trials(db: Path, name: str = "faults") -> int:
    try:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    except (KeyError, Exception):  # noqa: BLE001 (no study yet)
        return 0
    return sum(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))


def files_whole(out: Path) -> bool:
    """No temporary file, every JSON parses, every HTML ends as HTML does, every CSV ends a line."""
    for f in out.iterdir() if out.is_dir() else []:
        if f.name.startswith("."):
            return False
        if f.suffix == ".json":
            try:
                json.loads(f.read_text())
            except ValueError:
                return False
        if f.suffix == ".html" and not f.read_text(errors="replace").rstrip().endswith("</html>"):
            return False
        if f.suffix == ".csv" and not f.read_bytes().endswith(b"\n"):
            return False
    return True


def error_lines(stderr: str) -> list:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)


# ---- faults ------------------------------------------------------------------------------------
def disk_full(root: Path, space: Path) -> tuple:
    mnt = root / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        return "disk full", "skipped (needs root for a tmpfs)", True
    try:
        out = mnt / "out"
        r = run(search_cmd(space, out, 3, "--threads", "1"))
        before = finished(out / "study.db")
        rep = root / "report"
        exp = run([sys.executable, "-m", "twins_nas", "export", "--study", "faults", "--storage", str(out / "study.db"),
                   "--out", str(rep), "--no-png"])
        lines = error_lines(r.stderr)
        ok = (r.returncode == 3 and len(lines) == 1 and "no space left" in lines[0] and "Traceback" not in r.stderr
              and files_whole(out) and len(before) == 3 and exp.returncode == 0 and files_whole(rep))
        return "disk full (600 KiB tmpfs)", f"exit {r.returncode}, {len(before)}/3 trials kept, report elsewhere " \
                                            f"{'whole' if files_whole(rep) else 'BROKEN'}", ok
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def signals(root: Path, space: Path, each: int, rng: random.Random) -> list:
    """Every signal `each` times at random moments of one study that is resumed each time."""
    n = 4 * each
    out = root / "sig"
    rows = []
    lost = changed = 0
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        codes, whole, one_line, left_running = [], True, True, 0
        for _ in range(each):
            seen = finished(out / "study.db")
            p = subprocess.Popen(search_cmd(space, out, n, "--threads", "1"), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            time.sleep(rng.uniform(0.5, 8.0))
            p.send_signal(sig)
            _, err = p.communicate(timeout=300)
            codes.append(p.returncode)
            now = finished(out / "study.db")
            lost += sum(1 for k in seen if k not in now)
            changed += sum(1 for k, v in seen.items() if k in now and now[k] != v)
            whole &= files_whole(out)
            one_line &= "Traceback" not in err
            if sig != signal.SIGKILL and p.returncode != 0:  # a stopped search leaves no trial running
                left_running += running_trials(out / "study.db")
        # SIGTERM before the handler is installed (Python still importing torch) is the default
        # death: -15, before any trial started
        want = {signal.SIGINT: {130, 0}, signal.SIGTERM: {130, 0, -15}, signal.SIGKILL: {-9, 0}}[sig]
        ok = set(codes) <= want and whole and one_line and lost == 0 and changed == 0 and left_running == 0
        tally = ", ".join(f"{c} x{codes.count(c)}" for c in sorted(set(codes), reverse=True))
        rows.append((f"{sig.name} x {each}", f"exit codes {tally}; finished trials lost {lost}, changed {changed}; "
                                             f"left RUNNING {left_running if sig != signal.SIGKILL else 'n/a'}; "
                                             f"files whole: {whole}", ok))
    r = run(search_cmd(space, out, n, "--threads", "1"))
    study = optuna.load_study(study_name="faults", storage=f"sqlite:///{out / 'study.db'}")
    complete = sum(t.state == TrialState.COMPLETE for t in study.trials)
    running = sum(t.state == TrialState.RUNNING for t in study.trials)
    ok = r.returncode == 0 and complete == n and running == 0 and files_whole(out)
    rows.append(("resume after the signals", f"exit {r.returncode}, {complete}/{n} COMPLETE, {running} RUNNING", ok))
    return rows


def broken_storage(root: Path, space: Path) -> list:
    good = root / "good"
    run(search_cmd(space, good, 2, "--threads", "1"))
    rows = []
    for what in ("truncated", "corrupted"):
        out = root / what
        shutil.copytree(good, out)
        db = out / "study.db"
        data = db.read_bytes()
        if what == "truncated":
            db.write_bytes(data[: len(data) // 2])
        else:
            db.write_bytes(data[:100] + bytes(rng_bytes(4096)) + data[4196:])
        listing = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
        r = run(search_cmd(space, out, 3, "--threads", "1"))
        after = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
        lines = error_lines(r.stderr)
        ok = r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr and after == listing
        problem = lines[0].rsplit(": ", 1)[-1] if lines else r.stderr.strip()[-90:]  # after the (long) path
        rows.append((f"{what} study.db", f"exit {r.returncode}, one line: ...{problem}; nothing written", ok))
    return rows


def rng_bytes(n: int) -> bytes:
    return random.Random(1).randbytes(n)


def out_of_memory(root: Path, space_text: str) -> tuple:
    """Full-size models timed at a large batch in a process whose data segment is capped: the
    bigger configs cannot allocate their forward, the smaller ones can."""
    space = root / "oom.yaml"  # stage 1 at width 16 fits the cap at batch 1200, at width 128 it cannot
    space.write_text(space_text.replace("embed_dim: [16, 32], head_dim: 16, mlp_ratio: [2, 4]",
                                        "embed_dim: [16, 128], head_dim: 16, mlp_ratio: 4")
                     .replace("measure: {batch_size: 4}", "measure: {batch_size: 1200}"))
    out = root / "oom"
    cap = 3 * 2 ** 29  # 1.5 GiB: about 0.7 GiB left once torch is loaded

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))

    r = subprocess.run(search_cmd(space, out, 4, "--threads", "1"), capture_output=True, text=True,
                       preexec_fn=limit, timeout=900)
    study = optuna.load_study(study_name="faults", storage=f"sqlite:///{out / 'study.db'}")
    oom = [t for t in study.trials if t.state == TrialState.FAIL
           and str(t.user_attrs.get("fail_reason", "")).startswith("out of memory")]
    other = [t for t in study.trials if t.state == TrialState.FAIL and t not in oom]
    complete = sum(t.state == TrialState.COMPLETE for t in study.trials)
    ok = r.returncode == 0 and complete == 4 and len(oom) >= 1 and not other and "Traceback" not in r.stderr
    return ("out of memory (1.5 GiB data cap, batch 1200)",
            f"exit {r.returncode}, {len(oom)} trial(s) failed 'out of memory', {complete}/4 COMPLETE, "
            f"other failures {len(other)}", ok)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--each", type=int, default=20, help="how many times each signal is sent")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="twins-nas-faults-"))
    space = root / "faults.yaml"
    space.write_text(SPACE)
    rows = []
    t0 = time.perf_counter()
    try:
        rows.append(disk_full(root, space))
        rows += signals(root, space, args.each, rng)
        rows += broken_storage(root, space)
        rows.append(out_of_memory(root, SPACE))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nfaults ({time.perf_counter() - t0:.0f} s, {os.cpu_count()} CPU cores)")
    print("| fault | outcome | check |")
    print("|---|---|---|")
    for name, outcome, ok in rows:
        print(f"| {name} | {outcome} | {'pass' if ok else 'FAIL'} |")
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
