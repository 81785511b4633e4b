"""Calibrate and check the label-free quality estimate on development scans with known answers.

Every run is a generated scan (its own seeds, 23000+, drawn for this purpose only), segmented
with the shipped model (or Otsu + watershed, for spread), at a particle size near the truth
(a user's rough size: the truth times 0.87-1.15), at 0.5x or 2x of it, or estimated. For
each run the script measures the quality signals with all variants, and the true F1@0.5
(``evaluate_instances``; analysis sits above segmentation, so only this script uses it).
Replicates 0 and 1 of every kind fit the maps; replicates 2 and 3 are held back and only
scored. The script writes the calibration the library loads
(``ps3d_toolkit/segmentation/quality/calibration.json``) and docs/quality.md.

Run: ``nice -n 10 python benchmarks/quality.py`` (about an hour on one shared CPU thread
the first time; per-run results are cached in ``--cache``, so a rerun only refits).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

# kind, preset, mean diameter (voxels), shape, generator overrides, method, size given (x truth or None)
KINDS = [
    ("easy", "easy", 16, (80, 96, 96), {}, "model", 1.0),
    ("medium", "medium", 16, (80, 96, 96), {}, "model", 1.0),
    ("medium-22", "medium", 22, (96, 112, 112), {}, "model", 1.0),
    ("hard", "hard", 16, (80, 96, 96), {}, "model", 1.0),
    ("hard-22", "hard", 22, (96, 112, 112), {}, "model", 1.0),
    ("blur", "medium", 16, (80, 96, 96), {"blur_sigma": 2.6}, "model", 1.0),
    ("noisy", "medium", 16, (80, 96, 96), {"noise": 0.35}, "model", 1.0),
    ("noisy-angular", "hard", 18, (80, 96, 96), {"noise": 0.3, "shape_weights": {"angular": 1}}, "model", 1.0),
    ("tiny", "medium", 9, (64, 64, 64), {}, "model", 1.0),
    ("coarse", "medium", 30, (96, 112, 112), {}, "model", 1.0),
    ("dense", "hard", 18, (80, 96, 96), {"packing": 0.6, "max_overlap": 0.12}, "model", 1.0),
    ("multiphase", "medium", 18, (80, 96, 96), {"n_phases": 4, "multiphase_fraction": 0.5}, "model", 1.0),
    ("rings", "hard", 18, (80, 96, 96), {"ring_strength": 0.12, "cupping": 0.3}, "model", 1.0),
    ("wall", "medium", 18, (80, 96, 96), {"cylinder_radius_fraction": 0.42, "wall_thickness_vox": 4}, "model", 1.0),
    ("low-contrast", "hard", 18, (80, 96, 96), {"contrast": 0.1, "noise": 0.15}, "model", 1.0),
    ("size-2x", "medium", 16, (80, 96, 96), {}, "model", 2.0),
    ("size-0.5x", "medium", 20, (64, 80, 80), {}, "model", 0.5),
    ("no-size", "hard", 16, (80, 96, 96), {}, "model", None),
    ("otsu", "medium", 16, (80, 96, 96), {}, "otsu-watershed", 1.0),
    ("otsu-hard", "hard", 20, (80, 96, 96), {}, "otsu-watershed", 1.0),
    ("otsu-dense", "hard", 18, (80, 96, 96), {"packing": 0.6, "max_overlap": 0.12}, "otsu-watershed", 1.0),
    ("size-0.5x-16", "medium", 16, (64, 80, 80), {}, "model", 0.5),
]
FIT_REPLICATES = (0, 1)
HELD_OUT_REPLICATES = (2, 3)
SEED = 23000
# The particle-map features by how many variants are used; the scan map chooses among SCAN_CANDIDATES.
# Each feature's expected direction (+1: higher is better): a fitted weight against it is dropped,
# so that every map is monotone in every feature it uses.
BASE_PARTICLE = {"solidity": 1, "extra_cores": -1, "volume_oddness": -1, "size_disagreement": -1,
                 "estimate_disagreement": -1}
VARIANT_PARTICLE = {"stable_fraction": 1, "mean_iou": 1, "min_iou": 1}
SCAN_CANDIDATES = {"mean_confidence": 1, "volume_confidence": 1, "confidence_f1": 1, "size_disagreement": -1,
                   "estimate_disagreement": -1, "volume_disagreement": -1, "noise_to_contrast": -1,
                   "merged_share": -1, "mean_solidity": 1, "small_share": -1, "stable_share": 1,
                   "stable_count_share": 1, "mean_iou": 1}
MAX_SCAN_FEATURES = 3
COMMAND = "nice -n 10 python benchmarks/quality.py"


def run_one(kind: tuple, replicate: int, cache: Path, threads: int) -> dict:
    """Segment one development run, measure its signals with every variant, and its truth; cached."""
    name, preset, diameter, shape, overrides, method, factor = kind
    key = f"{name}-r{replicate}"
    path = cache / f"{key}.npz"
    if path.exists():
        return _read(path)
    import torch

    from ps3d_toolkit.analysis.evaluate import evaluate_instances, match_instances
    from ps3d_toolkit.data.synthetic import generate_scan
    from ps3d_toolkit.segmentation import segment
    from ps3d_toolkit.segmentation.quality import measure_signals

    torch.set_num_threads(threads)
    seed = SEED + 100 * [k[0] for k in KINDS].index(name) + replicate
    overrides = dict(overrides)
    wall = overrides.pop("wall_thickness_vox", 0.0)
    scan = generate_scan(shape, diameter, seed=seed, preset=preset, wall_thickness_vox=wall, **overrides)
    rough = float(np.random.default_rng(seed).uniform(0.87, 1.15))
    size = None if factor is None else scan.particle_size_mm * factor * (rough if factor == 1.0 else 1.0)
    start = time.perf_counter()
    labels = segment(scan.image, spacing=scan.spacing, particle_size_mm=size, method=method, progress=False)
    plain = time.perf_counter() - start
    signals = measure_signals(scan.image, labels, spacing=scan.spacing, particle_size_mm=size, method=method)
    truth = evaluate_instances(scan.labels, labels)
    matched = np.isin(signals.ids, match_instances(scan.labels, labels)["pred_label"].to_numpy())
    row = {"run": key, "kind": name, "replicate": replicate, "seed": seed, "method": method,
           "size_factor": factor, "given_over_truth": None if size is None else size / scan.particle_size_mm,
           "f1_50": truth["f1_50"], "f1_75": truth["f1_75"], "n_gt": truth["n_gt"], "n_pred": truth["n_pred"],
           "plain_seconds": plain, "seconds": signals.seconds, "scan": signals.scan, "variants": signals.variants}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, ids=signals.ids, voxels=signals.voxels, solidity=signals.solidity,
                        cores=signals.cores, variant_iou=signals.variant_iou, matched=matched,
                        row=json.dumps(row, default=float))
    print(f"{key:22s} F1 {truth['f1_50']:.3f}  plain {plain:5.1f} s  variants "
          + " ".join(f"{v:.1f}" for k, v in signals.seconds.items() if k.startswith("variant")), flush=True)
    return _read(path)


def _read(path: Path) -> dict:
    data = np.load(path)
    row = json.loads(str(data["row"]))
    row.update({k: data[k] for k in ("ids", "voxels", "solidity", "cores", "variant_iou", "matched")})
    return row


def signals_of(row: dict, n: int):
    """The run's QualitySignals, with its first ``n`` variants."""
    from ps3d_toolkit.segmentation.quality import QualitySignals

    return QualitySignals(ids=row["ids"], voxels=row["voxels"], solidity=row["solidity"], cores=row["cores"],
                          variant_iou=row["variant_iou"][:, :n], variants=tuple(row["variants"][:n]),
                          scan=row["scan"])


