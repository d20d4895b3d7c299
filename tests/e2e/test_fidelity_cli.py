"""`twins-nas fidelity` end to end on a tiny space: the files and keys, Kendall tau and pair
agreement recomputed by brute force from the per-architecture values, seed tau / seed SD /
corrected tau / separation recomputed from the per-seed results, controlled pairs that differ in
exactly one field of one stage, resume after a kill (and of a run without the zero-cost seeds),
bad input."""
from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from strategies import TINY_SPACE
from typer.testing import CliRunner

from twins_nas.cli import app
from twins_nas.config import ArchConfig
from twins_nas.search.fidelity.experiment import Job, attention_geometry, draw_plan, run_fidelity, summarize
from twins_nas.search.space.space import load_space

pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()
REF = ["--reference", "proxy.train_samples=400", "--reference", "proxy.epochs=2"]
SIZE = ["--archs", "5", "--pairs", "3", "--seeds", "2", "--seeded", "4"]


def tau_b(x: list[float], y: list[float]) -> float:
    """Kendall tau-b by brute force over all pairs."""
    conc = disc = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tx += 1
        elif dy == 0:
            ty += 1
        elif (dx > 0) == (dy > 0):
            conc += 1
        else:
            disc += 1
    return (conc - disc) / (((conc + disc + tx) * (conc + disc + ty)) ** 0.5)


@pytest.fixture
def space_file(tmp_path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_SPACE)
    return p


