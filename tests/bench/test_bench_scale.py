"""`make bench-scale --smoke`: every section runs end to end on tiny inputs (keeps the bench from rotting)."""

from __future__ import annotations

import subprocess
import sys


def test_bench_scale_smoke_prints_every_row_with_agreement():
    # the dask section's smoke runs apart (test_bench_scale_dask.py): two clusters cost a minute
    done = subprocess.run([sys.executable, "-m", "bench.bench_scale", "--smoke", "--sections=neighbours"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines()
            if line.startswith("| penalty") or line.startswith("| dba")]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [("penalty", "600"), ("dba", "600"),
                                                            ("penalty", "1,200"), ("dba", "1,200")]
    for row in rows:  # Annoy and exact both ran (seconds, peak MB) and agree on >= 95% of the top-k sets
        assert float(row[3]) >= 0 and float(row[4]) > 0 and float(row[5].split()[0]) >= 0 and float(row[6]) > 0
        assert float(row[7].strip().rstrip("%")) >= 95.0
    assert "(projected from 800 rows)" in rows[2][5]  # past --scale_exact_rows: a sample of rows
    assert "penalty: Annoy path seconds ~ N^" in done.stdout and "dba: Annoy path seconds ~ N^" in done.stdout


def test_bench_scale_lists_its_sections():
    from bench import bench_scale

    assert [s.NAME for s in bench_scale.SECTIONS] == ["dask", "neighbours", "local_features"]


def test_bench_scale_local_features_smoke_prints_the_per_reference_costs():
    done = subprocess.run([sys.executable, "-m", "bench.bench_scale", "--smoke", "--sections=local_features"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| 64 ")]
    assert len(rows) == 1, done.stdout
    row = [c.strip() for c in rows[0]]
    # F = 64: a record is 64 x 136 + 2 bytes; 12 references share one .npy header (a multiple of 64 bytes)
    header = int(row[2].replace(",", "")) * 12 - 12 * (64 * 136 + 2)
    assert 0 < header <= 512 and header % 64 == 0
    assert float(row[3]) > 0 and row[4].endswith("GB") and float(row[5]) > 0
    assert row[8] == "0 bytes" and "(4 refs," in row[9]


def test_bench_scale_refuses_an_unknown_section():
    done = subprocess.run([sys.executable, "-m", "bench.bench_scale", "--smoke", "--sections=nope"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "unknown section" in done.stderr and "Traceback" not in done.stderr
