"""Table 1: patient characteristics by outcome within a cohort, or across cohorts.

Continuous variables: median [IQR] with the Mann-Whitney U test (two groups) or
Kruskal-Wallis (more), or mean +/- SD with Welch's t-test or one-way ANOVA. Categorical
variables: n (%) with Pearson's chi-square, or Fisher's exact test when an expected count
is below 5. The tests mirror R's defaults: ``wilcox.test`` (exact for n < 50 without ties,
else the normal approximation with continuity correction), ``kruskal.test``,
``t.test`` (Welch), ``oneway.test(var.equal = TRUE)``, ``chisq.test`` (Yates' correction
for 2 x 2 tables), ``fisher.test`` (2 x 2 and larger tables).
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
from scipy import stats


def _p_continuous(groups: list[np.ndarray], summary: str) -> tuple[float, str]:
    groups = [g[~np.isnan(g)] for g in groups]
    groups = [g for g in groups if len(g)]
    if len(groups) < 2:
        return np.nan, ""
    if summary == "median":
        if len(groups) == 2:
            a, b = groups
            ties = len(np.unique(np.concatenate([a, b]))) < len(a) + len(b)
            exact = len(a) < 50 and len(b) < 50 and not ties
            res = stats.mannwhitneyu(a, b, alternative="two-sided", method="exact" if exact else "asymptotic",
                                     use_continuity=True)
            return float(res.pvalue), "Mann-Whitney U"
        return float(stats.kruskal(*groups).pvalue), "Kruskal-Wallis"
    if len(groups) == 2:
        return float(stats.ttest_ind(groups[0], groups[1], equal_var=False).pvalue), "Welch t-test"
    return float(stats.f_oneway(*groups).pvalue), "ANOVA"


def _p_categorical(table: np.ndarray) -> tuple[float, str]:
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return np.nan, ""
    expected = stats.contingency.expected_freq(table)
    if (expected < 5).any():
        if table.shape == (2, 2):
            return float(stats.fisher_exact(table).pvalue), "Fisher exact"
        return _fisher_rxc(table), "Fisher exact"
    res = stats.chi2_contingency(table, correction=table.shape == (2, 2))
    return float(res.pvalue), "chi-square"


def _fisher_rxc(table: np.ndarray) -> float:
    """Fisher's exact test for an r x c table by enumerating tables with the same margins
    (feasible for the small tables where it is needed); P sums tables no more likely than
    the observed one (R's ``fisher.test`` rule, with its relative tolerance 1e-7)."""
    from math import lgamma
    rows, cols = table.sum(axis=1).astype(int), table.sum(axis=0).astype(int)
    n = int(table.sum())
    const = sum(lgamma(r + 1) for r in rows) + sum(lgamma(c + 1) for c in cols) - lgamma(n + 1)

    def logp(t):
        return const - sum(lgamma(v + 1) for v in t.ravel())

    observed = logp(table.astype(int))
    total = 0.0
    r, c = table.shape

    def fill(i, col_left, current):
        nonlocal total
        if i == r - 1:
            t = np.array(current + [col_left])
            lp = logp(t)
            if lp <= observed + 1e-7 * abs(observed) + 1e-12:
                total += np.exp(lp)
            return
        # all ways to split row i's total over columns within what is left
        def rec(j, left, row):
            if j == c - 1:
                if left <= col_left[j]:
                    yield row + [left]
                return
            for v in range(0, min(left, col_left[j]) + 1):
                yield from rec(j + 1, left - v, row + [v])
        for row in rec(0, rows[i], []):
            fill(i + 1, [a - b for a, b in zip(col_left, row)], current + [row])

    fill(0, list(cols), [])
    return float(min(1.0, total))


def table_one(df: pd.DataFrame, by: str, variables: list[str], *, categorical: list[str] | None = None,
              continuous_summary: str = "median", digits: int = 1) -> pd.DataFrame:
    """Characteristics by ``by`` (outcome or cohort): one row per variable (and per level of
    a categorical one), a column per group plus Overall, the P value and the test used."""
    categorical = set(categorical or [v for v in variables if not pd.api.types.is_numeric_dtype(df[v])])
    levels = [g for g in pd.unique(df[by].dropna())]
    levels = sorted(levels, key=cohort_order)
    groups = {str(g): df[df[by] == g] for g in levels}
    header = {str(g): f"{g} (n={len(d)})" for g, d in groups.items()}
    rows = []
    for v in variables:
        if v in categorical:
            cats = sorted(pd.unique(df[v].dropna()), key=str)
            tab = np.array([[np.sum(d[v] == c) for d in groups.values()] for c in cats])
            p, test = _p_categorical(tab)
            rows.append({"variable": v, "level": "", **{header[g]: "" for g in groups}, "Overall": "",
                         "p": p, "test": test})
            for c, counts in zip(cats, tab):
                row = {"variable": "", "level": str(c)}
                for (g, d), k in zip(groups.items(), counts):
                    n = d[v].notna().sum()
                    row[header[g]] = f"{k} ({100 * k / n:.{digits}f}%)" if n else "0"
                tot = int(np.sum(df[v] == c))
                row["Overall"] = f"{tot} ({100 * tot / df[v].notna().sum():.{digits}f}%)"
                row.update(p=np.nan, test="")
                rows.append(row)
        else:
            vals = {g: pd.to_numeric(d[v], errors="coerce").to_numpy(float) for g, d in groups.items()}
            p, test = _p_continuous(list(vals.values()), continuous_summary)
            row = {"variable": v, "level": "median [IQR]" if continuous_summary == "median" else "mean ± SD"}
            for g, x in list(vals.items()) + [("Overall", pd.to_numeric(df[v], errors="coerce").to_numpy(float))]:
                x = x[~np.isnan(x)]
                if continuous_summary == "median":
                    q = np.percentile(x, [50, 25, 75]) if len(x) else [np.nan] * 3
                    txt = f"{q[0]:.{digits}f} [{q[1]:.{digits}f}, {q[2]:.{digits}f}]"
                else:
                    txt = f"{np.mean(x):.{digits}f} ± {np.std(x, ddof=1):.{digits}f}" if len(x) > 1 else ""
                row[header.get(g, g)] = txt
            row.update(p=p, test=test)
            rows.append(row)
    return pd.DataFrame(rows)


def table_one_html(table: pd.DataFrame, caption: str = "Table 1") -> str:
    """Publication-style HTML of :func:`table_one` (P values to 3 decimals, '<0.001')."""
    def fmt_p(p):
        if pd.isna(p):
            return ""
        return "&lt;0.001" if p < 0.001 else f"{p:.3f}"
    cols = [c for c in table.columns if c not in ("p", "test")]
    out = [f'<table class="table1"><caption>{html.escape(caption)}</caption><thead><tr>']
    out += [f"<th>{html.escape(str(c))}</th>" for c in cols] + ["<th>P</th><th>test</th></tr></thead><tbody>"]
    for _, r in table.iterrows():
        cells = "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in cols)
        out.append(f"<tr>{cells}<td>{fmt_p(r['p'])}</td><td>{html.escape(str(r['test']))}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def cohort_order(name: str) -> tuple[int, str]:
    """Sort key: training, internal, test, external*, prospective, then anything else."""
    rank = {"training": 0, "internal": 1, "test": 2, "prospective": 4}
    name = str(name)
    return (3 if name.startswith("external") else rank.get(name, 5), name)


def table_one_by_cohort(df: pd.DataFrame, outcome: str, cohort: str, variables: list[str], *,
                        categorical: list[str] | None = None, continuous_summary: str = "median",
                        digits: int = 1) -> pd.DataFrame:
    """Table 1 by outcome within each cohort, side by side (the seeds' layout): columns are
    (cohort, group), (cohort, Overall) and (cohort, p) for every cohort."""
    parts = {}
    for c in sorted(pd.unique(df[cohort].dropna()), key=cohort_order):
        t = table_one(df[df[cohort] == c], outcome, variables, categorical=categorical,
                      continuous_summary=continuous_summary, digits=digits)
        parts[c] = t.set_index(["variable", "level"]).drop(columns="test")
    return pd.concat(parts, axis=1)
