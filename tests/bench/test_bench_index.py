"""`bench.bench_index --smoke`: exact search and every Annoy setting, with sane figures."""

from __future__ import annotations

from tests.bench.helpers import number, positive, run_smoke, table


def test_smoke_times_exact_search_and_every_forest_setting():
    # A flag on the command line wins over the smoke value (here the tree counts).
    out = run_smoke("bench_index", "--n_trees=4,8")
    rows = table(out, "method")
    exact, annoy = rows[0], rows[1:]
    assert exact["method"] == "exact (BLAS)" and exact["recall@10"] == "1.000"
    assert [(r["n_trees"], r["search_k"]) for r in annoy] == [("4", "-1"), ("4", "200"), ("8", "-1"), ("8", "200")]
    for r in rows:
        assert positive(number(r["QPS"])) and positive(number(r["vs exact"])), r
    recalls = [number(r["recall@10"]) for r in annoy]
    assert all(0 < x <= 1 for x in recalls), recalls
    # 8 trees searched with 200 candidates on 2,000 clustered vectors find nearly all true
    # neighbours: an index returning the wrong ids would score near 0.
    assert recalls[-1] >= 0.9, recalls
    for r in annoy:
        assert number(r["build s"]) >= 0 and number(r["size MB"]) >= 0, r
