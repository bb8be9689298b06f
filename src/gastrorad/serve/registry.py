"""The bundles a server offers: loaded and hash-checked once at start, each with its card.

A model's id is the study name plus the first 8 hex digits of the SHA-256 of its
``bundle.json``, so two bundles of one study (say, two versions) can be served side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gastrorad.bundle.export import load_bundle, read_bundle_json
from gastrorad.errors import InputError, Problem
from gastrorad.io.hashing import file_hash


@dataclass
class ServedModel:
    id: str
    folder: Path
    info: dict
    fit: dict
    card: dict
    bundle_hash: str
    calculator_models: list[str] = field(default_factory=list)  # scored from clinical values alone

    @property
    def needs_images(self) -> bool:
        return len(self.calculator_models) < len(self.info["models"])

    def summary(self) -> dict:
        """What ``GET /api/v1/models`` shows: identity, inputs and the model card."""
        info = self.info
        nomo = self.fit["models"].get(info.get("nomogram_model") or "", {}).get("nomogram")
        horizons = sorted({float(t) for spec in self.fit["models"].values()
                           for t in spec.get("baseline_survival", {})})
        return {
            "id": self.id, "study": info["study"], "title": self.card.get("title", info["study"]),
            "bundle_sha256": self.bundle_hash, "created": info.get("created"),
            "gastrorad_version": info.get("versions", {}).get("gastrorad"),
            "outcome": info["outcome"], "time_unit": info.get("time_unit"), "horizons": horizons,
            "phases": info["phases"], "signature": info["signature"], "signature_columns": info["signature_columns"],
            "models": {k: {"kind": v["kind"], "cutoff": v["cutoff"], "columns": v["columns"],
                           "needs_image": k not in self.calculator_models} for k, v in info["models"].items()},
            "calculator_models": self.calculator_models, "nomogram_model": info.get("nomogram_model"),
            "nomogram_axes": [a["name"] for a in nomo["axes"]] if nomo else [],
            "clinical": self.clinical_inputs(),
            "card": {k: v for k, v in self.card.items() if k != "clinical"},
            "card_complete": bool(self.card.get("performance")),
            "image_jobs": info["signature"] != "longitudinal",
        }

    def clinical_inputs(self) -> dict:
        """Each clinical variable the models use: its type, allowed levels, training range."""
        enc = self.fit["encoder"]
        out = {}
        for v in self.info["clinical_required"]:
            entry = dict(self.card.get("clinical", {}).get(v, {}))
            if not entry:  # a bundle without a card: levels from the encoder, no range
                if v in enc["categorical"]:
                    groups = enc["groups"].get(v)
                    levels = [x for lv in enc["levels"][v] for x in (groups.get(lv, [lv]) if groups else [lv])]
                    entry = {"type": "categorical", "levels": levels}
                else:
                    entry = {"type": "numeric"}
                entry["impute"] = enc["impute"].get(v)
            out[v] = entry
        return out


def load_models(bundles: list[str | Path]) -> dict[str, ServedModel]:
    """Load and verify every bundle (a changed or unlisted file stops the server before it starts)."""
    models: dict[str, ServedModel] = {}
    problems = []
    for b in bundles:
        try:
            info, _ = load_bundle(b)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        folder = Path(b) if Path(b).is_dir() else Path(b).parent
        folder = folder.resolve()
        digest = file_hash(folder / "bundle.json")
        try:  # a damaged file is one problem naming it, never a traceback at start
            fit = read_bundle_json(folder / "fit.json")
            card = read_bundle_json(folder / "card.json") if "card.json" in info.get("files", {}) else {}
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if not fit.get("models"):
            problems.append(Problem(str(folder / "fit.json"), "this bundle holds no fitted model, so there is "
                                    "nothing to serve (see the run's report for why)"))
            continue
        sig_cols = set(info["signature_columns"])
        calc = [k for k, v in fit["models"].items() if not set(v["columns"]) & sig_cols]
        mid = f"{info['study']}-{digest[:8]}"
        if mid in models:
            problems.append(Problem(str(folder), f"the same bundle is given twice (also {models[mid].folder})"))
            continue
        models[mid] = ServedModel(mid, folder, info, fit, card, digest, calc)
    if problems:
        raise InputError(problems)
    if not models:
        raise InputError(Problem("BUNDLE", "no bundle to serve: give at least one bundle folder"))
    return models
