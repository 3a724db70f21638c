"""`make demo`: the whole chain on built-in (or your) data, ending with a results table and pictures.

    python -m demo.run --output_dir=OUT [--data_dir=GLD-layout folder] [--weights=none|imagenet|PATH] [--quick]
        [--seeds=0,1,2] [--nodeterministic]

Every stage is the project's real CLI run as a subprocess, its output streamed with the stage's
name in front:

  data        pipelines.synthetic            (skipped with --data_dir)   OUT/data/
  records     pipelines.preprocess train.csv                             OUT/records/
  train_base  trainer.train --epochs=0       (untrained / pretrained-only network)   OUT/models/base/
  train_L     trainer.train --loss=...       (L = arcface or triplet; both with --ablation, the
                                             configured loss at a smaller size, L-<size>px, and
                                             ArcFace with dynamic margins, arcface-dynamic)  OUT/models/L/
  index_M     indexer.build                  for each method M (a model + build options)  OUT/index/M/
  predict_M   indexer.predict test.csv       (with the solution, for the query grid)  OUT/predict/M/
  evaluate_M  indexer.evaluate               for M and the random-guess baseline     OUT/eval/M/

The methods: the base network, the trained one, and the trained one with the recommended
re-ranking and confidence options (OPTIONS, each mode's `recommended`); `--ablation` adds the
other loss and each option alone. It then prints one table (method x top-1, top-5, GAP, seconds),
writes it to OUT/results.{md,json}, and copies the trained model's accuracy-vs-k curve and
query/neighbours grid to OUT/. A rerun skips every stage that already completed with the same
command (see demo/stages.py), so it resumes. `--seeds=0,1,2` runs all of it once per seed into
OUT/seed-N/ and writes the table of means and min-max over the seeds to OUT/results.{md,json}.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Optional

from absl import app, flags

from demo import baseline, report
from demo.stages import Runner, Stage, StageFailed, write_atomic
from pipelines.cli.cli_errors import InputError, absl_main

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Folder for every stage's outputs and the results.")
flags.DEFINE_string("data_dir", None, "A Google-Landmarks-layout folder (train.csv, test.csv, test_solution.csv, "
                    "images); default: generate the built-in synthetic set under OUTPUT_DIR/data.")
flags.DEFINE_string("weights", "none", "Backbone initialisation: none (random), imagenet, or a weights file.")
flags.DEFINE_bool("quick", False, "A tiny data set and a short training run (for tests; results are noise).")
flags.DEFINE_integer("seed", 0, "Seed of the generated data set, the training and the random-guess baseline.")
flags.DEFINE_list("seeds", None, "Run the whole chain once per seed (e.g. 0,1,2) into OUT/seed-N/ (the built-in data "
                  "drawn per seed too) and print each row's mean and min-max over the seeds; overrides --seed.")
flags.DEFINE_bool("deterministic", True, "Train with TensorFlow's op determinism and build each Annoy shard on one "
                  "thread, so a rerun on the same machine prints the same table (--nodeterministic: faster, not "
                  "reproducible to the last digit).")
flags.DEFINE_string("size", None, "Generated data set size (pipelines.synthetic --size); default by mode.")
flags.DEFINE_integer("epochs", None, "Training epochs of the trained model(s); default by mode.")
flags.DEFINE_list("train_args", [], "Extra trainer.train flags for both models, comma-separated "
                  "(e.g. --learning_rate=1e-3,--image_size=128); they override the demo's.")
flags.DEFINE_enum("loss", None, ["arcface", "triplet"], "Loss of the trained model (triplet: semi-hard); "
                  "default by mode.")
flags.DEFINE_bool("ablation", False, "Also train with the other loss, at a smaller image size and with ArcFace's "
                  "dynamic margins, and add one row "
                  "per recognition-quality "
                  "option (re-ranking, confidence, TTA) on the trained model, each with its time cost.")
flags.mark_flag_as_required("output_dir")


@dataclasses.dataclass(frozen=True)
class Mode:
    """Sizes that trade result quality for time."""

    size: str  # generated data set size (pipelines.synthetic --size)
    record_size: int  # shorter side of the stored records (preprocess --image_size; predict reads it from the index)
    epochs: int  # training epochs
    batch: tuple[int, int]  # P landmarks x K images per step (P is capped at the data's landmarks)
    trainer_flags: tuple[str, ...]  # the network and schedule, shared by both models
    visualize: int  # queries shown in the grid
    loss: str  # of the trained model (LOSSES)
    recommended: tuple[str, ...]  # OPTIONS of the last row (those that apply to the data)
    ablation_size: int = 0  # --ablation also trains the configured loss at this image size (0: not)


_NETWORK = ("--backbone=mobilenet", "--alpha=0.25", "--freeze=none", "--steps_per_epoch=40",
            "--warmup_steps=30", "--val_queries=0", "--val_references=0", "--checkpoints_to_keep=2")
# From scratch (no weights offline): MobileNet 0.25 at 96 px, big enough to learn the generated
# scenes, small enough for 2 CPU cores; the 2018 study's triplet loss; then flip TTA, spatial
# verification, the other-landmark penalty and batch neighbours (docs/quality.md has the ablation).
FULL = Mode(size="default", record_size=128, epochs=36, batch=(16, 4), visualize=8,
            trainer_flags=(*_NETWORK, "--image_size=96", "--embedding_dim=64"), loss="triplet",
            recommended=("flip", "verify", "otherpen", "batchnb"), ablation_size=64)
# From pretrained weights (WEIGHTS=): 160 px from 224 px records, ArcFace, GeM pooling into 256
# dimensions, 600 steps; then the same options as above (query expansion measured no better on
# top of them): docs/quality.md.
PRETRAINED = Mode(size="default", record_size=224, epochs=15, batch=(16, 4), visualize=8,
                  trainer_flags=(*_NETWORK, "--image_size=160", "--pooling=gem", "--embedding_dim=256"),
                  loss="arcface", recommended=("flip", "verify", "otherpen", "batchnb"), ablation_size=96)
# The trainer's own `tiny` preset and a tiny data set: the chain in seconds, for tests (ArcFace and
# an option, so the tests cover those paths).
QUICK = Mode(size="tiny", record_size=64, epochs=1, batch=(4, 2), visualize=4, trainer_flags=("--preset=tiny",),
             loss="arcface", recommended=("aqe", "verify", "otherpen"))
# Trained models: key -> (trainer flags, table name).
LOSSES = {"arcface": (("--loss=arcface",), "ArcFace"), "triplet": (("--loss=semihard",), "triplet")}
# Recognition-quality options on a trained model: key -> (label, indexer.build flags, indexer.predict
# flags); "{data}" is the data folder. Measured in docs/quality.md.
OPTIONS = {
    "aqe": ("+ query expansion (AQE)", (), ("--rerank=aqe", "--aqe_k=2", "--aqe_alpha=3")),
    "dba": ("+ database augmentation (DBA)", ("--dba_k=2", "--dba_alpha=3"), ()),
    "flip": ("+ flip TTA", ("--tta=flip",), ()),
    "multiscale": ("+ multi-scale TTA", ("--tta=multiscale",), ()),
    "margin": ("+ margin confidence", (), ("--confidence=margin",)),
    "penalty": ("+ non-landmark penalty", ("--nonlandmark_csv={data}/nonlandmark.csv",), ()),
    "otherpen": ("+ other-landmark penalty", ("--other_landmark_penalty",), ()),
    "verify": ("+ spatial verification", ("--local_features=500",), ("--verify_k=10",)),
    "batchnb": ("+ batch neighbours", (), ("--batch_neighbours",)),
}
# Peak learning rate: from scratch it can be high; a pretrained backbone is only nudged.
LEARNING_RATE = {"none": 2e-3, "pretrained": 3e-4}
# From scratch, BatchNorm's inference statistics must keep up with a few hundred steps.
BN_MOMENTUM = {"none": 0.9, "pretrained": 0.99}


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    output_dir: str
    data_dir: str
    generate: bool
    weights: str
    seed: int
    size: str
    record_size: int
    epochs: int
    batch: tuple[int, int]
    trainer_flags: tuple[str, ...]
    visualize: int
    loss: str = "arcface"
    recommended: tuple[str, ...] = ()
    ablation: bool = False
    ablation_size: int = 0
    deterministic: bool = True


def config_from_flags(seed: Optional[int] = None, output_dir: Optional[str] = None) -> DemoConfig:
    """The demo's configuration; `seed` / `output_dir` override --seed / --output_dir (--seeds)."""
    seed = FLAGS.seed if seed is None else seed
    out = os.path.abspath(output_dir or FLAGS.output_dir)
    generate = FLAGS.data_dir is None
    weights = FLAGS.weights if FLAGS.weights in ("none", "imagenet") else os.path.abspath(FLAGS.weights)
    init = "none" if weights == "none" else "pretrained"
    mode = QUICK if FLAGS.quick else FULL if init == "none" else PRETRAINED
    return DemoConfig(
        output_dir=out,
        data_dir=os.path.join(out, "data") if generate else os.path.abspath(FLAGS.data_dir),
        generate=generate,
        weights=weights,
        seed=seed,
        size=FLAGS.size or mode.size,
        record_size=mode.record_size,
        epochs=FLAGS.epochs if FLAGS.epochs is not None else mode.epochs,
        batch=mode.batch,
        trainer_flags=(*mode.trainer_flags, f"--learning_rate={LEARNING_RATE[init]}",
                       f"--bn_momentum={BN_MOMENTUM[init]}", f"--weights={weights}",
                       f"--seed={seed}", *(("--deterministic",) if FLAGS.deterministic else ()),
                       *FLAGS.train_args),
        visualize=mode.visualize,
        loss=FLAGS.loss or mode.loss,
        recommended=mode.recommended,
        ablation=FLAGS.ablation,
        ablation_size=mode.ablation_size,
        deterministic=FLAGS.deterministic,
    )


