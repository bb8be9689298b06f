"""Plot the deep-signal benchmark: each recipe's deep signature against its handcrafted reference,
its ceiling and the oracle, as ratios to the oracle on the pooled held-out patients.

Reads a table of measured values (one row per recipe and seed; columns ``recipe, metric, seed,
held_out, deep_80px, deep, handcrafted, ceiling, oracle``), as ``bench/deep_signal.py`` prints them
(``docs/data/signal_300.csv`` holds the 300-patient runs of issue 29), and writes a PNG: bars for
the mean over the seeds that have the value (an empty cell: not measured), a dot per seed.

    python bench/plot_signal.py [--csv docs/data/signal_300.csv] [--out docs/images/bench_signal_300.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERIES = [("deep_80px", "deep, 80 px (before)", "#bdbdbd"), ("deep", "deep (fast, 160 px)", "#1f77b4"),
          ("handcrafted", "handcrafted IBSI", "#ff7f0e"), ("ceiling", "ceiling: latents fit on training", "#2ca02c")]


def plot(csv: Path, out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from gastrorad.io.atomic import atomic_write_bytes

    t = pd.read_csv(csv)
    missing = {"recipe", "seed", "oracle", *(k for k, _, _ in SERIES)} - set(t.columns)
    if missing:
        raise SystemExit(f"{csv}: missing column(s) {sorted(missing)}")
    recipes = list(dict.fromkeys(t.recipe))
    fig, ax = plt.subplots(figsize=(8.5, 3.8), dpi=120)
    width = 0.8 / len(SERIES)
    for j, (col, label, colour) in enumerate(SERIES):
        for i, r in enumerate(recipes):
            rows = t[t.recipe == r]
            ratio = (rows[col] / rows.oracle).to_numpy(float)
            ratio = ratio[~np.isnan(ratio)]  # a value not measured on a seed (empty cell)
            x = i + (j - (len(SERIES) - 1) / 2) * width
            ax.bar(x, ratio.mean() if ratio.size else 0.0, width * 0.95, color=colour, label=label if i == 0 else None)
            ax.scatter(np.full(ratio.size, x), ratio, s=9, color="black", zorder=3)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(range(len(recipes)))
    seeds = [f"{r}\n{len(t[t.recipe == r])} seed(s), {int(t[t.recipe == r].held_out.iloc[0])} held out" for r in recipes]
    ax.set_xticklabels(seeds, fontsize=8)
    ax.set_ylim(0.6, 1.1)
    ax.set_ylabel("ratio to the oracle (AUC or C)")
    ax.set_title("Deep signal at 300 patients: bars = mean over seeds, dots = seeds", fontsize=10)
    ax.legend(fontsize=7, ncol=4, loc="upper left")
    fig.tight_layout()
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=ROOT / "docs" / "data" / "signal_300.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "bench_signal_300.png")
    a = ap.parse_args()
    print(plot(a.csv, a.out))


if __name__ == "__main__":
    main()
