"""Reference-embedding throughput per runner, side by side in one run (CPU).

    python -m bench.bench_embed [--models=tiny,mobilenet,inception_v3] [--records=512] [--shards=8]
                                [--modes=local,direct,direct_mp,dask,dask_warm] [--workers=2]
                                [--tta=none [--tta=multiscale --tta=flip,multiscale ...]]

Writes generated JPEG shards shaped like the preprocessing's output (341x256, bench_train's
generator) to a temporary directory, exports each model with random weights (throughput does not
depend on the weights: `tiny` is the indexer tests' 32 px CNN, `mobilenet` is MobileNet alpha
0.25 at 224 px, `inception_v3` is the default backbone at 299 px), and embeds the shards:
  local      the single-process path (`embed.embed_records`, tf.data over all shards), model
             loaded and warmed up on one batch first: the steady-state rate
  direct     the Beam job (`beam_embed`) on the in-process DirectRunner
  direct_mp  the Beam job on the DirectRunner's multi-processing mode, --workers processes
  dask       the Beam job on a fresh local Dask cluster of --workers processes x 1 thread
             (tests/tools/dask_cluster.py), start-up included
  dask_warm  the same job again on that cluster, into a new folder: its workers already hold the
             model, so this is the steady-state rate
Each mode runs once per `--tta` (test-time augmentation, indexer/embedding/tta.py; repeat the flag
to compare modes side by side, e.g. `--modes=local --tta=none --tta=multiscale`), and the ratios
line compares every row with the first local row. Each Beam row's embeddings are checked against
the local row's of the same `--tta` (max |difference|). img/s/core
divides by the machine's cores: every mode here uses all of them. img/CPU-s divides by the CPU
time this process used (user + system, all threads). It is the per-core rate that a shared,
overloaded machine still measures, but only for modes that run here (local, direct).

`--smoke`: tiny and mobilenet on 16 records, local and direct, in about ten seconds (`bench.smoke`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np

from bench import smoke

SMOKE = {"models": "tiny,mobilenet", "records": 16, "shards": 2, "modes": "local,direct", "batch_size": 8}
DASK_RUNNER = "--runner=apache_beam.runners.dask.dask_runner.DaskRunner"


def export_model(name: str, directory: str) -> str:
    """An export of `name` with random weights into `directory`/export; returns its path."""
    if name == "tiny":
        import pathlib

        from tests.unit.indexer.indexer_helpers import make_export

        return str(make_export(pathlib.Path(directory) / "export"))
    from trainer.config import Config
    from trainer.run.export import export
    from trainer.network.model import build_embedding_model

    shapes = {"mobilenet": dict(backbone="mobilenet", alpha=0.25, image_size=224),
              "inception_v3": dict(backbone="inception_v3", image_size=299)}
    cfg = Config(data_dir=directory, output_dir=directory, weights="none", **shapes[name])
    return export(build_embedding_model(cfg), cfg, directory, epochs_trained=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,mobilenet,inception_v3")
    ap.add_argument("--records", type=int, default=512)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--modes", default="local,direct,direct_mp,dask,dask_warm")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--tta", action="append", default=None,
                    help="test-time augmentation of every mode; repeat to compare (default: none)")
    args = smoke.parse_args(ap, SMOKE)

    from bench.bench_train import write_shards
    from indexer.embedding.beam_embed import embed_with_beam
    from indexer.embedding.embed import Embedder, embed_records, list_shards
    from tests.tools.dask_cluster import dask_cluster

    from indexer.embedding import tta

    cores = os.cpu_count() or 1
    ttas = [tta.parse(t) for t in (args.tta or ["none"])]
    modes = args.modes.split(",")
    tmp = tempfile.mkdtemp(prefix="bench-embed-")
    rows: List[str] = []
    try:
        write_shards(tmp, args.records, args.shards)
        files = list_shards(tmp, ["train"])
        for model in args.models.split(","):
            export_dir = export_model(model, os.path.join(tmp, model))
            results: Dict[str, float] = {}
            embedder = Embedder(export_dir)
            for mode_tta in ttas:
                reference = None
                suffix = "" if mode_tta == "none" else f" --tta={mode_tta}"

                def timed(mode: str, run: Callable[[], object]) -> None:
                    nonlocal reference
                    t0, c0 = time.perf_counter(), time.process_time()
                    embedded = run()
                    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
                    n = len(embedded.image_ids)
                    if reference is None:
                        reference = embedded
                    diff = float(np.abs(embedded.vectors - reference.vectors).max())
                    same = embedded.image_ids == reference.image_ids
                    results[mode + suffix] = n / seconds
                    per_cpu = f"{n / cpu:.1f}" if mode in ("local", "direct") else "-"
                    rows.append(f"| {model} | {mode}{suffix} | {n} | {seconds:.1f} | {n / seconds:.1f} | "
                                f"{n / seconds / cores:.1f} | {per_cpu} | {diff:.1e}{'' if same else ' ORDER DIFFERS'}"
                                f" | {os.getloadavg()[0]:.1f} |")
                    print(rows[-1], flush=True)

                def beam(mode: str, beam_args: List[str]) -> None:
                    out = os.path.join(tmp, model, f"emb-{mode}-{mode_tta}")
                    timed(mode, lambda: embed_with_beam(files, export_dir, out, args.batch_size, beam_args,
                                                        tta=mode_tta))

                embed_records(files[:1], embedder, 8, mode_tta)  # warm-up: first calls (per size), tf.data start
                timed("local", lambda: embed_records(files, embedder, args.batch_size, mode_tta))
                if "direct" in modes:
                    beam("direct", ["--runner=DirectRunner"])
                if "direct_mp" in modes:
                    beam("direct_mp", ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                                       f"--direct_num_workers={args.workers}"])
                if "dask" in modes or "dask_warm" in modes:
                    with dask_cluster(workers=args.workers) as address:
                        dask_args = [DASK_RUNNER, f"--dask_client_address={address}"]
                        beam("dask", dask_args)
                        if "dask_warm" in modes:
                            beam("dask_warm", dask_args)
            first, rate = next(iter(results.items()))
            print(f"  ratios vs {first}: " + ", ".join(f"{m} {v / rate:.2f}x" for m, v in results.items()), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{cores} cores, {args.records} records of 341x256 in {args.shards} shards, batch {args.batch_size}")
    print("| model | mode | images | s | img/s | img/s/core | img/CPU-s | max abs diff vs local | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