@dataclasses.dataclass(frozen=True)
class Method:
    """One table row: a model, indexed and queried with some options."""

    key: str  # folder name under index/ (when it has build flags), predict/ and eval/
    label: str
    model: str  # folder name under models/
    build: tuple[str, ...] = ()  # extra indexer.build flags
    predict: tuple[str, ...] = ()  # extra indexer.predict flags

    @property
    def index_key(self) -> str:
        """Methods without build options share their model's index."""
        return self.key if self.build else self.model


DYNAMIC = "dynamic"  # the model-key part of ArcFace with per-class dynamic margins (--arcface_margin=dynamic)


def model_loss(model: str) -> str:
    """The LOSSES key of a trained model's key (`arcface`, `triplet`, `arcface-96px`, `arcface-dynamic`, ...)."""
    return model.split("-")[0]


def model_size(model: str) -> Optional[int]:
    """The image size a `<loss>-<size>px` model was trained at (None: the mode's)."""
    sized = [part for part in model.split("-")[1:] if part.endswith("px")]
    return int(sized[0][:-2]) if sized else None


def model_dynamic(model: str) -> bool:
    """Whether a model key names ArcFace with dynamic margins (`arcface-dynamic`)."""
    return DYNAMIC in model.split("-")[1:]


def model_label(cfg: DemoConfig, model: str) -> str:
    pretrained = cfg.weights != "none"
    if model == "base":
        return ("pretrained-only" if pretrained else "untrained") + " network + KNN"
    name = LOSSES[model_loss(model)][1]
    size = f" at {model_size(model)} px" if model_size(model) else ""
    if pretrained:
        trained = f"fine-tuned ({name}, dynamic margins)" if model_dynamic(model) else f"fine-tuned ({name})"
    else:
        trained = f"{name}-trained" + (" (dynamic margins)" if model_dynamic(model) else "")
    return f"{trained} network{size} + KNN"