def test_fidelity_writes_the_report_and_its_figures_are_right(tmp_path, space_file):
    out = tmp_path / "fid"
    r = runner.invoke(app, ["fidelity", "--space", str(space_file), *SIZE, *REF, "--out", str(out), "--no-png",
                            "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "(complete)" in r.stdout
    d = json.loads((out / "fidelity.json").read_text())
    assert d["default_scorer"] == "accuracy"
    assert set(d["scorers"]) == {"params", "gmacs", "naswot", "synflow", "accuracy"}
    for s in d["scorers"].values():
        assert set(s) >= {"kendall_tau", "spearman_rho", "tau_ci95", "pair_agreement"} and len(s["tau_ci95"]) == 2
    assert len(d["archs"]) == 5 + 2 * 3 and len(d["pairs"]) == 3
    assert d["reference"]["budget_x"] == pytest.approx(2.0)          # 400 x 2 vs 200 x 2
    df = pd.read_csv(out / "fidelity.csv")
    rand = df[df["kind"] == "random"]
    for name in ("params", "gmacs", "accuracy"):
        want = tau_b(rand[name].tolist(), rand["reference"].tolist())
        assert d["scorers"][name]["kendall_tau"] == pytest.approx(want, abs=1e-9), name
        lo, hi = d["scorers"][name]["tau_ci95"]
        assert -1 <= lo <= hi <= 1
    by_id = df.set_index("id")
    for name in ("gmacs", "accuracy"):
        got = []
        for p in d["pairs"]:
            ra, rb = by_id.loc[p["a"], "reference"], by_id.loc[p["b"], "reference"]
            if ra == rb:
                continue
            sa, sb = by_id.loc[p["a"], name], by_id.loc[p["b"], name]
            got.append(0.5 if sa == sb else float((sa > sb) == (ra > rb)))
        want = sum(got) / len(got) if got else None
        assert d["scorers"][name]["pair_agreement"] == (pytest.approx(want) if got else None), name
    # controlled pairs: exactly one field of one stage differs (the model-wide sub-sampling aside)
    configs = {a["id"]: a["config"] for a in d["archs"]}
    for p in d["pairs"]:
        a, b = configs[p["a"]]["stages"], configs[p["b"]]["stages"]
        diffs = {(i, k) for i, (sa, sb) in enumerate(zip(a, b)) for k in sa if sa[k] != sb[k]}
        fields = {k for _, k in diffs}
        assert fields <= {p["field"], "window"} and p["field"] in fields, (p, diffs)
        if p["field"] != "subsample":
            assert {i for i, _ in diffs} == {p["stage"]}
    # seed spread of the reference on the seeded architectures
    seeded = [a for a in d["archs"] if len(a["reference_seeds"]) == 2]
    assert len(seeded) == 4 and all(a["reference_spread"] is not None for a in seeded)
    assert (out / "fidelity.html").is_file()
    # seed noise of every seed-dependent scorer, from the per-seed results
    per_seed: dict[str, dict[str, dict[int, float]]] = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        per_seed.setdefault(rec["scorer"], {}).setdefault(rec["arch"], {})[rec["seed"]] = rec["value"]
    seeds_of = {s: {a: v for a, v in per_seed[s].items() if len(v) > 1} for s in per_seed}
    assert {s for s in seeds_of if seeds_of[s]} == {"naswot", "synflow", "accuracy", "reference"}
    want_tau, want_sd = {"params": 1.0, "gmacs": 1.0}, {"params": 0.0, "gmacs": 0.0}
    for s in ("naswot", "synflow", "accuracy", "reference"):
        assert sorted(seeds_of[s]) == ["a000", "a001", "a002", "a003"]
        assert all(len(v) == 2 for v in seeds_of[s].values())
        s0, s1 = [v[0] for v in seeds_of[s].values()], [v[1] for v in seeds_of[s].values()]
        want_tau[s] = None if len(set(s0)) == 1 or len(set(s1)) == 1 else tau_b(s0, s1)
        want_sd[s] = statistics.mean(statistics.stdev(v.values()) for v in seeds_of[s].values())
    ref = d["reference"]
    assert ref["seed_tau"] == (pytest.approx(want_tau["reference"]) if want_tau["reference"] is not None else None)
    assert ref["seed_sd"] == pytest.approx(want_sd["reference"]) == pytest.approx(ref["seed_spread_mean"])
    r_ref = want_tau["reference"]
    for name, s in d["scorers"].items():
        assert s["seed_tau"] == (pytest.approx(want_tau[name]) if want_tau[name] is not None else None), name
        assert s["seed_sd"] == pytest.approx(want_sd[name]), name
        r_s = want_tau[name]
        if r_s is None or r_ref is None or r_s <= 0 or r_ref <= 0 or s["kendall_tau"] is None:
            assert s["kendall_tau_corrected"] is None, name
        else:
            want = max(-1.0, min(1.0, s["kendall_tau"] / math.sqrt(r_s * r_ref)))
            assert s["kendall_tau_corrected"] == pytest.approx(want), name
    span = rand["reference"].max() - rand["reference"].min()
    sep = d["separation"]
    assert sep["reference_span_points"] == pytest.approx(span)
    assert sep["reference_seed_sd"] == pytest.approx(want_sd["reference"])
    verdict = ("unknown" if r_ref is None else "separates" if r_ref >= 0.8 and span >= 5 * want_sd["reference"]
               else "weakly" if r_ref >= 0.5 else "does not separate")
    assert sep["verdict"] == verdict
    printed = " ".join(r.stdout.split())
    assert f"separation: {verdict}" in printed and "seed τ" in printed


def test_summary_seed_noise_and_corrected_tau_on_fixed_results(space_file):
    """Three seeds on four of five random architectures, values fixed by hand: seed tau is the
    mean over the three seed pairs, the corrected tau divides by the root of both reliabilities."""
    space = load_space(space_file)
    plan = draw_plan(space, archs=5, pairs=0, seed=0)
    ids = [a["id"] for a in plan["archs"]]
    seeds = {  # scorer -> seed -> values of a000..a004 (a004: seed 0 only)
        # orders: seeds 0 and 1 alike, seed 2 swaps a001 and a002 -> taus 1, 4/6, 4/6: 7/9
        "reference": [[.50, .60, .70, .80, .90], [.52, .61, .71, .83], [.50, .70, .60, .80]],
        # seed 2 swaps (a000, a001) and (a002, a003) -> taus 1, 2/6, 2/6: 5/9
        "accuracy": [[.30, .40, .50, .60, .20], [.31, .42, .52, .60], [.40, .30, .60, .50]],
        # seed 1 reverses seed 0, seed 2 repeats it -> taus -1, 1, -1: -1/3
        "naswot": [[1., 2., 3., 4., 5.], [4., 3., 2., 1.], [1., 2., 3., 4.]],
        "params": [[1., 2., 3., 5., 4.]],
    }
    results = {Job(ids[i], scorer, seed): {"value": v, "seconds": 0.0}
               for scorer, by_seed in seeds.items() for seed, vals in enumerate(by_seed) for i, v in enumerate(vals)}
    ref = load_space(space_file, ["proxy.train_samples=400"]).proxy
    summary = summarize(plan, results, ["params", "naswot", "accuracy", "reference"], "accuracy", space, ref).to_dict()
    sc, r = summary["scorers"], summary["reference"]
    assert r["seed_tau"] == pytest.approx(7 / 9) and r["seeded_archs"] == 4
    assert sc["accuracy"]["seed_tau"] == pytest.approx(5 / 9)
    assert sc["naswot"]["seed_tau"] == pytest.approx(-1 / 3)
    assert sc["params"]["seed_tau"] == 1.0 and sc["params"]["seed_sd"] == 0.0
    sd_acc = statistics.mean(statistics.stdev(v[i] for v in seeds["accuracy"]) for i in range(4))
    assert sc["accuracy"]["seed_sd"] == pytest.approx(sd_acc)
    # accuracy means order a004 < a000 < a001 < a002 < a003, the reference a000 < ... < a004: 4 of
    # 10 pairs discordant -> tau 0.2; corrected 0.2 / sqrt(5/9 x 7/9) = 1.8 / sqrt(35)
    assert sc["accuracy"]["kendall_tau"] == pytest.approx(0.2)
    assert sc["accuracy"]["kendall_tau_corrected"] == pytest.approx(1.8 / math.sqrt(35))
    # params: only (a003, a004) discordant -> 0.8; reliability 1: 0.8 / sqrt(7/9)
    assert sc["params"]["kendall_tau"] == pytest.approx(0.8)
    assert sc["params"]["kendall_tau_corrected"] == pytest.approx(0.8 / math.sqrt(7 / 9))
    assert math.isnan(sc["naswot"]["kendall_tau_corrected"])          # its reliability is negative
    # SNR: the variance of the four seeded means less a third of the noise, over the noise
    runs = [[v[i] for v in seeds["accuracy"]] for i in range(4)]
    noise = statistics.mean(statistics.variance(r) for r in runs)
    want = (statistics.variance([statistics.mean(r) for r in runs]) - noise / 3) / noise
    assert sc["accuracy"]["seed_snr"] == pytest.approx(max(0.0, want))
    assert r["seed_snr"] is not None and math.isnan(sc["params"]["seed_snr"])
    assert math.isnan(sc["accuracy"]["snr_per_minute"])                # no seconds recorded here
    ref_means = [statistics.mean(v[i] for v in seeds["reference"] if i < len(v)) for i in range(5)]
    sd_ref = statistics.mean(statistics.stdev(v[i] for v in seeds["reference"]) for i in range(4))
    assert summary["separation"] == {"reference_span_points": pytest.approx(max(ref_means) - min(ref_means)),
                                     "reference_seed_sd": pytest.approx(sd_ref), "verdict": "weakly"}  # 7/9 < 0.8


def test_a_killed_run_continues_without_repeating_work(tmp_path, space_file):
    space = load_space(space_file)
    ref = load_space(space_file, ["proxy.train_samples=400"]).proxy
    out = tmp_path / "fid"
    kw = dict(archs=4, pairs=1, seeds=2, seeded=1, png=False)

    def kill_at(n):
        def progress(done, total, what):
            if done == n:
                raise KeyboardInterrupt
        return progress

    with pytest.raises(KeyboardInterrupt):
        run_fidelity(space, ref, out, progress=kill_at(20), **kw)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 20
    partial = json.loads((out / "fidelity.json").read_text())     # the report of what was done
    assert partial["complete"] is False and partial["jobs"]["done"] == 20
    with (out / "results.jsonl").open("a") as f:
        f.write('{"arch": "a000", "scor')                       # a line cut by the kill
    summary = run_fidelity(space, ref, out, **kw)
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.endswith("}")]
    keys = [(r["arch"], r["scorer"], r["seed"]) for r in recs]
    assert len(keys) == len(set(keys))                           # nothing computed twice
    assert recs[:20] == [json.loads(x) for x in lines]            # the first results are kept as they were
    assert summary["complete"]
    # a run written before the zero-cost scores had seeds: only those are computed, the same values
    zero_cost = [r for r in recs if r["scorer"] in ("naswot", "synflow") and r["seed"] > 0]
    assert len(zero_cost) == 2
    kept = [r for r in recs if r not in zero_cost]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    older = run_fidelity(space, ref, out, time_limit=0, **kw)
    assert not older["complete"] and older["jobs"].total - older["jobs"].done == 2
    assert run_fidelity(space, ref, out, **kw)["complete"]
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.endswith("}")]
    assert recs[:len(kept)] == kept
    assert [(r["arch"], r["scorer"], r["seed"], r["value"]) for r in recs[len(kept):]] == \
        [(r["arch"], r["scorer"], r["seed"], r["value"]) for r in zero_cost]
    # another proxy: the draw and the reference are kept, only the proxy's column is recomputed
    other = load_space(space_file, ["proxy.epochs=1"])
    again = run_fidelity(other, ref, out, **kw)
    assert again["complete"]
    recs2 = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.endswith("}")]
    assert {r["scorer"] for r in recs2[len(recs):]} == {"accuracy"}


