"""The demo's table rows: which model, index and options each method uses (no stage is run)."""

from __future__ import annotations

import dataclasses

from demo.run import FULL, PRETRAINED, DemoConfig, merge_tta, methods, model_flags, trained_models


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
    assert trained_models(cfg) == ["triplet", "arcface", "arcface-dynamic"]
    rows = {m.key: m for m in methods(cfg, str(tmp_path))}
    assert list(rows) == ["base", "triplet", "arcface", "arcface-dynamic", "triplet-aqe", "triplet-dba", "triplet-flip",
                          "triplet-multiscale", "triplet-margin", "triplet-otherpen",
                          "triplet-verify", "triplet-batchnb"]  # no penalty row: no nonlandmark.csv
    assert rows["triplet-multiscale"].build == ("--tta=multiscale",)
    assert rows["triplet-multiscale"].index_key == "triplet-multiscale"
    assert rows["arcface"].label == "fine-tuned (ArcFace) network + KNN"
    assert rows["arcface-dynamic"].label == "fine-tuned (ArcFace, dynamic margins) network + KNN"
    assert rows["arcface-dynamic"].model == "arcface-dynamic" and rows["arcface-dynamic"].index_key == "arcface-dynamic"
    assert rows["triplet-dba"].index_key == "triplet-dba"
    assert rows["triplet-dba"].build == ("--dba_k=2", "--dba_alpha=3")
    assert rows["triplet-margin"].index_key == "triplet"
    assert rows["triplet-verify"].build == ("--local_features=500",)
    assert rows["triplet-verify"].predict == ("--verify_k=10",)
    assert rows["triplet-batchnb"].predict == ("--batch_neighbours",) and rows["triplet-batchnb"].index_key == "triplet"

    (tmp_path / "nonlandmark.csv").write_text("id,url\n")
    rows = {m.key: m for m in methods(dataclasses.replace(cfg, recommended=("aqe", "penalty")), str(tmp_path))}
    assert rows["triplet-penalty"].build == (f"--nonlandmark_csv={tmp_path}/nonlandmark.csv",)
    combined = rows["triplet-aqe-penalty"]
    assert combined.index_key == "triplet-aqe-penalty" and combined.predict[0] == "--rerank=aqe"


def test_ablation_trains_the_configured_loss_at_the_smaller_size_too(tmp_path):
    cfg = dataclasses.replace(config(tmp_path, ablation=True), ablation_size=64)
    assert trained_models(cfg) == ["triplet", "arcface", "triplet-64px", "arcface-dynamic"]
    assert model_flags(cfg, "triplet-64px") == ("--loss=semihard", f"--epochs={cfg.epochs}", "--image_size=64")
    assert model_flags(cfg, "base") == ("--epochs=0",)
    rows = {m.key: m for m in methods(cfg, str(tmp_path))}
    assert rows["triplet-64px"].label == "triplet-trained network at 64 px + KNN"
    assert rows["triplet-64px"].model == "triplet-64px" and rows["triplet-64px"].index_key == "triplet-64px"
    assert trained_models(dataclasses.replace(cfg, ablation=False)) == ["triplet"]


def test_ablation_trains_arcface_with_dynamic_margins_with_the_modes_arcface_settings(tmp_path):
    for loss in ("triplet", "arcface"):  # built-in data (the other loss) and WEIGHTS= (the configured one)
        cfg = dataclasses.replace(config(tmp_path, ablation=True, loss=loss), ablation_size=96)
        assert trained_models(cfg)[-1] == "arcface-dynamic"
        assert model_flags(cfg, "arcface-dynamic") == ("--loss=arcface", "--arcface_margin=dynamic",
                                                       f"--epochs={cfg.epochs}")
        assert model_flags(cfg, "arcface") == ("--loss=arcface", f"--epochs={cfg.epochs}")  # fixed margin
    rows = {m.key: m for m in methods(cfg, str(tmp_path))}
    assert rows["arcface-dynamic"].label == "ArcFace-trained (dynamic margins) network + KNN"
    assert rows["arcface-96px"].label == "ArcFace-trained network at 96 px + KNN"
    assert "arcface-dynamic" not in trained_models(dataclasses.replace(cfg, ablation=False))


def test_over_seeds_gives_each_rows_mean_and_min_max(tmp_path):
    import json

    from demo import report

    def rows(top1: float, gap: float, seconds: float) -> list:
        return [report.Row("random guess", {"accuracy": 0.1, "top5": 0.5, "gap": 0.01}, 1.0),
                report.Row("trained", {"accuracy": top1, "top5": 0.9, "gap": gap}, seconds)]

    runs = {2: rows(0.5, 0.4, 30.0), 0: rows(0.7, 0.2, 10.0), 1: rows(0.6, 0.3, 20.0)}
    summary = report.over_seeds(runs)
    trained = summary[1]
    assert trained["method"] == "trained" and trained["seconds"] == 20.0
    assert trained["top1"]["per_seed"] == [0.7, 0.6, 0.5]  # in seed order
    assert (trained["top1"]["min"], trained["top1"]["max"]) == (0.5, 0.7)
    assert abs(trained["top1"]["mean"] - 0.6) < 1e-12 and abs(trained["gap"]["mean"] - 0.3) < 1e-12
    table = report.write_over_seeds(str(tmp_path), runs, {"data": "x"})
    assert "| trained | 0.600 (0.500-0.700) | 0.900 (0.900-0.900) | 0.300 (0.200-0.400) | 20 |" in table
    assert json.loads((tmp_path / "results.json").read_text())["seeds"] == [0, 1, 2]
    assert "over 3 seed(s)" in (tmp_path / "results.md").read_text()
    runs[1] = runs[1][:1]
    try:
        report.over_seeds(runs)
    except ValueError as err:
        assert "seed 1 has other methods" in str(err)
    else:
        raise AssertionError("runs with other methods were averaged")


def test_seeds_flag_gives_a_folder_config_and_seed_per_seed(tmp_path):
    from absl import flags

    from demo import run

    flags.FLAGS(["demo", f"--output_dir={tmp_path}", "--seeds=3,4", "--quick"])
    try:
        assert run.seeds_from_flags() == [3, 4]
        cfg = run.config_from_flags(4, str(tmp_path / "seed-4"))
        assert cfg.seed == 4 and cfg.output_dir == str(tmp_path / "seed-4")
        assert cfg.data_dir == str(tmp_path / "seed-4" / "data") and "--seed=4" in cfg.trainer_flags
        assert "--deterministic" in cfg.trainer_flags
        flags.FLAGS.seeds = ["1", "1"]
        try:
            run.seeds_from_flags()
        except run.InputError as err:
            assert "distinct integers" in str(err)
        else:
            raise AssertionError("repeated seeds accepted")
    finally:
        flags.FLAGS.unparse_flags()


def test_two_tta_options_in_one_row_become_one_flag(tmp_path):
    assert merge_tta(("--a", "--tta=flip", "--b", "--tta=multiscale")) == ("--a", "--tta=flip,multiscale", "--b")
    assert merge_tta(("--tta=flip", "--b")) == ("--tta=flip", "--b")
    row = {m.key: m for m in methods(config(tmp_path, recommended=("flip", "multiscale", "verify")), str(tmp_path))}
    assert row["triplet-flip-multiscale-verify"].build == ("--tta=flip,multiscale", "--local_features=500")
    assert "multiscale" not in FULL.recommended + PRETRAINED.recommended  # an ablation row until measured