def trained_models(cfg: DemoConfig) -> list[str]:
    """Models to train: the configured loss first; with --ablation the other loss, the configured
    one at the mode's smaller ablation size, and ArcFace with dynamic margins (the mode's ArcFace
    settings otherwise)."""
    if not cfg.ablation:
        return [cfg.loss]
    sized = [f"{cfg.loss}-{cfg.ablation_size}px"] if cfg.ablation_size else []
    return [cfg.loss] + [m for m in LOSSES if m != cfg.loss] + sized + [f"arcface-{DYNAMIC}"]


def model_flags(cfg: DemoConfig, model: str) -> tuple[str, ...]:
    """trainer.train flags of a model beyond the shared ones: its loss, margins, epochs and size."""
    if model == "base":
        return ("--epochs=0",)
    size = model_size(model)
    return (*LOSSES[model_loss(model)][0], *((f"--arcface_margin={DYNAMIC}",) if model_dynamic(model) else ()),
            f"--epochs={cfg.epochs}", *((f"--image_size={size}",) if size else ()))


def merge_tta(build_flags: tuple[str, ...]) -> tuple[str, ...]:
    """Several options' `--tta=` flags as one (`--tta=flip` + `--tta=multiscale` -> `--tta=flip,multiscale`),
    where the first of them was: indexer.build would keep only the last."""
    modes = [f.split("=", 1)[1] for f in build_flags if f.startswith("--tta=")]
    if len(modes) < 2:
        return build_flags
    first = next(i for i, f in enumerate(build_flags) if f.startswith("--tta="))
    rest = [f for f in build_flags if not f.startswith("--tta=")]
    return (*rest[:first], f"--tta={','.join(modes)}", *rest[first:])


