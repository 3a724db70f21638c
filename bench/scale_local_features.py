"""bench_scale section `local_features`: what the spatial-verification store costs per reference, and
that cost projected to GLD's 1.2M references (`--lf_project`).

The images are stored JPEGs as the preprocessing writes them (`pipelines/images/image.process_image`
at `--lf_image_size`) of synthetic landmark photos (pipelines/synthetic.py), or of the JPEG files
under `--lf_source` (e.g. landmarks-mini's images/; cycled when fewer than `--lf_images`). For each
F in `--lf_features`, in a fresh process (TensorFlow's file system writes the parts; the
preprocessing sections hold the `tfrecord` package), the section runs the Beam embedding job's own
per-shard steps (indexer/embedding/beam_embed.py) without the model:

- extraction: `local_features.extract_records` on one thread, as one job task does, over
  `--lf_shards` shards; core-seconds per image = the process's CPU seconds / images (OpenCV's own
  threads included);
- parts: `local_features.write_part` per shard, then `merge_parts` into one store (the index
  build's step): bytes per reference (the store's size / N) and merge MB/s;
- open: the hashing an index open did before segments (a sha256 of the whole store, measured on
  this store, projected) against now (none at open: the store's size and header; a segment's
  digest on first read, measured here on one segment).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

from absl import flags

NAME = "local_features"

FLAGS = flags.FLAGS
flags.DEFINE_list("lf_features", ["256", "1000"], "local_features section: F, max SIFT features per reference")
flags.DEFINE_integer("lf_images", 300, "local_features section: images to extract per F")
flags.DEFINE_integer("lf_shards", 4, "local_features section: shards (parts, store segments) they are split into")
flags.DEFINE_integer("lf_image_size", 256, "local_features section: stored shorter side (the preprocessing's default)")
flags.DEFINE_string("lf_source", None, "local_features section: a folder of JPEGs (searched recursively) instead of "
                    "synthetic photos")
flags.DEFINE_integer("lf_project", 1_200_000, "local_features section: references to project to (GLDv2 train)")

SMOKE = dict(features=[64], images=12, shards=3)


def stored_images(count: int, image_size: int, source: str = None) -> List[bytes]:
    """`count` JPEGs as the preprocessing stores them."""
    import numpy as np

    from pipelines import synthetic
    from pipelines.images import image

    config = image.ImageConfig(image_size=image_size)
    if source:
        paths = sorted(glob.glob(os.path.join(source, "**", "*.jp*g"), recursive=True))
        if not paths:
            raise SystemExit(f"bench_scale: no .jpg files under --lf_source={source}")
        originals = [open(p, "rb").read() for p in paths[:count]]
    else:
        originals = []
        for i in range(min(count, 60)):  # 60 distinct photos of 12 scenes, cycled
            rng = np.random.default_rng(i)
            world = synthetic.render_scene(0, f"s{i % 12}")
            originals.append(synthetic.encode(synthetic.photograph(world, rng), rng))
    stored = [image.process_image(data, config)[0] for data in originals]
    return [stored[i % len(stored)] for i in range(count)]


def measure(spec: Dict) -> Dict:
    """One F, in this process: extraction, parts, merge, open (see the module doc)."""
    import numpy as np

    from indexer.ranking import local_features

    f, work = spec["features"], spec["dir"]
    images = [open(p, "rb").read() for p in sorted(glob.glob(os.path.join(work, "img-*.jpg")))]
    shards = np.array_split(np.arange(len(images)), spec["shards"])
    extractor = local_features.Extractor(f)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    blocks = [local_features.extract_records([images[i] for i in shard], f, extractor) for shard in shards]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    parts = [local_features.write_part(os.path.join(work, f"shard-{s}{local_features.PART_SUFFIX}"), block)
             for s, block in enumerate(blocks)]
    store_path = os.path.join(work, f"store-{f}.npy")
    t0 = time.perf_counter()
    local_features.merge_parts(store_path, parts, f)
    merge_s = time.perf_counter() - t0
    size = os.path.getsize(store_path)
    t0 = time.perf_counter()
    digest = hashlib.sha256()
    with open(store_path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    full_hash_s = time.perf_counter() - t0
    store = local_features.FeatureStore(store_path, local_features.open_store(store_path),
                                        [p.n_items for p in parts], [p.sha256 for p in parts])
    t0 = time.perf_counter()
    store[0]  # the first read of segment 0 checks its digest
    first_read_s = time.perf_counter() - t0
    counts = [int(c) for block in blocks for c in block["count"]]
    for p in parts:
        os.remove(p.path)
    os.remove(store_path)
    return {"features": f, "images": len(images), "cpu_s": cpu, "wall_s": wall, "store_bytes": size,
            "merge_s": merge_s, "full_hash_s": full_hash_s, "first_read_s": first_read_s,
            "segment_items": parts[0].n_items, "mean_features": float(np.mean(counts)),
            "record_bytes": local_features.store_dtype(f).itemsize}


def run(smoke: bool) -> None:
    features = SMOKE["features"] if smoke else [int(x) for x in FLAGS.lf_features]
    count = SMOKE["images"] if smoke else FLAGS.lf_images
    shards = SMOKE["shards"] if smoke else FLAGS.lf_shards
    n = FLAGS.lf_project
    with tempfile.TemporaryDirectory(prefix="bench-lf-") as work:
        images = stored_images(count, FLAGS.lf_image_size, FLAGS.lf_source)
        for i, data in enumerate(images):
            with open(os.path.join(work, f"img-{i:06d}.jpg"), "wb") as fh:
                fh.write(data)
        source = FLAGS.lf_source or "synthetic photos (pipelines/synthetic.py)"
        print(f"{count} stored JPEGs of {source} at --lf_image_size={FLAGS.lf_image_size} "
              f"({sum(map(len, images)) / len(images) / 1024:.1f} KB each), {shards} shards; extraction on one thread "
              f"as one job task; {os.cpu_count()} cores; projected to {n:,} references")
        print("| F | mean features | bytes per reference | core-s per image | store at N | core-hours at N | "
              "merge MB/s | open, before: sha256 of the store at N | open, now: hashed | first read of a segment |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for f in features:
            done = subprocess.run([sys.executable, "-m", "bench.scale_local_features", json.dumps(
                {"features": f, "dir": work, "shards": shards})], check=True, capture_output=True, text=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            per_ref = r["store_bytes"] / r["images"]
            per_image = r["cpu_s"] / r["images"]
            hash_rate = r["store_bytes"] / max(r["full_hash_s"], 1e-9)
            segment_mb = r["segment_items"] * r["record_bytes"] / 2**20
            print(f"| {f} | {r['mean_features']:.0f} | {per_ref:,.0f} | {per_image:.4f} | "
                  f"{per_ref * n / 1e9:.1f} GB | {per_image * n / 3600:.1f} | "
                  f"{r['store_bytes'] / 2**20 / max(r['merge_s'], 1e-9):.0f} | "
                  f"{per_ref * n / hash_rate:.0f} s ({hash_rate / 2**20:.0f} MB/s) | 0 bytes | "
                  f"{r['first_read_s'] * 1000:.1f} ms ({r['segment_items']} refs, {segment_mb:.1f} MB) |", flush=True)
    print("bytes per reference = the merged store's size / references (F x 136 + 2 bytes a record, the .npy header "
          "shared); core-hours at N = core-s per image x N / 3600 (the embedding job's extraction, spread over its "
          "workers); open, before = one thread hashing the whole store at every index open, at the measured rate")


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
