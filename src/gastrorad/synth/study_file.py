"""The study file written next to a synthetic cohort, with each seed's preprocessing."""

from __future__ import annotations

import yaml

_CLINICAL = {
    "s1": (["age", "bmi", "sex", "differentiation", "cea", "ca199", "location", "ct", "cn"],
           ["sex", "differentiation", "location", "ct", "cn"]),
    "s2": (["age", "sex", "bmi", "differentiation", "cea", "ca199", "location", "ct", "cn", "chemotherapy"],
           ["sex", "differentiation", "location", "ct", "cn"]),
    "s3": (["age", "sex", "her2", "line_of_therapy"], ["sex", "her2"]),
    "s4": (["age", "sex", "bmi", "cea", "ca199", "ct", "cn"], ["sex", "ct", "cn"]),
    "s5": (["age", "sex", "ki67", "m_stage", "diameter_mm", "grade"], ["sex", "m_stage", "grade"]),
}


def synthetic_study_config(kind: str, *, seed: int = 0) -> dict:
    """The study file (as a mapping) that reads a synthetic cohort of ``kind`` as its seed paper would.

    Cohorts with whole-tumour masks (``synth --roi volume``, S1 and S5) use the same file: the
    handcrafted radiomics follow the masks (3D over a whole-tumour mask, 2D on one slice) and the
    deep patches still follow the paper (the mask's largest slice)."""
    abdomen = {"level": 50, "width": 350}
    cfg: dict = {
        "name": f"synthetic_{kind}",
        "seed": seed,
        "data": {"manifest": "manifest.csv", "clinical": "clinical.csv", "truth": "truth.csv"},
        "clinical": {"variables": _CLINICAL[kind][0], "categorical": _CLINICAL[kind][1]},
        "output": "run",
    }
    if kind == "s1":  # Zhang 2022: 1 mm, [-350, 450], 11 slices + mask, z-score
        cfg["outcome"] = {"kind": "binary", "label": "label"}
        cfg["cohorts"] = {"split": {"centers": ["A"], "ratio": {"training": 7, "internal": 3}},
                          "external": {"B": "external1", "C": "external2"}}
        cfg["preprocess"] = {"phases": ["venous"], "spacing": [1.0, 1.0, 1.0], "window": {"low": -350, "high": 450},
                             "normalize": "zscore",
                             "patch": {"mode": "stack25d", "size": [224, 224], "context_slices": 5, "mask_channel": True}}
    elif kind == "s2":  # Cao 2024: 1 mm, [-115, 235], VOI slices padded square -> 112, [-1, 1]
        cfg["outcome"] = {"kind": "binary", "label": "label",
                          "extra_survival": [{"time": "os_time", "event": "os_event", "name": "os"}]}
        cfg["cohorts"] = {"split": {"centers": ["A"], "ratio": {"training": 7, "internal": 3}},
                          "external": {"B": "external"}}
        cfg["preprocess"] = {"phases": ["venous"], "spacing": [1.0, 1.0, 1.0], "window": {"low": -115, "high": 235},
                             "normalize": "minus_one_one",
                             "patch": {"mode": "volume3d", "as_slices": True, "size": [112, 112], "margin_mm": 2.0}}
    elif kind == "s3":  # He 2024: 1.5x box, square, 224, windows by site, 3 adjacent slices
        cfg["outcome"] = {"kind": "survival", "time": "time", "event": "event"}
        cfg["cohorts"] = {"split": {"centers": ["A"], "ratio": {"training": 2, "internal": 1}},
                          "external": {"B": "external"},
                          "prospective": {"column": "enrolled", "after": "2022-01-01"}}
        cfg["preprocess"] = {"phases": ["venous"], "spacing": None, "window": abdomen,
                             "windows_by_site": {"lung": {"level": -400, "width": 1500}, "stomach": abdomen,
                                                 "lymph_node": abdomen, "liver": abdomen},
                             "normalize": "zero_one",
                             "patch": {"mode": "bbox", "size": [224, 224], "box_scale": 1.5, "context_slices": 1}}
    elif kind == "s4":  # Han 2025: slices of the region, [-215, 285], resize 256 (crop 224 at training)
        cfg["outcome"] = {"kind": "binary", "label": "label"}
        cfg["cohorts"] = {"split": {"centers": ["A"], "ratio": {"training": 8, "test": 2}}}
        cfg["preprocess"] = {"phases": ["venous"], "spacing": None, "window": {"low": -215, "high": 285},
                             "normalize": "zero_one", "patch": {"mode": "slices", "size": [256, 256]}}
    elif kind == "s5":  # Yang 2023: arterial + venous, 1 mm B-spline, 224 mm square on the max slice
        cfg["outcome"] = {"kind": "survival", "time": "time", "event": "event"}
        cfg["cohorts"] = {"split": {"centers": ["A"], "ratio": {"training": 7, "internal": 3}},
                          "external": {"B": "external"}}
        cfg["preprocess"] = {"phases": ["arterial", "venous"], "spacing": [1.0, 1.0, 1.0], "interpolation": "bspline",
                             "window": {"level": 40, "width": 400}, "normalize": "zscore",
                             "patch": {"mode": "slice2d", "size": [224, 224], "side_mm": 224.0}}
    else:
        raise ValueError(f"unknown synthetic kind '{kind}'")
    return cfg


def synthetic_study_yaml(kind: str, *, seed: int = 0, roi: str | None = None) -> str:
    header = (f"# Study file written by `gastrorad synth --kind {kind}"
              + (f" --roi {roi}" if roi == "volume" and kind in ("s1", "s5") else "")
              + "`; paths are relative to this folder.\n"
              "# truth.csv holds the planted risk: it is read only to report the oracle, never to fit.\n")
    return header + yaml.safe_dump(synthetic_study_config(kind, seed=seed), sort_keys=False)
