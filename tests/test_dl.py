"""The deep-learning engine on tiny models and tiny cohorts: registry, pretrained loading,
freezing, losses against hand computations, aggregation, a planted signal learned,
exact reload, determinism, deep features, Grad-CAM focus and Progressive Distill."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from gastrorad.config import load_study
from gastrorad.dl import backbones as B
from gastrorad.dl.aggregate import aggregate_scores, patient_scores
from gastrorad.dl.losses import bce_loss, cox_loss, kd_loss, smoothed_targets
from gastrorad.errors import InputError
from gastrorad.preprocess.cache import save_patches
from gastrorad.stats import auc

LIGHT = ["resnet10", "resnet18", "resnet34", "resnet50", "densenet121", "efficientnet_b0", "vgg11", "seresnext50",
         "tiny"]


@pytest.mark.parametrize("name", LIGHT)
def test_registered_backbones_build_with_any_channel_count(name):
    torch.manual_seed(0)
    net = B.create_model(name, in_channels=12, spatial_dims=2, head="mlp", hidden=8, dropout=0.1).eval()
    x = torch.randn(2, 12, 64, 64)
    with torch.no_grad():
        out, emb = net(x), net.embed(x, "max")
    assert out.shape == (2, 1) and emb.shape == (2, net.backbone.out_channels)


def test_every_registered_name_is_constructible_and_3d_works():
    assert {"resnet101", "densenet201", "efficientnet_b7", "seresnext101", "vgg16"} <= set(B.BACKBONES)
    net = B.create_model("resnet10", in_channels=1, spatial_dims=3).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 16, 32, 32)).shape == (1, 1)
    with pytest.raises(KeyError, match="unknown backbone"):
        B.create_model("resnet999", in_channels=1)


def test_pretrained_torchvision_weights_with_adapted_first_conv(tmp_path):
    torch.manual_seed(0)
    rgb = B.create_model("resnet18", in_channels=3)
    state = {k[len("backbone."):]: v for k, v in rgb.state_dict().items() if k.startswith("backbone.")}
    state["fc.weight"] = torch.zeros(1000, 512)  # an ImageNet head: skipped
    torch.save(state, tmp_path / "resnet18_imagenet.pth")
    net = B.create_model("resnet18", in_channels=12)
    info = B.load_pretrained(net, tmp_path / "resnet18_imagenet.pth")
    assert info["loaded"] > 50 and "backbone.fc.weight" in info["skipped"]
    w = net.state_dict()["backbone.conv1.weight"]
    expected = state["conv1.weight"].mean(dim=1, keepdim=True).repeat(1, 12, 1, 1) * 3 / 12
    assert torch.allclose(w, expected)
    assert torch.equal(net.state_dict()["backbone.layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    with pytest.raises(InputError, match="does not exist"):
        B.load_pretrained(net, tmp_path / "missing.pth")
    dense = B.create_model("densenet121", in_channels=3)
    with pytest.raises(InputError, match="no tensor of this file fits"):
        B.load_pretrained(dense, tmp_path / "resnet18_imagenet.pth")


def test_freezing():
    net = B.create_model("resnet18", in_channels=3)
    B.freeze(net, "until:layer3")
    assert not any(p.requires_grad for p in net.backbone.layer3.parameters())
    assert all(p.requires_grad for p in net.backbone.layer4.parameters())
    B.freeze(net, "all")
    assert not any(p.requires_grad for p in net.backbone.parameters()) and all(p.requires_grad for p in net.head.parameters())
    with pytest.raises(ValueError):
        B.freeze(net, "until:layer9")


def test_kd_loss_equals_hand_computation():
    z, r, y = torch.tensor([0.3, -1.2]), torch.tensor([1.0, -0.4]), torch.tensor([1, 0])
    alpha, T, beta = 0.6, 3.0, 0.1
    total = 0.0
    for zi, ri, yi in zip(z.tolist(), r.tolist(), y.tolist()):
        ps = [1 / (1 + math.exp(zi)), 1 / (1 + math.exp(-zi))]            # softmax([0, z])
        q = [beta, 1 - beta] if yi == 1 else [1 - beta, beta]              # Eq. 3 with K = 2
        ce = -sum(qk * math.log(pk) for qk, pk in zip(q, ps))
        pt = [1 / (1 + math.exp(ri / T)), 1 / (1 + math.exp(-ri / T))]
        pst = [1 / (1 + math.exp(zi / T)), 1 / (1 + math.exp(-zi / T))]
        kl = sum(a * math.log(a / b) for a, b in zip(pt, pst))
        total += alpha * ce + T * T * (1 - alpha) * kl
    assert kd_loss(z, r, y, alpha=alpha, temperature=T, label_smoothing=beta).item() == pytest.approx(total / 2, rel=1e-6)
    assert torch.allclose(smoothed_targets(torch.tensor([0, 2]), 0.3, 3),
                          torch.tensor([[0.7, 0.15, 0.15], [0.15, 0.15, 0.7]]))
    assert bce_loss(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(math.log(2))


def test_cox_loss_equals_partial_likelihood_without_ties():
    risk = torch.tensor([0.5, -0.2, 1.1, 0.0])
    time = torch.tensor([5.0, 3.0, 8.0, 1.0])
    event = torch.tensor([1, 0, 1, 1])
    ll = 0.0
    for i in range(4):
        if event[i]:
            at_risk = time >= time[i]
            ll += risk[i].item() - math.log(torch.exp(risk[at_risk]).sum().item())
    assert cox_loss(risk, time, event).item() == pytest.approx(-ll / 3, rel=1e-5)


def test_cox_loss_of_a_batch_of_one_patient_is_zero_with_a_gradient():
    """A last batch of one (S3, 300 patients: the training split left one over) is its own risk set: no
    information, where torchsurv raised 'len() of a 0-d tensor' and ended the run."""
    risk = torch.tensor([0.7], requires_grad=True)
    loss = cox_loss(risk.reshape(1, 1), torch.tensor([4.0]), torch.tensor([1]))
    assert loss.item() == 0.0
    loss.backward()
    assert risk.grad is not None and risk.grad.item() == 0.0


def test_aggregation():
    s = np.arange(20, dtype=float)
    assert aggregate_scores(s, "topk", 10) == pytest.approx(np.mean(np.arange(10, 20)))
    assert aggregate_scores(s, "max") == 19 and aggregate_scores(s, "mean") == 9.5
    df = pd.DataFrame({"patient_id": ["a"] * 3 + ["b"] * 2, "cohort": "training", "score": [1, 2, 3, 5, 7]})
    assert patient_scores(df, "topk", 2).score.tolist() == [2.5, 6.0]


def make_patch_study(root, n=72, size=32, signal=2.0, seed=0, extra=None):
    """A study whose patches carry a planted signal: a disk that is brighter when label = 1."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    y = (np.arange(n) % 2).astype(int)
    rng.shuffle(y)
    ids = [f"S{i:03d}" for i in range(n)]
    pd.DataFrame({"patient_id": ids, "center": "A", "label": y}).to_csv(root / "clinical.csv", index=False)
    pd.DataFrame({"patient_id": ids, "image": "x.nii.gz", "mask": "m.nii.gz"}).to_csv(root / "manifest.csv", index=False)
    cfg = {"data": {"manifest": "manifest.csv", "clinical": "clinical.csv"}, "outcome": {"kind": "binary"},
           "cohorts": {"split": {"centers": ["A"], "ratio": {"training": 2, "internal": 1}}}, "seed": 1,
           "preprocess": {"patch": {"mode": "slice2d", "size": [size, size], "mask_channel": True}}, "output": "run",
           "model": {"backbone": "tiny"},
           "training": {"epochs": 12, "batch_size": 16, "lr": 3e-3, "val_fraction": 0.25, "schedule": "constant",
                        "early_stopping": {"monitor": "val_loss", "patience": 12}},
           **(extra or {})}
    (root / "study.yaml").write_text(yaml.safe_dump(cfg))
    rows = []
    yy, xx = np.mgrid[:size, :size]
    for pid, label in zip(ids, y):
        cy, cx = size / 2 + rng.integers(-4, 5), size / 2 + rng.integers(-4, 5)
        disk = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 36).astype(np.float32)
        img = rng.normal(0, 1, (size, size)).astype(np.float32) + disk * (signal * label + rng.normal(0, 0.3))
        path = root / "run" / "cache" / pid / "venous.npz"
        save_patches(path, np.stack([img, disk]), ["slice+0", "mask"], {})
        rows.append({"patient_id": pid, "phase": "venous", "timepoint": 0, "lesion_id": "primary",
                     "lesion_site": "", "reader": "", "path": str(path), "key": pid})
    pd.DataFrame(rows).to_csv(root / "run" / "patches.csv", index=False)
    return load_study(root / "study.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from gastrorad.dl.train import score_study, train_model
    cfg = make_patch_study(tmp_path_factory.mktemp("planted"))
    res = train_model(cfg)
    return cfg, res, score_study(cfg)


def test_planted_signal_is_learned(trained):
    cfg, res, scores = trained
    labels = pd.read_csv(cfg.clinical_path).set_index("patient_id").label
    internal = scores[scores.cohort == "internal"]
    assert len(internal) == 24
    assert auc(labels.loc[internal.patient_id], internal.score) > 0.8
    assert res.seconds < 60


def test_reloaded_checkpoint_reproduces_scores_and_training_is_deterministic(trained, tmp_path):
    from gastrorad.dl.train import score_study, train_model
    cfg, res, scores = trained
    again = score_study(cfg, checkpoints=res.checkpoints)
    assert np.array_equal(again.score.to_numpy(), scores.score.to_numpy())
    cfg2 = make_patch_study(tmp_path / "again")
    train_model(cfg2)
    s2 = score_study(cfg2)
    assert np.allclose(s2.score.to_numpy(), scores.score.to_numpy(), atol=1e-6)


def test_deep_features_table(trained):
    from gastrorad.dl.features import extract_features
    from gastrorad.dl.train import load_checkpoint
    cfg, res, _ = trained
    net = load_checkpoint(res.checkpoints[0])
    t = extract_features(cfg, net, phase="venous", pooling="max")
    assert t.shape == (72, 2 + net.backbone.out_channels)
    assert (cfg.output_dir / "features_venous.csv").exists()
    t2 = extract_features(cfg, net, phase="venous", pooling="max")
    assert t.equals(t2)
    avg = extract_features(cfg, net, phase="venous", pooling="avg")
    assert not np.allclose(avg.iloc[:, 2:].to_numpy(), t.iloc[:, 2:].to_numpy())


def test_grad_cam_focuses_on_the_lesion(trained):
    from gastrorad.dl.explain import explain_study
    cfg, res, _ = trained
    table = explain_study(cfg, limit=6, guided=False)
    assert len(table) == 12 and all(__import__("pathlib").Path(p).exists() for p in table.png)
    labels = pd.read_csv(cfg.clinical_path).set_index("patient_id").label
    positive = table[table.patient_id.map(labels) == 1]
    # Where the lesion carries the evidence (bright disk), it draws more of the map than the background.
    assert len(positive) >= 3 and positive.roi_focus.median() > 1.5
    guided = explain_study(cfg, limit=2, guided=True)
    assert guided.roi_focus.notna().all()


def test_grad_cam_is_identical_on_dask(trained, tmp_path):
    import json
    from pathlib import Path
    pytest.importorskip("distributed")
    from gastrorad.dl.explain import explain_study
    cfg, _, _ = trained
    tables = {}
    for name, compute in (("serial", {"scheduler": "serial"}), ("dask", {"scheduler": "local", "workers": 2})):
        c = cfg.model_copy(update={"compute": cfg.compute.model_copy(update=compute)})
        c.output = tmp_path / name  # the patches stay where they are (patches.csv lists them)
        (c.output_dir).mkdir(parents=True)
        (c.output_dir / "patches.csv").write_bytes((cfg.output_dir / "patches.csv").read_bytes())
        tables[name] = explain_study(c, checkpoint=json.loads((cfg.output_dir / "models" / "models.json").read_text())
                                     ["checkpoints"][0], limit=3, guided=False)
    a, b = tables["serial"], tables["dask"]
    assert len(a) == 6 and list(a.patient_id) == list(b.patient_id)
    assert a.roi_focus.tolist() == b.roi_focus.tolist()
    assert [Path(x).read_bytes() for x in a.png] == [Path(x).read_bytes() for x in b.png]


def test_progressive_distill_records_every_iteration(tmp_path):
    from gastrorad.dl.train import score_study, train_model
    cfg = make_patch_study(tmp_path / "pd", n=48, extra={})
    cfg.training.epochs = 3
    cfg.training.label_smoothing = 0.1
    from gastrorad.config.study import DistillConfig
    cfg.training.distill = DistillConfig(chain=["tiny", "tiny"], temperature=2.0, alpha=0.5)
    res = train_model(cfg)
    assert [h["iteration"] for h in res.history] == [0, 1, 2]
    assert len(score_study(cfg)) == 48


def test_cli_runs_the_engine_on_a_synthetic_ct_study(tmp_path):
    from typer.testing import CliRunner

    from gastrorad.cli import app
    from gastrorad.synth import synthesize
    from conftest import levels_seen_in_training
    res = synthesize("s1", tmp_path / "s1", n=16, seed=4, workers=2)
    levels_seen_in_training(res.folder)  # 16 patients: other cohorts hold levels training lacks (validate refuses)
    cfg = yaml.safe_load(res.study_file.read_text())
    cfg["preprocess"]["patch"]["size"] = [48, 48]
    cfg["model"] = {"backbone": "tiny", "head": "mlp", "hidden": 8}
    cfg["augment"] = {"flip": True, "rot90": True, "rotate_degrees": 10, "gaussian_blur": 1.0, "scale": 0.1,
                      "shift": 2, "random_crop": [40, 40]}
    cfg["training"] = {"epochs": 2, "batch_size": 4, "val_fraction": 0.3}
    res.study_file.write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    study = str(res.study_file)
    for cmd in (["preprocess", study, "--workers", "2"], ["train", study, "--no-progress"], ["score", study],
                ["explain", study, "--limit", "2"], ["extract-features", study, "--pooling", "avg"]):
        out = runner.invoke(app, cmd)
        assert out.exit_code == 0, (cmd, out.output, out.exception)
    run = res.folder / "run"
    scores = pd.read_csv(run / "dl_scores.csv")
    assert len(scores) == 16 and scores.score.between(0, 1).all()
    assert set(scores.cohort) == {"training", "internal", "external1", "external2"}
    assert len(list((run / "explain").rglob("*.png"))) >= 4
    feats = pd.read_csv(run / "features_venous.csv")
    assert feats.shape[0] == 16


def test_augmentation_pipeline_is_seeded_and_crops():
    from gastrorad.config.study import AugmentConfig
    from gastrorad.dl.data import build_augment, build_eval_transform
    aug = AugmentConfig(prob=1.0, flip=True, rot90=True, rotate_degrees=30, gaussian_blur=1.0, scale=0.1, shift=3,
                        random_crop=[24, 24])
    x = torch.randn(3, 32, 32)
    a, b = build_augment(aug, 2, seed=5), build_augment(aug, 2, seed=5)
    ya, yb = a(x), b(x)
    assert tuple(ya.shape) == (3, 24, 24) and torch.allclose(torch.as_tensor(ya), torch.as_tensor(yb))
    assert tuple(build_eval_transform(aug)(x).shape) == (3, 24, 24)


def test_other_pretrained_formats(tmp_path):
    from gastrorad.dl.train import save_checkpoint
    torch.manual_seed(1)
    cfg = make_patch_study(tmp_path / "s", n=12)
    net = B.create_model("resnet10", in_channels=1, spatial_dims=3)
    # MedicalNet: 3D ResNet state dict saved from DataParallel ('module.' prefix), 1 input channel
    med = {"module." + k[len("backbone."):]: v for k, v in net.state_dict().items() if k.startswith("backbone.")}
    torch.save({"state_dict": med}, tmp_path / "resnet_10.pth")
    two = B.create_model("resnet10", in_channels=2, spatial_dims=3)
    assert B.load_pretrained(two, tmp_path / "resnet_10.pth", "medicalnet")["loaded"] > 20
    assert torch.allclose(two.state_dict()["backbone.conv1.weight"],
                          net.state_dict()["backbone.conv1.weight"].repeat(1, 2, 1, 1, 1) / 2)
    # a previous gastrorad checkpoint
    tiny = B.create_model("tiny", in_channels=2)
    save_checkpoint(tmp_path / "prev.pt", tiny, channels=2, spatial_dims=2, cfg=cfg, history=[], backbone="tiny")
    fresh = B.create_model("tiny", in_channels=2)
    B.load_pretrained(fresh, tmp_path / "prev.pt", "gastrorad")
    assert torch.equal(fresh.state_dict()["backbone.conv1.weight"], tiny.state_dict()["backbone.conv1.weight"])


def test_grad_cam_3d_and_survival_training(tmp_path):
    from gastrorad.dl.explain import grad_cam
    net = B.create_model("tiny", in_channels=1, spatial_dims=3)
    cam = grad_cam(net, torch.randn(2, 1, 8, 16, 16))
    assert cam.shape == (2, 8, 16, 16) and cam.min() >= 0 and cam.max() <= 1 + 1e-6
    # survival outcome with the CE + Cox loss of S3 (OS beyond 12 months)
    from gastrorad.dl.train import score_study, train_model
    cfg = make_patch_study(tmp_path / "surv", n=40)
    c = pd.read_csv(cfg.clinical_path)
    rng = np.random.default_rng(0)
    c["time"] = np.round(rng.exponential(20, len(c)) * np.where(c.label == 1, 2.0, 0.5), 1)
    c["event"] = (rng.uniform(size=len(c)) < 0.7).astype(int)
    c.to_csv(cfg.clinical_path, index=False)
    cfg.outcome.kind = "survival"
    cfg.training.loss = "bce_cox"
    cfg.training.epochs = 3
    cfg.training.early_stopping.monitor = "val_c"
    train_model(cfg)
    s = score_study(cfg)
    assert len(s) == 40 and np.isfinite(s.score).all()


# -- training UX: per-epoch log, validation cohort, slim checkpoints, resume --------------------------------------
def test_one_line_per_epoch_reaches_a_log_that_is_not_a_terminal(tmp_path):
    from typer.testing import CliRunner

    from gastrorad.cli import app
    from gastrorad.runner import run_study
    cfg = make_patch_study(tmp_path / "s", n=24)
    study = yaml.safe_load((tmp_path / "s" / "study.yaml").read_text())
    study["training"]["epochs"] = 3
    (tmp_path / "s" / "study.yaml").write_text(yaml.safe_dump(study))
    out = CliRunner().invoke(app, ["train", str(tmp_path / "s" / "study.yaml")])  # captured: not a terminal
    assert out.exit_code == 0, out.output
    lines = [x for x in out.output.splitlines() if " epoch " in x]
    assert [x.split(":")[0].strip() for x in lines] == ["model epoch 1/3", "model epoch 2/3", "model epoch 3/3"]
    for field in ("loss", "val loss", "val AUC", " s", "best val loss", "patience"):
        assert all(field in x for x in lines), field
    assert "ETA" in lines[0] and "ETA" not in lines[-1]
    patients = set(pd.read_csv(cfg.clinical_path).patient_id)
    assert not any(p in out.output for p in patients)
    # `gastrorad run` hands its printer to the train stage
    cfg.training.epochs = 2
    logged: list[str] = []
    run_study(cfg, only=["train"], log=logged.append)
    assert sum(" epoch " in x for x in logged) == 2 and any("model epoch 2/2: loss" in x for x in logged)


def test_a_named_validation_cohort_selects_the_model(tmp_path, monkeypatch):
    import gastrorad.dl.fit as fit_module
    from gastrorad.dl.train import train_model
    from gastrorad.report.tripod import tripod_checklist
    extra = {"training": {"epochs": 2, "batch_size": 16, "val_cohort": "internal",
                          "early_stopping": {"monitor": "val_auc", "patience": 5}}}
    cfg = make_patch_study(tmp_path / "s", n=36, extra=extra)
    seen = []
    real = fit_module.PatchDataset

    def recording(frame, *a, **kw):
        seen.append(set(frame.patient_id))
        return real(frame, *a, **kw)
    monkeypatch.setattr(fit_module, "PatchDataset", recording)
    train_model(cfg)
    from gastrorad.data.cohorts import assign_cohorts
    from gastrorad.data.tables import read_table
    cohorts, _ = assign_cohorts(read_table(cfg.clinical_path), cfg)
    fitted, validated = seen
    assert fitted == set(cohorts[cohorts == "training"].index)
    assert validated == set(cohorts[cohorts == "internal"].index)
    usage = dict((r[0], r[2]) for r in tripod_checklist(cfg, {}, {}))["12a"]
    assert "internal cohort also for selecting the deep model" in usage
    # errors name the study-file key
    bad = make_patch_study(tmp_path / "typo", n=12)
    raw = yaml.safe_load((tmp_path / "typo" / "study.yaml").read_text())
    for training, reason in (({"val_cohort": "intrnal"}, "no cohort 'intrnal'"),
                             ({"val_cohort": "internal", "folds": 3}, "excludes k-fold"),
                             ({"val_cohort": "training"}, "other than training")):
        (tmp_path / "typo" / "study.yaml").write_text(yaml.safe_dump({**raw, "training": training}))
        with pytest.raises(InputError, match=reason) as err:
            load_study(tmp_path / "typo" / "study.yaml")
        assert "training.val_cohort" in str(err.value)
    bad.training.val_cohort = "elsewhere"  # a cohort the data do not have (e.g. from a cohort column)
    with pytest.raises(InputError, match=r"column 'training.val_cohort'.*no patient with patches in cohort 'elsewhere'"):
        train_model(bad)


def test_model_checkpoint_holds_weights_only_and_a_killed_fit_resumes(tmp_path, monkeypatch):
    from gastrorad.dl.checkpoint import load_checkpoint
    from gastrorad.dl.fit import BestAndLast
    from gastrorad.dl.module import GastroModule
    from gastrorad.dl.train import train_model
    cfg = make_patch_study(tmp_path / "s", n=36)
    cfg.training.epochs = 4
    folder = cfg.output_dir / "models" / "model"

    class Killed(Exception):
        pass

    def kill_in_epoch_3(self):
        if self.current_epoch == 2:
            raise Killed
    monkeypatch.setattr(GastroModule, "on_train_epoch_end", kill_in_epoch_3, raising=False)
    monkeypatch.setattr(BestAndLast, "every_seconds", 0.0)  # tiny epochs: write the resume point after each
    with pytest.raises(Killed):
        train_model(cfg)
    assert not (folder / "model.pt").exists()
    state = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["optimizer_states"] and state["lr_schedulers"] and state["epoch"] in (0, 1, 2)  # epoch index of the last write
    monkeypatch.undo()
    monkeypatch.setattr(BestAndLast, "every_seconds", 0.0)
    lines: list[str] = []
    train_model(cfg, log=lines.append)
    first = state["epoch"] + 2
    assert lines[0].strip() == f"model: resuming at epoch {first}/4 from last.ckpt"
    assert [x.split(":")[0].strip() for x in lines[1:]] == [f"model epoch {k}/4" for k in range(first, 5)]
    assert sorted(p.name for p in folder.iterdir()) == ["model.pt"]  # no training state left for inference
    assert not torch.are_deterministic_algorithms_enabled()  # Lightning's global flag is put back
    ck = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    assert set(ck) == {"gastrorad_checkpoint", "backbone", "in_channels", "spatial_dims", "head", "hidden", "dropout",
                       "state_dict"}
    net = load_checkpoint(folder / "model.pt")
    weights = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    assert (folder / "model.pt").stat().st_size < weights * 1.1 + 20_000


def test_checkpoints_are_loaded_without_unpickling_objects(tmp_path):
    from gastrorad.dl.checkpoint import load_checkpoint
    net = B.create_model("tiny", in_channels=2)
    old = {"gastrorad_checkpoint": 1, "backbone": "tiny", "in_channels": 2, "spatial_dims": 2, "head": "linear",
           "hidden": 256, "dropout": 0.0, "state_dict": net.state_dict(),
           "history": [{"epoch": 3, "best_score": 0.5, "monitor": "val_loss", "stopped_epoch": 3}]}
    torch.save(old, tmp_path / "old.pt")  # the format before: plain values, so still read
    assert torch.equal(load_checkpoint(tmp_path / "old.pt").state_dict()["backbone.conv1.weight"],
                       net.state_dict()["backbone.conv1.weight"])
    marker = tmp_path / "code-ran"

    class Crafted:
        def __reduce__(self):
            return (__import__("os").makedirs, (str(marker),))
    torch.save({**old, "history": Crafted()}, tmp_path / "crafted.pt")
    with pytest.raises(InputError, match="not a plain gastrorad checkpoint"):
        load_checkpoint(tmp_path / "crafted.pt")
    assert not marker.exists()


def test_training_samples_are_plain_tensors_and_train_and_distill_do_not_import_each_other():
    import ast
    import inspect

    from gastrorad.config.study import AugmentConfig
    from gastrorad.dl import distill, fit
    from gastrorad.dl.data import PatchDataset, build_augment
    frame = pd.DataFrame({"patient_id": ["a"], "path": [""], "index": [-1], "label": [1]})
    ds = PatchDataset(frame, "binary", build_augment(AugmentConfig(flip=True, prob=1.0), 2, seed=0))
    ds._cache[""] = np.zeros((2, 8, 8), np.float32)
    assert type(ds[0][0]) is torch.Tensor  # not MONAI's MetaTensor through the network and loss
    for module in (distill, fit):
        imported = {n.module for n in ast.walk(ast.parse(inspect.getsource(module))) if isinstance(n, ast.ImportFrom)}
        assert "gastrorad.dl.train" not in imported


# -- data-parallel training: 2 CPU processes (gloo) against 1 ----------------------------------------------------
def _fit_history(cfg):
    from gastrorad.dl.train import score_study, train_model
    res = train_model(cfg, log=print)  # print: a spawned rank 0 writes the lines, so the log must pickle
    return res.history[0], score_study(cfg), sorted(p.name for p in (cfg.output_dir / "models").rglob("*") if p.is_file())


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_one_checkpoint_and_one_log_line_per_epoch(tmp_path, capfd):
    """Tolerance: |val loss| per epoch and patient probabilities within 0.02 of the 1-process fit.
    Both fits take the same global batch (16 = 2 x 8) and schedule, but DDP's sampler orders the
    samples differently, each rank draws its own augmentations, and averaging two half-batch
    gradients sums in another order; 4 epochs of a tiny model move the numbers by < 0.01. A 2-process
    fit with 16 samples per rank (half the steps) or with per-rank validation misses by more."""
    from gastrorad.dl.fit import model_dir
    runs = {}
    for strategy in ("one", "ddp_spawn"):
        cfg = make_patch_study(tmp_path / strategy, n=48)
        cfg.training.epochs = 4
        if strategy != "one":
            cfg.training.accelerator, cfg.training.devices, cfg.training.strategy = "cpu", "2", strategy
        capfd.readouterr()
        history, scores, files = _fit_history(cfg)
        out = capfd.readouterr().out
        runs[strategy] = history, scores
        lines = [x.split(":")[0].strip() for x in out.splitlines() if " epoch " in x]
        assert lines == [f"model epoch {k}/4" for k in range(1, 5)], (strategy, out)  # rank 0 only
        assert files == ["model.pt", "models.json"]  # one checkpoint, no resume state left
        assert [r["epoch"] for r in history["epochs"]] == [1, 2, 3, 4] and history["stopped_epoch"] == 4
        # the best epoch's score came back to this process and is the loss on the whole validation set
        from gastrorad.dl.checkpoint import load_checkpoint
        from gastrorad.dl.data import load_sample_table
        from gastrorad.dl.fit import split_patients
        from gastrorad.dl.losses import bce_loss
        from gastrorad.dl.train import predict_samples
        samples = load_sample_table(cfg)
        (_, val_ids), = split_patients(cfg, samples)
        val = samples.frame[samples.frame.patient_id.isin(val_ids)]
        logits = predict_samples(load_checkpoint(model_dir(cfg) / "model" / "model.pt"), val, "binary", cfg)
        whole = float(bce_loss(torch.as_tensor(logits), torch.as_tensor(val.label.to_numpy(float))))
        assert history["best_score"] == pytest.approx(whole, abs=1e-5)
    one, spawn = runs["one"], runs["ddp_spawn"]
    for ddp in (spawn,):
        loss = [r["val_loss"] for r in ddp[0]["epochs"]]
        assert loss == pytest.approx([r["val_loss"] for r in one[0]["epochs"]], abs=0.02)
        assert ddp[1].score.to_numpy() == pytest.approx(one[1].score.to_numpy(), abs=0.02)
        assert not np.array_equal(ddp[1].score.to_numpy(), one[1].score.to_numpy())  # it did run on two ranks
