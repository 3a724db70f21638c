"""`bench.bench_sampler --smoke`: the old sampler and every pool policy, with sane figures."""

from __future__ import annotations

from tests.bench.helpers import line_with, number, run_smoke, table
from trainer.input.sampling import POLICIES


def test_smoke_compares_the_old_sampler_with_every_policy():
    out = run_smoke("bench_sampler")
    assert "300 landmarks" in line_with(out, "GLD-shaped labels:")  # the smoke size applied
    rows = table(out, "sampler")
    assert len(rows) == 1 + len(POLICIES)
    assert rows[0]["sampler"].startswith("old:")
    assert [r["sampler"].split(", ")[-1].split()[0] for r in rows[1:]] == list(POLICIES)
    assert sum("(default)" in r["sampler"] for r in rows) == 1
    for r in rows:
        for share in ("groups 2+ distinct", "landmarks w/ pair", "landmarks drawn"):
            assert r[share].endswith("%") and 0 < number(r[share]) <= 100, (share, r)
        assert 1 <= number(r["mean distinct (4+)"]) <= 4, r  # K = 4
        assert number(r["records held"]) > 0 and number(r["MB held"]) >= 0, r
    targets = line_with(out, "targets (new, default policy):")
    assert targets.count(": PASS") + targets.count(": FAIL") == 3, targets
