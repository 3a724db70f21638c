"""Issue 25, MEDIUM 10: `--retry_failed` fetches again, on a rerun, the rows an earlier run failed
for a transient reason (timeout, connection_error, http_429, http_5xx), and only those; the
shards holding them are rewritten with their other records kept, and shard_index.json,
failures.csv and stats.json follow, every row still accounted for."""

from __future__ import annotations

import csv
import json

from pipelines import preprocess, shard_index
from tests.pipeline import helpers
from tests.pipeline.test_hostile_inputs import record_ids


def _failures(out) -> dict:
    with open(out / "failures.csv", newline="") as f:
        return {r["id"]: r["reason"] for r in csv.DictReader(f)}


def test_retry_failed_refetches_transient_failures_only(tmp_path, capsys):
    with helpers.FaultServer() as srv:
        rows = [f"g{i},{srv.url('img', str(i))},{i % 3}" for i in range(6)]
        rows += [f"f{i},{srv.url('flaky500', str(i))},{i % 3}" for i in range(3)]  # 500 once, then the image
        rows += [f"n1,{srv.url('404', 'x')},1", "c1,http://127.0.0.1:1/down.jpg,2"]  # permanent; still down
        (tmp_path / "in.csv").write_text("id,url,landmark_id\n" + "\n".join(rows) + "\n")
        out = tmp_path / "out"
        common = [f"--csv={tmp_path / 'in.csv'}", f"--output_dir={out}", "--val_fraction=0", "--num_shards=3",
                  "--fetch_retries=0", "--fetch_timeout=5", "--direct_running_mode=in_memory"]
        first = preprocess.run(common)
        assert first["failed_by_reason"] == {"connection_error": 1, "http_404": 1, "http_5xx": 3}
        assert preprocess.run(common) == first  # a plain rerun fetches nothing again
        assert sum(srv.hits[f"/flaky500/{i}"] for i in range(3)) == 3
        capsys.readouterr()
        again = preprocess.run([*common, "--retry_failed"])
        assert "rows_retried=4" in capsys.readouterr().out
        assert srv.hits["/404/x"] == 1 and srv.hits["/img/0"] == 1  # nothing else was fetched again
    assert again["written"] == 9 and again["failed_by_reason"] == {"connection_error": 1, "http_404": 1}
    assert again["rows_in"] == 11 and again["accounted_for"] is True
    assert record_ids(out) == sorted([f"g{i}" for i in range(6)] + [f"f{i}" for i in range(3)])
    assert _failures(out) == {"n1": "http_404", "c1": "connection_error"}
    index = shard_index.parse((out / shard_index.FILE).read_bytes())
    assert index.splits["train"].records == 9
    assert sum(index.splits["train"].label_totals().values()) == 9
    assert json.loads((out / "stats.json").read_text()) == again
