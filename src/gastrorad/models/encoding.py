"""Clinical encoding fitted on the training cohort only and applied unchanged to the others.

- categorical variables -> 0/1 indicators, one per level except the reference (default:
  the first level in sorted order, as R's factor; or a stated level); column names as R's
  model matrix (``sexmale``);
- ordinal variables -> integer scores from a stated level order (e.g. T2 < T3 < T4a < T4b);
- grouping of levels before encoding (e.g. ``{"T2+3": ["T2", "T3"], "T4": ["T4a", "T4b"]}``);
- missing values: ``drop`` the patient, or impute with the training median (numeric) and
  mode (categorical); the values used are kept and reported.

A level not seen in training, in any cohort, is an error naming the row and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gastrorad.errors import InputError, Problem


@dataclass
class ClinicalEncoder:
    variables: list[str]
    categorical: list[str] = field(default_factory=list)
    ordinal: dict[str, list] = field(default_factory=dict)
    groups: dict[str, dict[str, list]] = field(default_factory=dict)
    reference: dict[str, str] = field(default_factory=dict)
    missing: str = "impute"  # or "drop"
    # fitted on training
    levels_: dict[str, list] = field(default_factory=dict)
    impute_: dict[str, object] = field(default_factory=dict)
    terms_: dict[str, list[str]] = field(default_factory=dict)

    def _grouped(self, df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        for var, mapping in self.groups.items():
            lookup = {old: new for new, olds in mapping.items() for old in olds}
            out[var] = out[var].map(lambda v: lookup.get(v, v) if pd.notna(v) else v)
        return out

    def fit(self, train: pd.DataFrame) -> "ClinicalEncoder":
        df = self._grouped(train)
        for v in self.variables:
            if v not in df.columns:
                raise InputError(Problem("clinical table", "unknown column named by the encoder", column=v))
        for v in self.variables:
            col = df[v]
            if v in self.categorical:
                levels = sorted(pd.unique(col.dropna()), key=str)
                ref = self.reference.get(v, levels[0] if levels else None)
                if ref not in levels:
                    raise InputError(Problem("clinical table", f"reference level '{ref}' not found in training", column=v))
                self.levels_[v] = [ref] + [lv for lv in levels if lv != ref]
                self.terms_[v] = [f"{v}{lv}" for lv in self.levels_[v][1:]]
                self.impute_[v] = col.mode().iloc[0] if col.notna().any() else ref
            elif v in self.ordinal:
                self.terms_[v] = [v]
                codes = col.map({lv: i for i, lv in enumerate(self.ordinal[v])})
                self.impute_[v] = float(np.median(codes.dropna())) if codes.notna().any() else 0.0
            else:
                self.terms_[v] = [v]
                num = pd.to_numeric(col, errors="coerce")
                self.impute_[v] = float(num.median())
        return self

    def transform(self, df: pd.DataFrame, source: str = "clinical table") -> pd.DataFrame:
        """Design columns (one per indicator/score) indexed like ``df``; dropped rows removed
        when ``missing == "drop"``."""
        if self.variables and not self.terms_:
            raise RuntimeError("fit the encoder on the training cohort first")
        data = self._grouped(df)
        problems, out = [], {}
        keep = pd.Series(True, index=df.index)
        for v in self.variables:
            col = data[v]
            if self.missing == "drop":
                keep &= col.notna()
            else:
                col = col.fillna(self.impute_[v])
            if v in self.categorical:
                unseen = col.notna() & ~col.isin(self.levels_[v])
                for i in np.flatnonzero(unseen.to_numpy()):
                    problems.append(Problem(source, f"level '{col.iloc[i]}' was not seen in the training cohort",
                                            row=int(i) + 2, column=v))
                for lv, name in zip(self.levels_[v][1:], self.terms_[v]):
                    out[name] = (col == lv).astype(float)
            elif v in self.ordinal:
                codes = col.map({lv: i for i, lv in enumerate(self.ordinal[v])})
                bad = col.notna() & codes.isna()
                for i in np.flatnonzero(bad.to_numpy()):
                    problems.append(Problem(source, f"'{col.iloc[i]}' is not one of {self.ordinal[v]}", row=int(i) + 2,
                                            column=v))
                out[v] = codes.astype(float)
            else:
                num = pd.to_numeric(col, errors="coerce")
                bad = col.notna() & ~np.isfinite(num.astype(float))
                for i in np.flatnonzero(bad.to_numpy()):
                    problems.append(Problem(source, f"'{col.iloc[i]}' is not a number (a continuous variable; give "
                                            "a number with '.' as the decimal point, or leave the cell empty if "
                                            "unknown)", row=int(i) + 2, column=v))
                out[v] = num
        if problems:
            raise InputError(problems)
        return pd.DataFrame(out, index=df.index, columns=list(out))[keep]  # no variables: no columns (image-only)

    def to_dict(self) -> dict:
        """The fitted state as plain JSON types (for the model bundle)."""
        def plain(v):
            return v.item() if isinstance(v, np.generic) else v
        return {"variables": list(self.variables), "categorical": list(self.categorical),
                "ordinal": {k: [plain(x) for x in v] for k, v in self.ordinal.items()},
                "groups": self.groups, "reference": self.reference, "missing": self.missing,
                "levels": {k: [plain(x) for x in v] for k, v in self.levels_.items()},
                "impute": {k: plain(v) for k, v in self.impute_.items()}, "terms": self.terms_}

    @classmethod
    def from_dict(cls, d: dict) -> "ClinicalEncoder":
        enc = cls(d["variables"], categorical=d["categorical"], ordinal=d["ordinal"], groups=d["groups"],
                  reference=d["reference"], missing=d["missing"])
        enc.levels_, enc.impute_, enc.terms_ = dict(d["levels"]), dict(d["impute"]), dict(d["terms"])
        return enc

    def report(self) -> pd.DataFrame:
        """What was fitted: reference levels, ordinal orders, imputation values."""
        rows = []
        for v in self.variables:
            rows.append({"variable": v, "type": "categorical" if v in self.categorical else
                         ("ordinal" if v in self.ordinal else "numeric"),
                         "reference": self.levels_.get(v, [None])[0] if v in self.categorical else "",
                         "columns": ", ".join(self.terms_[v]), "missing_policy": self.missing,
                         "impute_value": self.impute_.get(v) if self.missing == "impute" else ""})
        return pd.DataFrame(rows)
