"""`python -m indexer.store.verify_index IDX` (`make verify-index INDEX=IDX`): check every file of an
index folder against its manifest now, the local-feature store's segments included.

Opening an index (`make predict`, `Recognizer.open`) checks each file's size and sha256 but the
local-feature store's only by size and header, and each of its segments (one per reference
shard) the first time prediction reads a record of it: at 1.2M references the store is tens of
GB, and hashing it whole at every open would cost minutes. This command does the full check on
request (after copying an index, say). Prints one line, exit status 0, or one error line, exit 1.
"""

from __future__ import annotations

import sys
import time
from typing import List, Optional

from indexer.store.index_dir import open_index
from pipelines.cli.cli_errors import SettingsError, run_argv


def verify(argv: List[str]) -> str:
    if len(argv) != 1 or argv[0].startswith("-"):
        raise SettingsError("usage: python -m indexer.store.verify_index INDEX_DIR")
    t0 = time.perf_counter()
    index = open_index(argv[0], verify_features=True)
    store = index.local_features
    features = "no local features" if store is None else (
        f"local features: {len(store):,} records in {len(index.manifest.local_feature_segments)} segment(s)")
    return (f"{argv[0]}: {index.manifest.n_items:,} items, every file matches the manifest ({features}); "
            f"{time.perf_counter() - t0:.1f} s")


def main(argv: Optional[List[str]] = None) -> None:
    print(run_argv("indexer.store.verify_index", verify, argv))


if __name__ == "__main__":
    main()
    sys.exit(0)
