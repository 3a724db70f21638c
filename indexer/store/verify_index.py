"""`python -m indexer.store.verify_index --index_dir=IDX` (`make verify-index INDEX=IDX`): check every
file of an index folder against its manifest now, the local-feature store's segments included.

Opening an index (`make predict`, `Recognizer.open`) checks each file's size and sha256 but the
local-feature store's only by size and header, and each of its segments (one per reference
shard) the first time prediction reads a record of it: at 1.2M references the store is tens of
GB, and hashing it whole at every open would cost minutes. This command does the full check on
request (after copying an index, say). Prints one line and exits 0, or one error line and exits 1.
"""

from __future__ import annotations

import time

from absl import app, flags

from indexer.store.index_dir import open_index
from pipelines.cli.cli_errors import absl_main

FLAGS = flags.FLAGS


def verify(index_dir: str) -> str:
    """One line saying what was checked; `IndexIntegrityError` (one line) on the first bad file or segment."""
    t0 = time.perf_counter()
    index = open_index(index_dir, verify_features=True)
    store = index.local_features
    features = "no local features" if store is None else (
        f"local features: {len(store):,} records in {len(index.manifest.local_feature_segments)} segment(s)")
    return (f"{index_dir}: {index.manifest.n_items:,} items, every file matches the manifest ({features}); "
            f"{time.perf_counter() - t0:.1f} s")


def main(argv) -> None:
    del argv
    print(verify(FLAGS.index_dir))


if __name__ == "__main__":
    flags.DEFINE_string("index_dir", None, "index folder to check (indexer.build's --output_dir)")
    flags.mark_flag_as_required("index_dir")
    app.run(absl_main("indexer.store.verify_index", main))