def standardised(columns: dict, names: list) -> tuple[np.ndarray, dict, dict]:
    """The design matrix of ``names`` (NaN -> centre), with the centres and scales used."""
    center, scale, out = {}, {}, []
    for name in names:
        x = np.asarray(columns[name], np.float64)
        c = float(np.nanmedian(x)) if np.isfinite(x).any() else 0.0
        s = float(np.nanstd(x)) if np.isfinite(x).any() else 1.0
        center[name], scale[name] = c, s if s > 1e-9 else 1.0
        out.append((np.nan_to_num(x, nan=c) - c) / scale[name])
    return np.stack(out, axis=1), center, scale


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-2) -> tuple[float, np.ndarray]:
    """Weighted L2-penalised logistic regression by Newton's method."""
    a = np.hstack([np.ones((x.shape[0], 1)), x])
    beta = np.zeros(a.shape[1])
    penalty = np.diag([0.0] + [l2 * w.sum()] * x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-a @ beta))
        grad = a.T @ (w * (p - y)) + penalty @ beta
        hess = (a * (w * p * (1 - p))[:, None]).T @ a + penalty
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(beta[0]), beta[1:]


def fit_linear(x: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> tuple[float, np.ndarray]:
    """Ridge least squares (intercept not penalised)."""
    a = np.hstack([np.ones((x.shape[0], 1)), x])
    penalty = np.diag([0.0] + [l2 * len(y)] * x.shape[1])
    beta = np.linalg.solve(a.T @ a + penalty, a.T @ y)
    return float(beta[0]), beta[1:]


def particle_map(rows: list, n: int) -> dict:
    """The logistic map from particle features to the chance of a true match, fitted on ``rows``."""
    from ps3d_toolkit.segmentation.quality import quality_features

    signs = {**BASE_PARTICLE, **(VARIANT_PARTICLE if n else {})}
    names = list(signs)
    cols = {k: [] for k in names}
    y, w = [], []
    for row in rows:
        feats, _ = quality_features(signals_of(row, n))
        for k in names:
            cols[k].append(feats[k])
        y.append(row["matched"].astype(float))
        w.append(np.full(row["ids"].size, 1.0 / max(row["ids"].size, 1)))  # every run counts alike
    cols = {k: np.concatenate(v) for k, v in cols.items()}
    y, w = np.concatenate(y), np.concatenate(w)
    while True:
        x, center, scale = standardised(cols, names)
        intercept, coef = fit_logistic(x, y, w)
        wrong = [k for k, c in zip(names, coef) if c * signs[k] < 0]
        if not wrong:
            break
        names.remove(min(wrong, key=lambda k: coef[names.index(k)] * signs[k]))  # the most contrary first
    return {"link": "logistic", "intercept": intercept, "coef": dict(zip(names, coef.tolist())),
            "center": center, "scale": scale}


def scan_table(rows: list, n: int, pmap: dict) -> dict:
    """Scan features of every row (name -> array), with the particle map's mean confidences."""
    from ps3d_toolkit.segmentation.quality import quality_features

    table = {}
    for row in rows:
        _, feats = quality_features(signals_of(row, n), pmap)
        for k, v in feats.items():
            table.setdefault(k, []).append(v)
    return {k: np.asarray(v, np.float64) for k, v in table.items()}


def scan_map(rows: list, n: int, pmap: dict) -> dict:
    """A clipped linear map from at most MAX_SCAN_FEATURES scan features to F1@0.5, chosen by leave-one-out error."""
    table = scan_table(rows, n, pmap)
    y = np.array([r["f1_50"] for r in rows])
    candidates = [k for k in SCAN_CANDIDATES if k in table]
    chosen: list = []
    best = math.inf
    while len(chosen) < MAX_SCAN_FEATURES:
        trial = {k: _loo_error(table, chosen + [k], y) for k in candidates
                 if k not in chosen and _monotone(table, chosen + [k], y)}
        if not trial:
            break
        name = min(trial, key=trial.get)
        if trial[name] > best - 1e-3:
            break
        chosen.append(name)
        best = trial[name]
    x, center, scale = standardised(table, chosen)
    intercept, coef = fit_linear(x, y)
    return {"link": "identity", "intercept": intercept, "coef": dict(zip(chosen, coef.tolist())),
            "center": center, "scale": scale, "fit_loo_mae": best}


def _monotone(table: dict, names: list, y: np.ndarray) -> bool:
    """Whether every fitted weight has its feature's expected sign."""
    x, _, _ = standardised(table, names)
    _, coef = fit_linear(x, y)
    return all(c * SCAN_CANDIDATES[k] > 0 for k, c in zip(names, coef))


def _loo_error(table: dict, names: list, y: np.ndarray) -> float:
    x, _, _ = standardised(table, names)
    errors = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        intercept, coef = fit_linear(x[keep], y[keep])
        errors.append(abs(np.clip(intercept + x[i] @ coef, 0, 1) - y[i]))
    return float(np.mean(errors))


def evaluate(rows: list, n: int, maps: dict) -> dict:
    """Estimated against true F1@0.5 on ``rows`` with the fitted maps; the particle confidences' AUC."""
    from scipy.stats import spearmanr

    from ps3d_toolkit.segmentation.quality.calibration import apply_map

    table = scan_table(rows, n, maps["particle"])
    estimate = apply_map(maps["scan"], table)
    truth = np.array([r["f1_50"] for r in rows])
    from ps3d_toolkit.segmentation.quality import quality_features

    scores, labels = [], []
    for row in rows:
        feats, _ = quality_features(signals_of(row, n))
        scores.append(apply_map(maps["particle"], feats))
        labels.append(row["matched"])
    return {"estimate": estimate, "truth": truth, "spearman": float(spearmanr(estimate, truth).statistic),
            "mae": float(np.mean(np.abs(estimate - truth))),
            "particle_auc": _auc(np.concatenate(scores), np.concatenate(labels))}


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)) if n_pos and n_neg else math.nan


