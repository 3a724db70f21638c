"""`bench.bench_embed --smoke`: both smoke models embedded locally and by the Beam job, the same vectors.

It imports TensorFlow (in its subprocess), so `make test` runs it in the TensorFlow pytest process."""

from __future__ import annotations

from tests.bench.helpers import number, positive, run_smoke, table


def test_smoke_embeds_each_model_locally_and_with_beam():
    out = run_smoke("bench_embed")
    rows = table(out, "model")
    assert [(r["model"], r["mode"]) for r in rows] == [
        ("tiny", "local"), ("tiny", "direct"), ("mobilenet", "local"), ("mobilenet", "direct")]
    for r in rows:
        assert number(r["images"]) == 16, r
        assert number(r["s"]) >= 0, r  # printed to 0.1 s: the local run can show 0.0
        for figure in ("img/s", "img/s/core", "img/CPU-s"):
            assert positive(number(r[figure])), (figure, r)
        # the Beam job's vectors are the local path's, in the same order
        assert "ORDER DIFFERS" not in r["max abs diff vs local"] and number(r["max abs diff vs local"]) < 1e-4, r