def methods(cfg: DemoConfig, data: str) -> list[Method]:
    """Every row after the random guess, in table order."""
    usable = {k: v for k, v in OPTIONS.items() if k != "penalty" or os.path.isfile(f"{data}/nonlandmark.csv")}

    def with_options(keys: tuple[str, ...]) -> Method:
        label = ", ".join(usable[k][0].lstrip("+ ") for k in keys)
        return Method(f"{cfg.loss}-{'-'.join(keys)}", f"{model_label(cfg, cfg.loss)} + {label}", cfg.loss,
                      merge_tta(tuple(f.format(data=data) for k in keys for f in usable[k][1])),
                      tuple(f.format(data=data) for k in keys for f in usable[k][2]))

    rows = [Method(m, model_label(cfg, m), m) for m in ["base", *trained_models(cfg)]]
    if cfg.ablation:
        rows += [with_options((k,)) for k in usable]
    recommended = tuple(k for k in cfg.recommended if k in usable)
    if recommended and not (cfg.ablation and len(recommended) == 1):
        rows.append(with_options(recommended))
    return rows


def check_data_dir(data_dir: str) -> None:
    missing = [n for n in ("train.csv", "test.csv", "test_solution.csv") if not os.path.isfile(f"{data_dir}/{n}")]
    if missing:
        raise InputError(f"{data_dir} lacks {', '.join(missing)}: it must be a Google-Landmarks-layout folder "
                         "(train.csv id,url,landmark_id; test.csv id,url; test_solution.csv id,landmark_id)")


