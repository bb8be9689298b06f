"""S3's two-level attention framework: masks, temporal position, a planted temporal signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from gastrorad.dl.longitudinal.model import MarkerEmbedding, TwoLevelSurvivalModel


def _model(dim=16, max_t=4):
    return TwoLevelSurvivalModel(MarkerEmbedding(2, dim), dim, dim=dim, heads=2, layers=1, max_timepoints=max_t,
                                 dropout=0.0).eval()


def test_masked_items_do_not_change_the_output_and_attention_sums_to_one():
    torch.manual_seed(0)
    net = _model()
    x = torch.randn(3, 2, 4, 2)
    mask = torch.ones(3, 2, 4, dtype=torch.bool)
    mask[0, 1] = False          # patient 0: second object missing entirely
    mask[1, :, 2:] = False      # patient 1: only baseline and first follow-up
    out = net({"x": x, "mask": mask})
    x2 = x.clone()
    x2[~mask] = 1e3             # garbage where nothing was observed
    np.testing.assert_allclose(net({"x": x2, "mask": mask}).detach(), out.detach(), atol=1e-5)
    att = net.last_attention
    np.testing.assert_allclose(att["object"].sum(1), 1.0, atol=1e-5)
    assert float(att["object"][0, 1]) == 0.0
    assert torch.all(att["time"][1, :, 2:] == 0)
    np.testing.assert_allclose(att["time"][1].sum(-1), 1.0, atol=1e-5)


def test_temporal_position_matters():
    """The same values in another order give another output (the temporal embedding is used)."""
    torch.manual_seed(1)
    net = _model()
    x = torch.randn(1, 1, 4, 2)
    mask = torch.ones(1, 1, 4, dtype=torch.bool)
    rev = x.flip(2)
    assert not torch.allclose(net({"x": x, "mask": mask}), net({"x": rev, "mask": mask}))


@pytest.mark.slow
def test_tdlm_learns_a_planted_marker_trend(tmp_path):
    """Risk planted in the change of a marker between baseline and follow-up (not its level):
    TDLM trained on the training cohort ranks the held-out patients (C > 0.75)."""
    import yaml

    from gastrorad.config import load_study
    from gastrorad.dl.longitudinal.train import apply_two_level, train_two_level
    from gastrorad.stats.survival import harrell_c
    rng = np.random.default_rng(0)
    n = 240
    base = rng.normal(2.0, 0.6, n)
    trend = rng.normal(0, 1, n)                      # the planted signal
    rows = {"patient_id": [f"P{i:03d}" for i in range(n)], "center": np.where(np.arange(n) < 200, "A", "B")}
    for t in range(3):
        vals = np.exp(base + 0.5 * trend * t + rng.normal(0, 0.05, n))
        if t == 2:
            vals[rng.uniform(size=n) < 0.3] = np.nan  # missing second follow-up
        rows[f"cea_t{t}"] = np.round(vals, 3)
    hazard = np.exp(1.5 * trend)
    time = rng.exponential(12 / hazard)
    cens = rng.uniform(6, 40, n)
    rows["time"], rows["event"] = np.round(np.minimum(time, cens), 2), (time <= cens).astype(int)
    pd.DataFrame(rows).to_csv(tmp_path / "clinical.csv", index=False)
    pd.DataFrame({"patient_id": rows["patient_id"], "image": "none"}).to_csv(tmp_path / "manifest.csv", index=False)
    study = {"name": "tdlm", "seed": 0, "data": {"manifest": "manifest.csv", "clinical": "clinical.csv"},
             "outcome": {"kind": "survival"}, "cohorts": {"split": {"centers": ["A"], "ratio": {"training": 1}},
                                                         "external": {"B": "external"}},
             "training": {"epochs": 40, "batch_size": 32, "lr": 3e-3, "loss": "bce_cox", "horizon": 12,
                          "early_stopping": None},
             "longitudinal": {"markers": ["cea"], "max_timepoints": 3, "train_followups": 2, "dim": 16, "heads": 2,
                              "apply_followups": {"BS": 0, "2F": 2}, "dropout": 0.0},
             "output": "run"}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    cfg = load_study(tmp_path / "study.yaml")
    ck = train_two_level(cfg, "tdlm", seed=0)
    scores, attention = apply_two_level(cfg, "tdlm", ck)
    ext = scores[scores.patient_id.isin(rows["patient_id"][200:])]
    clin = pd.DataFrame(rows).set_index("patient_id").loc[ext.patient_id]
    c_2f = harrell_c(clin.time, clin.event, ext["tdlm_2F"]).c
    c_bs = harrell_c(clin.time, clin.event, ext["tdlm_BS"]).c
    assert c_2f > 0.75, c_2f
    assert c_2f > c_bs + 0.1, (c_2f, c_bs)  # the baseline alone carries no trend
    assert set(attention.level) == {"time", "object"}


class _Payload:
    """Any object a pickle could rebuild; a checkpoint holding one must not be unpickled."""

    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return {}


def test_two_level_checkpoint_is_loaded_without_unpickling(tmp_path):
    import torch
    from gastrorad.dl.longitudinal.train import load_two_level
    from gastrorad.errors import InputError
    bad = tmp_path / "model.pt"
    torch.save({"gastrorad_two_level": 1, "which": "tdlm", "state_dict": {}, "extra": _Payload()}, bad)
    with pytest.raises(InputError, match="not unpickled"):
        load_two_level(None, bad)
    assert not _Payload.ran  # refused before any code in the file ran
    plain = tmp_path / "plain.pt"
    torch.save({"something": torch.zeros(1)}, plain)
    with pytest.raises(InputError, match="two-level"):
        load_two_level(None, plain)


def test_frozen_extractor_keeps_its_weights_and_standardises_and_grad_cam_flows(tmp_path):
    """``longitudinal.extractor: frozen``: the backbone's weights and batch-norm statistics do not move when
    the model is trained, its pooled features come out z-scored on the ROIs it was scaled on, and Grad-CAM
    still gets a map through the frozen layers."""
    from gastrorad.dl.backbones import create_model
    from gastrorad.dl.longitudinal.explain import _feature_layer, roi_grad_cams
    from gastrorad.dl.longitudinal.model import FrozenCNNExtractor
    torch.manual_seed(0)
    backbone = create_model("tiny", in_channels=3, spatial_dims=2)
    ext = FrozenCNNExtractor(backbone, (3, 24, 24), stages="all", pooling=("avg", "max"))
    assert ext.out_dim == 2 * (16 + 32 + 32)  # every stage of the tiny CNN, average and maximum
    rois = torch.rand(40, 3, 24, 24) * 2 + 1
    ext.fit_scale([rois[:17], rois[17:]])  # accumulated over batches
    z = ext(rois)
    np.testing.assert_allclose(z.mean(0).detach(), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(0).detach()[z.std(0) > 0], 1, atol=1e-3)
    net = TwoLevelSurvivalModel(ext, ext.out_dim, dim=16, heads=2, layers=1, max_timepoints=3, dropout=0.0)
    before = {k: v.clone() for k, v in net.extractor.backbone.state_dict().items()}
    head = [p.detach().clone() for p in net.head.parameters()]
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net.train()
    assert not net.extractor.backbone.training  # batch-norm stays in eval mode
    x, mask = torch.rand(4, 2, 3, 3, 24, 24), torch.ones(4, 2, 3, dtype=torch.bool)
    for _ in range(3):
        opt.zero_grad()
        net({"x": x, "mask": mask}).sum().backward()
        opt.step()
    after = net.extractor.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and running statistics unchanged
    assert any(not torch.equal(a, b) for a, b in zip(head, net.head.parameters()))  # ... while the head learns
    maps = roi_grad_cams(net, {"x": x[:1], "mask": mask[:1]}, _feature_layer(net))
    assert maps.shape == (2, 3, 24, 24) and float(maps.max()) > 0