def cost(rows: list, n: int) -> float:
    """Median over runs of (plain run + signals + first n variants) / plain run."""
    ratios = []
    for r in rows:
        extra = r["seconds"].get("signals", 0.0) + sum(r["seconds"].get(f"variant {k + 1}/{len(r['variants'])}", 0.0)
                                                       for k in range(n))
        ratios.append((r["plain_seconds"] + extra) / r["plain_seconds"])
    return float(np.median(ratios))


def timing(cache: Path, threads: int, repeats: int = 2) -> list:
    """Seconds of the plain run, the signals and every variant on TIMING_KINDS: the least of ``repeats``, cached.

    The fitting runs are timed once each on a machine shared with other work; these
    repeated timings are the cost table's source.
    """
    path = cache / "timing.json"
    if path.exists():
        return json.loads(path.read_text())
    import torch

    from ps3d_toolkit.data.synthetic import generate_scan
    from ps3d_toolkit.segmentation import segment
    from ps3d_toolkit.segmentation.quality import measure_signals

    torch.set_num_threads(threads)
    out = []
    for name in TIMING_KINDS:
        kind = next(k for k in KINDS if k[0] == name)
        _, preset, diameter, shape, overrides, method, _ = kind
        scan = generate_scan(shape, diameter, seed=SEED + 100 * KINDS.index(kind) + 2, preset=preset, **overrides)
        plain, parts = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            labels = segment(scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm,
                             method=method, progress=False)
            plain.append(time.perf_counter() - start)
            parts.append(measure_signals(scan.image, labels, spacing=scan.spacing,
                                         particle_size_mm=scan.particle_size_mm, method=method).seconds)
        out.append({"kind": name, "plain": min(plain), **{k: min(p[k] for p in parts) for k in parts[0]}})
        print(f"timing {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in out[-1].items() if k != "kind"), flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out


TIMING_KINDS = ("medium", "hard-22", "tiny", "coarse", "noisy-angular")


def timed_cost(timings: list, n: int) -> float:
    """Median over the timed scans of (plain + signals + first n variants) / plain."""
    ratios = [(t["plain"] + t["signals"] + sum(t[f"variant {k + 1}/4"] for k in range(n))) / t["plain"]
              for t in timings]
    return float(np.median(ratios))


def fit_all(fit: list, held: list, everything: list, timings: list) -> dict:
    """For 0..4 variants: the maps fitted on ``fit``, their error on ``held`` and their cost."""
    from ps3d_toolkit.segmentation.quality import VARIANTS

    out = {}
    for n in range(len(VARIANTS) + 1):
        pmap = particle_map(fit, n)
        maps = {"particle": pmap, "scan": scan_map(fit, n, pmap)}
        out[n] = {"maps": maps, "held_out": evaluate(held, n, maps), "fit": evaluate(fit, n, maps),
                  "cost": timed_cost(timings, n),
                  "cost_all_runs": cost(everything, n)}
    return out


def choose_default(results: dict, max_cost: float, tolerance: float = 0.005) -> int:
    """The default number of variants, chosen on the fitting runs only, within the cost.

    Among the affordable numbers whose scan estimate's leave-one-out error is within
    ``tolerance`` of the best of them, the one whose particle confidences separate true
    from false particles best (AUC on the fitting runs).
    """
    affordable = [n for n, r in results.items() if r["cost"] <= max_cost] or [0]
    best = min(results[n]["maps"]["scan"]["fit_loo_mae"] for n in affordable)
    close = [n for n in affordable if results[n]["maps"]["scan"]["fit_loo_mae"] <= best + tolerance]
    return max(close, key=lambda n: results[n]["fit"]["particle_auc"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(ROOT / "runs" / "quality_cache"), help="per-run results")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-cost", type=float, default=2.25,
                        help="largest median cost x the plain run (the goal: about 2x)")
    parser.add_argument("--calibration", default=str(ROOT / "ps3d_toolkit" / "segmentation" / "quality"
                                                    / "calibration.json"))
    parser.add_argument("--output", default=str(ROOT / "docs" / "quality.md"))
    parser.add_argument("--held-out", type=int, nargs="+", default=list(HELD_OUT_REPLICATES),
                        help="replicates held back (any of %s)" % (HELD_OUT_REPLICATES,))
    args = parser.parse_args(argv)

    cache = Path(args.cache)
    held_out = [r for r in HELD_OUT_REPLICATES if r in args.held_out]
    rows = [run_one(kind, r, cache, args.threads) for r in FIT_REPLICATES + tuple(held_out) for kind in KINDS]
    fit = [r for r in rows if r["replicate"] in FIT_REPLICATES]
    held = [r for r in rows if r["replicate"] in held_out]
    timings = timing(cache, args.threads)
    results = fit_all(fit, held, rows, timings)
    default = choose_default(results, args.max_cost)
    write_calibration(Path(args.calibration), results, default, fit, held)
    Path(args.output).write_text(report(results, default, fit, held, args))
    for n, r in results.items():
        h = r["held_out"]
        print(f"{n} variants: held-out Spearman {h['spearman']:.3f}, MAE {h['mae']:.3f}, particle AUC "
              f"{h['particle_auc']:.3f}, cost {r['cost']:.2f}x, scan features {list(r['maps']['scan']['coef'])}")
    print(f"default: {default} variant(s); wrote {args.calibration} and {args.output}")
    return 0


def write_calibration(path: Path, results: dict, default: int, fit: list, held: list) -> None:
    """The calibration JSON the library loads."""
    from ps3d_toolkit.segmentation.quality import VARIANTS

    maps = {str(n): {"particle": r["maps"]["particle"],
                     "scan": {k: v for k, v in r["maps"]["scan"].items() if k != "fit_loo_mae"}}
            for n, r in results.items()}
    doc = {"command": COMMAND, "produced": time.strftime("%Y-%m-%d"), "default_variants": default,
           "variants": [v.name for v in VARIANTS],
           "fitted_on": {"runs": len(fit), "seeds": sorted({r["seed"] for r in fit})},
           "held_out": {str(n): {"runs": len(held), "spearman": round(r["held_out"]["spearman"], 4),
                                 "mae": round(r["held_out"]["mae"], 4), "cost_x_plain": round(r["cost"], 2)}
                        for n, r in results.items()},
           "maps": maps}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def _rank_of_wrong_sizes(h: dict, held: list, key: str = "estimate") -> str:
    """Ranks (1 = lowest) of the wrong-size runs among the held-out runs, by estimate or by truth."""
    order = np.argsort(np.argsort(h[key], kind="stable"))
    ranks = sorted(int(order[i]) + 1 for i, r in enumerate(held) if r["size_factor"] in (0.5, 2.0))
    return f"{', '.join(map(str, ranks))} of {len(held)}"


def _size_warned(rows: list) -> str:
    """How many wrong-size runs, and how many right-size runs, the size warning fires on."""
    from ps3d_toolkit.segmentation.quality.estimate import SIZE_WARN_RATIO

    def warned(r):
        return not 1 / SIZE_WARN_RATIO <= r["scan"]["found_over_given"] <= SIZE_WARN_RATIO

    wrong = [warned(r) for r in rows if r["size_factor"] in (0.5, 2.0)]
    right = [warned(r) for r in rows if r["size_factor"] not in (0.5, 2.0)]
    return f"{sum(wrong)} of {len(wrong)} wrong-size runs, {sum(right)} of {len(right)} others"


def _worst_kinds(h: dict, held: list, count: int = 4) -> str:
    """The kinds with the largest mean error, with the sign of their mean error."""
    kinds = {}
    for r, e, t in zip(held, h["estimate"], h["truth"]):
        kinds.setdefault(r["kind"], []).append(e - t)
    worst = sorted(kinds.items(), key=lambda kv: -np.mean(np.abs(kv[1])))[:count]
    return "; ".join(f"{k} (estimated {'low' if np.mean(v) < 0 else 'high'} by {np.mean(np.abs(v)):.2f})"
                     for k, v in worst)


def _kind_rows(h: dict, held: list) -> list:
    lines = []
    for kind in KINDS:
        idx = [i for i, r in enumerate(held) if r["kind"] == kind[0]]
        if not idx:
            continue
        t, e = h["truth"][idx], h["estimate"][idx]
        size = "estimated" if kind[6] is None else f"{kind[6]:g}x" + (" (rough)" if kind[6] == 1.0 else "")
        lines.append(f"| {kind[0]} | {kind[5]} | {size} | {len(idx)} | {t.mean():.3f} | {e.mean():.3f} | "
                     f"{np.abs(t - e).mean():.3f} |")
    return lines


def report(results: dict, default: int, fit: list, held: list, args) -> str:
    """docs/quality.md: how the estimate works, what it cannot see, and the measured tables."""
    from ps3d_toolkit.segmentation.quality import VARIANTS
    from _machine import cpu_model

    h = results[default]["held_out"]
    maps = results[default]["maps"]
    variant_lines = [f"| {n} | {('+ ' + VARIANTS[n - 1].name) if n else '(none)'} | "
                     f"{r['held_out']['spearman']:.3f} | {r['held_out']['mae']:.3f} | "
                     f"{r['maps']['scan']['fit_loo_mae']:.3f} | {r['held_out']['particle_auc']:.3f} | "
                     f"{r['cost']:.2f}x | {r['cost_all_runs']:.2f}x | {', '.join(r['maps']['scan']['coef'])} |"
                     for n, r in results.items()]
    run_lines = [f"| {r['run']} | {r['method']} | {r['f1_50']:.3f} | {e:.3f} | {r['n_pred']} / {r['n_gt']} |"
                 for r, e in sorted(zip(held, h["estimate"]), key=lambda p: p[0]["f1_50"])]
    scan_coef = " ".join(f"{v:+.3f} z(`{k}`)" for k, v in maps["scan"]["coef"].items())
    part_coef = " ".join(f"{v:+.2f} z(`{k}`)" for k, v in maps["particle"]["coef"].items())
    lines = [
        "# How far to trust a segmentation without labels",
        "",
        "`estimate_quality(image, labels, spacing=..., particle_size_mm=..., method=...)` "
        "(`ps3d_toolkit.segmentation.quality`) gives every particle a `confidence` (0-1: the estimated chance "
        "that it matches a true grain at IoU >= 0.5) and the scan an `estimated_f1` (its instance F1@0.5 "
        "against the unknown truth), with the signals it is made of and warnings in words "
        "(`QualityReport.record()` is the JSON for a labels' `.ps3d.json`).",
        "",
        "```python",
        "from ps3d_toolkit.segmentation import segment",
        "from ps3d_toolkit.segmentation.quality import estimate_quality",
        "",
        "labels = segment(image, spacing=0.01, particle_size_mm=0.2)",
        "quality = estimate_quality(image, labels, spacing=0.01, particle_size_mm=0.2)",
        "quality.estimated_f1          # e.g. 0.93",
        "quality.confidence            # pandas Series, index = label id",
        "quality.warnings              # e.g. ['the particle size looks wrong: ...']",
        "quality.record()              # JSON-ready: estimated_f1, signals, variants, warnings, calibration",
        "```",
        "",
        "The variants are segmented with the same method and options as the labels (pass them: "
        "`method=`, `grains=`, `mask=` as an array, `weights=`, ...); `variants=0..4` trades time for "
        "accuracy (table below). It needs the scan and its labels in memory; for a scan segmented in "
        "blocks, one way (not measured here) is to estimate on a box of it and its labels.",
        "",
        "## How it works",
        "",
        "- **Stability under what a rescan would change** (the one-scan stand-in for Biomedisa's matched "
        "rescans): the scan is segmented again, with the same method and settings, under variants that each "
        "mix several changes: a 90-degree turn and flips (mapped back exactly), a half-voxel shift, "
        "Gaussian noise at 0.5-1x the scan's own noise level (the MAD of neighbour differences), and a "
        "particle size 0.93-1.1x the given one (the network grid resampled). Every particle's best IoU in "
        "every variant gives `stable_fraction` (share of variants with IoU >= 0.5), `mean_iou` and `min_iou`.",
        "- **Shape cues of merged grains:** solidity (voxels over convex-hull volume) and the number of "
        "separate deep cores (connected parts deeper than 0.6x the particle's largest depth).",
        "- **A particle size that disagrees with the grains found:** the median equivalent diameter of the "
        "particles found over the given size (`size_disagreement` = |log ratio|), and the scan's own "
        "distance-map estimate on the Otsu mask over the given size (`estimate_disagreement`). When the "
        f"grains found are outside {1 / 1.45:.2f}-1.45x the given size, the report warns that the particle "
        "size looks wrong.",
        "- **Agreement with the Otsu grain mask:** labelled voxels over grain-mask voxels "
        "(`volume_disagreement`), and the scan's noise over its grain contrast.",
        "- **Calibration:** a logistic map from particle signals to the chance of a true match (fitted on "
        "every particle of the fitting runs, each run weighted alike), then a clipped linear map from at "
        f"most {MAX_SCAN_FEATURES} scan features (chosen greedily by leave-one-out error on the fitting runs) "
        "to F1@0.5. One pair of maps per number of variants (0-4), so a caller may trade time for accuracy "
        "(`variants=`).",
        "- The network's core and border probability margins are not used: `segment()` does not hand its "
        "probabilities out, and a second network pass only for them would cost a whole plain run. Once the "
        "block engine exposes them they can join as one more particle signal (the calibration is refitted "
        "by rerunning this benchmark).",
        "",
        "## What it cannot see",
        "",
        "- **Errors that every variant repeats.** A scan where every grain is merged (or split) the same "
        "way every time is stable: only the shape cues (solidity, several cores) and the size cues speak "
        "against it. Grains so blurred together that no variant separates them read as fine when they "
        "are also convex.",
        "- **Boundary accuracy.** It estimates F1 at IoU 0.5; a particle found with a loose outline "
        "(IoU 0.6) counts as right.",
        "- **Kinds of scan unlike the development scans.** The maps were fitted on this project's own "
        "generated phantoms (kinds below). A real scan with artefacts none of them has may be misjudged; "
        "the error stated here is on held-back phantoms of the same kinds.",
        "- Grains missed altogether where the Otsu mask misses them too (e.g. a phase as dark as the epoxy).",
        "",
        "## Measured",
        "",
        f"Command: `{COMMAND}` ({time.strftime('%Y-%m-%d')}; {cpu_model('unknown CPU')}, "
        f"{args.threads} thread, a machine shared with other work). "
        f"{len(KINDS)} kinds of run, one seed per replicate (23000 + 100 x kind + replicate, drawn for this "
        "purpose only): "
        f"replicates {FIT_REPLICATES} fit the maps ({len(fit)} runs), replicates {tuple(args.held_out)} are held "
        f"back ({len(held)} runs) and only scored. The size given is the truth times a rough factor "
        "(0.87-1.15, a user's guess), or 0.5x / 2x of it, or left to the model's estimate.",
        "",
        f"**Held out, default ({default} variant(s)):** Spearman {h['spearman']:.3f} between estimated and "
        f"true F1@0.5 (goal >= 0.8), mean absolute error {h['mae']:.3f} (goal <= 0.05); the wrong-size runs "
        f"(0.5x, 2x) rank {_rank_of_wrong_sizes(h, held)} from the lowest estimate (by their true F1: "
        f"{_rank_of_wrong_sizes(h, held, 'truth')}); the warning that the particle size looks wrong "
        f"fires on {_size_warned(held)}; particle confidences "
        f"separate true from false particles with AUC {h['particle_auc']:.3f}.",
        "",
        "### Variants: error against cost",
        "",
        "Cost: (plain run + signals + variants) / plain run, one CPU thread, the model given the size: "
        f"the median over {', '.join(TIMING_KINDS)} (replicate 2) of the least of 2 timings each, and "
        "beside it the median over every run of its single timing (Otsu + watershed runs included, "
        "whose signals cost more than their plain run). "
        f"The default, chosen on the fitting runs only: among the numbers of variants costing at most "
        f"{args.max_cost:g}x whose leave-one-out error is within 0.005 of the best of them, the one whose "
        "particle confidences separate true from false particles best.",
        "",
        "| variants | which | held-out Spearman | held-out MAE | fit LOO MAE | particle AUC | cost (timed) "
        "| cost (all runs) | scan features |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
        *variant_lines,
        "",
        "Each variant costs about one plain run: the first asks for a 1.1x size (a smaller network grid), "
        "which saves time only where the grid then needs fewer windows.",
        "",
        f"The default's maps (z: a feature standardised with the fitting runs' median and standard "
        f"deviation): estimated F1 = clip({maps['scan']['intercept']:.3f} {scan_coef}, 0, 1); particle "
        f"confidence = logistic({maps['particle']['intercept']:.2f} {part_coef}).",
        "",
        "### Held out, by kind (default variants)",
        "",
        f"Largest errors by kind: {_worst_kinds(h, held)}.",
        "",
        "| kind | method | size given | runs | true F1@0.5 | estimated | mean abs error |",
        "|---|---|---|---:|---:|---:|---:|",
        *_kind_rows(h, held),
        "",
        "### Every held-out run (default variants), worst first",
        "",
        "| run | method | true F1@0.5 | estimated | particles found / true |",
        "|---|---|---:|---:|---|",
        *run_lines,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