def run_chain(cfg: DemoConfig, runner: Runner) -> list[report.Row]:
    """Run every stage; return the table rows."""
    out, data = cfg.output_dir, cfg.data_dir
    if cfg.generate:
        runner.run(Stage("data", "pipelines.synthetic",
                         (f"--output_dir={data}", f"--seed={cfg.seed}", f"--size={cfg.size}"),
                         f"{data}/synthetic.json"))
    check_data_dir(data)
    records = f"{out}/records"
    runner.run(Stage("records", "pipelines.preprocess",
                     # --overwrite: OUT/records is the demo's own; a run on other data replaces it
                     (f"--csv={data}/train.csv", f"--output_dir={records}", f"--image_size={cfg.record_size}",
                      "--overwrite"),
                     f"{records}/stats.json"))
    with open(f"{records}/stats.json") as f:
        landmarks = json.load(f)["landmarks"]
    if landmarks < 2:
        raise InputError(f"{data}/train.csv yields {landmarks} landmark(s); triplets need at least 2")
    batch = f"--batch={min(cfg.batch[0], landmarks)},{cfg.batch[1]}"  # P x K needs P distinct landmarks
    for model in ["base", *trained_models(cfg)]:
        model_dir = f"{out}/models/{model}"
        runner.run(Stage(f"train_{model}", "trainer.train",
                         (f"--data_dir={records}", f"--output_dir={model_dir}", batch, *cfg.trainer_flags,
                          *model_flags(cfg, model)),
                         f"{model_dir}/export/export.json"))
    solution = f"{data}/test_solution.csv"

    def evaluate(method: str, label: str, stages: tuple[str, ...]) -> report.Row:
        pred, ev = f"{out}/predict/{method}", f"{out}/eval/{method}"
        runner.run(Stage(f"evaluate_{method}", "indexer.evaluate",
                         (f"--submission={pred}/submission.csv", f"--solution={solution}",
                          f"--neighbours={pred}/neighbours.csv", f"--output_dir={ev}"),
                         f"{ev}/metrics.json"))
        return report.load_row(label, f"{ev}/metrics.json", sum(runner.seconds.get(s, 0.0) for s in stages))

    random_pred = f"{out}/predict/random"
    runner.run_local("predict_random", (f"{data}/train.csv", f"{data}/test.csv", str(cfg.seed)),
                     f"{random_pred}/neighbours.csv",
                     lambda: baseline.write_random_prediction(f"{data}/train.csv", f"{data}/test.csv", random_pred,
                                                              cfg.seed))
    rows = [evaluate("random", "random guess", ("predict_random",))]
    # Landmark names in the query grids, where the data set has a names table (both built-in sets do).
    names = (f"--landmark_names={data}/landmarks.csv",) if os.path.exists(f"{data}/landmarks.csv") else ()
    indexed = set()
    for m in methods(cfg, data):
        index, pred = f"{out}/index/{m.index_key}", f"{out}/predict/{m.key}"
        if m.index_key not in indexed:
            indexed.add(m.index_key)
            runner.run(Stage(f"index_{m.index_key}", "indexer.build",
                             (f"--model={out}/models/{m.model}/export", f"--data_dir={records}",
                              f"--output_dir={index}", f"--image_size={cfg.record_size}",
                              *(("--deterministic",) if cfg.deterministic else ()), *m.build),
                             f"{index}/config.json"))
        runner.run(Stage(f"predict_{m.key}", "indexer.predict",
                         (f"--index_dir={index}", f"--test_csv={data}/test.csv", f"--output_dir={pred}",
                          f"--solution={solution}", f"--visualize={cfg.visualize}", *names, *m.predict),  # size: the index's
                         f"{pred}/predict_stats.json"))
        # the row's cost: its model's training (model rows), its own index build and prediction
        cost = [f"predict_{m.key}"]
        if m.key == m.model:
            cost += [f"train_{m.model}", f"index_{m.model}"]
        elif m.build:
            cost.append(f"index_{m.key}")
        rows.append(evaluate(m.key, m.label, tuple(cost)))
    return rows