def test_stop_after_zero_only_writes_the_report_of_what_is_done(tmp_path, space_file):
    out = tmp_path / "fid"
    args = ["fidelity", "--space", str(space_file), "--archs", "3", "--pairs", "0", "--seeds", "1", *REF,
            "--out", str(out), "--no-png", "--threads", "1"]
    r = runner.invoke(app, args + ["--stop-after", "0"])
    assert r.exit_code == 0, r.output
    assert "partial: 0 of 18 scores" in " ".join(r.stdout.split()) and not (out / "results.jsonl").read_text()
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "(complete)" in r.stdout
    assert json.loads((out / "fidelity.json").read_text())["jobs"] == {"done": 18, "total": 18}


def test_other_settings_in_the_same_folder_and_bad_input_are_one_line_errors(tmp_path, space_file):
    out = tmp_path / "fid"
    args = ["fidelity", "--space", str(space_file), "--archs", "3", "--pairs", "0", "--seeds", "1", *REF,
            "--out", str(out), "--no-png", "--threads", "1"]
    assert runner.invoke(app, args).exit_code == 0
    for extra, says in ((["--seed", "1"], "holds a fidelity run with other settings"),
                        (["--reference", "epochs=3"], "the reference changes the proxy only"),
                        (["--set", "proxy.epoch=1"], "proxy.epoch: unknown key")):
        r = runner.invoke(app, args + extra)
        assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output
    fixed = ["--set", "stages.0.window=2", "--set", "stages.0.sr_ratio=1", "--set", "stages.0.pattern=LG",
             "--set", "stages.1.pattern=LG"]          # no window, k, pattern or sub-sampling choice left
    r = runner.invoke(app, ["fidelity", "--space", str(space_file), "--archs", "3", "--pairs", "2", *fixed, *REF,
                            "--out", str(tmp_path / "x"), "--no-png"])
    assert r.exit_code == 2 and "controlled pairs" in r.output


