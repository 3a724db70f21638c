"""The demo's table rows: which model, index and options each method uses (no stage is run)."""

from __future__ import annotations

import dataclasses

from demo.run import DemoConfig, methods, model_flags, trained_models


def config(tmp_path, **overrides) -> DemoConfig:
    values = dict(output_dir=str(tmp_path / "out"), data_dir=str(tmp_path), generate=False, weights="none", seed=0,
                  size="default", record_size=128, epochs=1, batch=(4, 2), trainer_flags=(), visualize=0,
                  loss="triplet", recommended=("aqe",), ablation=False)
    values.update(overrides)
    return DemoConfig(**values)


def test_default_rows_are_base_trained_and_recommended(tmp_path):
    rows = methods(config(tmp_path), str(tmp_path))
    assert [(m.key, m.model, m.index_key) for m in rows] == [
        ("base", "base", "base"), ("triplet", "triplet", "triplet"), ("triplet-aqe", "triplet", "triplet")]
    assert rows[2].predict == ("--rerank=aqe", "--aqe_k=2", "--aqe_alpha=3") and rows[2].build == ()
    assert rows[1].label == "triplet-trained network + KNN"
    assert [m.key for m in methods(config(tmp_path, recommended=()), str(tmp_path))] == ["base", "triplet"]


def test_ablation_adds_the_other_loss_and_each_option_with_its_own_index(tmp_path):
    cfg = config(tmp_path, ablation=True, weights="/w.h5")
    assert trained_models(cfg) == ["triplet", "arcface"]
    rows = {m.key: m for m in methods(cfg, str(tmp_path))}
    assert list(rows) == ["base", "triplet", "arcface", "triplet-aqe", "triplet-dba", "triplet-flip",
                          "triplet-margin", "triplet-otherpen", "triplet-verify"]  # no penalty row: no nonlandmark.csv
    assert rows["arcface"].label == "fine-tuned (ArcFace) network + KNN"
    assert rows["triplet-dba"].index_key == "triplet-dba"
    assert rows["triplet-dba"].build == ("--dba_k=2", "--dba_alpha=3")
    assert rows["triplet-margin"].index_key == "triplet"
    assert rows["triplet-verify"].build == ("--local_features=500",)
    assert rows["triplet-verify"].predict == ("--verify_k=10",)

    (tmp_path / "nonlandmark.csv").write_text("id,url\n")
    rows = {m.key: m for m in methods(dataclasses.replace(cfg, recommended=("aqe", "penalty")), str(tmp_path))}
    assert rows["triplet-penalty"].build == (f"--nonlandmark_csv={tmp_path}/nonlandmark.csv",)
    combined = rows["triplet-aqe-penalty"]
    assert combined.index_key == "triplet-aqe-penalty" and combined.predict[0] == "--rerank=aqe"


def test_ablation_trains_the_configured_loss_at_the_smaller_size_too(tmp_path):
    cfg = dataclasses.replace(config(tmp_path, ablation=True), ablation_size=64)
    assert trained_models(cfg) == ["triplet", "arcface", "triplet-64px"]
    assert model_flags(cfg, "triplet-64px") == ("--loss=semihard", f"--epochs={cfg.epochs}", "--image_size=64")
    assert model_flags(cfg, "base") == ("--epochs=0",)
    rows = {m.key: m for m in methods(cfg, str(tmp_path))}
    assert rows["triplet-64px"].label == "triplet-trained network at 64 px + KNN"
    assert rows["triplet-64px"].model == "triplet-64px" and rows["triplet-64px"].index_key == "triplet-64px"
    assert trained_models(dataclasses.replace(cfg, ablation=False)) == ["triplet"]