def publish_figures(cfg: DemoConfig) -> list[str]:
    """Copy the trained model's curve and query grid to the top of OUT; return their paths."""
    out = cfg.output_dir
    copied = []
    for src_dir, name in ((f"{out}/eval/{cfg.loss}", "accuracy_vs_k.png"),
                          (f"{out}/predict/{cfg.loss}", "neighbours.png")):
        src = os.path.join(src_dir, name)
        if not os.path.exists(src):
            raise FileNotFoundError(f"{src} was not written")
        shutil.copyfile(src, f"{out}/{name}.tmp")
        os.replace(f"{out}/{name}.tmp", f"{out}/{name}")
        copied.append(f"{out}/{name}")
    return copied


def seeds_from_flags() -> list[int]:
    try:
        seeds = [int(s) for s in FLAGS.seeds]
    except ValueError:
        raise InputError(f"--seeds={','.join(FLAGS.seeds)}: expected integers, e.g. --seeds=0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds={','.join(FLAGS.seeds)}: expected distinct integers, e.g. --seeds=0,1,2")
    return seeds


def run_one(cfg: DemoConfig) -> tuple[list[report.Row], dict]:
    """The chain for one configuration: its rows and the notes for its results table (StageFailed on failure)."""
    os.makedirs(cfg.output_dir, exist_ok=True)
    write_atomic(f"{cfg.output_dir}/demo_config.json", json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), PYTHONUNBUFFERED="1")
    runner = Runner(cfg.output_dir, env=env)
    started = time.monotonic()
    rows = run_chain(cfg, runner)
    figures = publish_figures(cfg)
    context = {
        "data": cfg.data_dir if not cfg.generate else f"built-in synthetic ({cfg.size}, seed {cfg.seed})",
        "weights": cfg.weights,
        "trained loss": LOSSES[cfg.loss][1],
        "training epochs": cfg.epochs,
        "trainer flags": " ".join(cfg.trainer_flags),
        "deterministic": cfg.deterministic,
        "wall seconds of this invocation": round(time.monotonic() - started, 1),
        "stage seconds (as measured when each ran)": {k: round(v, 1) for k, v in runner.seconds.items()},
        "sum of stage seconds": round(sum(runner.seconds.values()), 1),
        "figures": figures,
    }
    return rows, context


def main(argv: list[str]) -> Optional[int]:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    started = time.monotonic()
    seeds = seeds_from_flags() if FLAGS.seeds is not None else None
    configs = ([config_from_flags()] if seeds is None else
               [config_from_flags(seed, os.path.join(FLAGS.output_dir, f"seed-{seed}")) for seed in seeds])
    runs, contexts = {}, {}
    for cfg in configs:
        try:
            rows, context = run_one(cfg)
        except StageFailed as e:
            where = f" (seed {cfg.seed})" if seeds is not None else ""
            print(f"\ndemo: FAILED at stage {e.stage!r}{where}: {e}", file=sys.stderr, flush=True)
            return 1
        runs[cfg.seed], contexts[cfg.seed] = rows, context
        table = report.write(cfg.output_dir, rows, context)
    if seeds is None:
        out, figures = configs[0].output_dir, contexts[configs[0].seed]["figures"]
    else:
        out = os.path.abspath(FLAGS.output_dir)
        figures = [f for seed in seeds for f in contexts[seed]["figures"]]
        first = contexts[seeds[0]]
        table = report.write_over_seeds(out, runs, {
            "data": first["data"] if not configs[0].generate else f"built-in synthetic ({configs[0].size}), drawn per seed",
            **{k: first[k] for k in ("weights", "trained loss", "training epochs", "deterministic")},
            "trainer flags (the first seed's; --seed=N per seed)": first["trainer flags"],
            "sum of stage seconds": round(sum(c["sum of stage seconds"] for c in contexts.values()), 1),
            "figures": figures})
    wall = time.monotonic() - started
    print(f"\n{table}\nwall time {wall:.0f} s; results in {out}/results.md; figures: {', '.join(figures)}",
          flush=True)
    return 0


if __name__ == "__main__":
    app.run(absl_main("demo", main))