def test_pairs_that_attend_alike_are_never_drawn_nor_counted():
    """On SVT-S at 224 the stage-4 map is 7 x 7: an L block with a 7 x 7 window attends over all
    49 tokens, as a G block with k = 1 does (the same attention); on the 14 x 14 stage-3 map the
    same window is local (4 windows), so there they differ."""
    svt = ArchConfig.preset("twins-svt-s").to_dict()

    def with_stage(i, **kw):
        d = json.loads(json.dumps(svt))
        d["stages"][i].update(kw)
        return ArchConfig.from_dict(d)

    assert (attention_geometry(with_stage(3, pattern="L", window=[7, 7]), 224)
            == attention_geometry(with_stage(3, pattern="G", sr_ratio=1), 224))
    assert (attention_geometry(with_stage(2, pattern="L", window=[7, 7]), 224)
            != attention_geometry(with_stage(2, pattern="G", sr_ratio=1), 224))
    space = load_space(Path(__file__).resolve().parents[2] / "search_spaces" / "svt.yaml")
    plan = draw_plan(space, archs=2, pairs=40, seed=1)
    configs = {a["id"]: ArchConfig.from_dict(a["config"]) for a in plan["archs"]}
    for p in plan["pairs"]:
        assert (attention_geometry(configs[p["a"]], space.resolution)
                != attention_geometry(configs[p["b"]], space.resolution)), p
