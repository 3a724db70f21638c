"""`python -m bench.neighbours_gap --demo_dir=OUT/demo`: a finished demo's GAP with the penalty and DBA
neighbours from the Annoy path against the exact path that the demo ran.

The demo's data sets (512 and 275 references) sit far below `--neighbours_exact_below` (50,000), so
`make demo` runs the exact path. For every demo index built with `--other_landmark_penalty` or
`--dba_k`, this reruns the demo's own recorded stage commands (OUT/stages/index_*.json, predict_*,
evaluate_*) with `--neighbours_exact_below=0` added to the index build, into OUT/annoy/{index,predict,
eval}/... (the demo's folders are only read; a rerun resumes: finished stages are skipped), and prints
one row per method: GAP and top-1 of both paths, their difference, and how many references got the
same penalty on both paths (equal neighbour sets give equal penalties: the cosines are exact on both).
It exits 1 when a GAP differs by more than `--tolerance` (issue 22: 0.005).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("demo_dir", None, "a finished demo's folder (OUT/demo: holds stages/, index/, predict/, eval/)")
flags.DEFINE_float("tolerance", 0.005, "largest allowed |GAP(Annoy) - GAP(exact)|")
NEIGHBOUR_FLAGS = ("--other_landmark_penalty", "--dba_k")


def _stage(out: str, name: str) -> Optional[List[str]]:
    path = os.path.join(out, "stages", f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["command"]


def _annoy(out: str, command: List[str]) -> List[str]:
    """The command with its index/predict/eval folders moved under OUT/annoy/."""
    moved = []
    for arg in command:
        for part in ("index", "predict", "eval"):
            arg = arg.replace(f"{out}/{part}/", f"{out}/annoy/{part}/")
        moved.append(arg)
    return moved


def _flag(command: List[str], name: str) -> str:
    return next((a.split("=", 1)[1] for a in command if a.startswith(f"--{name}=")), "")


def _run(command: List[str], done: str) -> None:
    if os.path.exists(done):
        return
    print("  $ python " + " ".join(command), flush=True)
    subprocess.run([sys.executable, *command], check=True, stdout=subprocess.DEVNULL)


def _metrics(path: str) -> Dict:
    with open(path) as f:
        return json.load(f)


def compare(out: str) -> List[Dict]:
    """Rebuild, predict and evaluate every penalty/DBA method of the demo in `out` on the Annoy path."""
    out = os.path.abspath(out).rstrip("/")
    rows = []
    for index_json in sorted(glob.glob(os.path.join(out, "stages", "index_*.json"))):
        key = os.path.basename(index_json)[len("index_"):-len(".json")]
        build = _stage(out, f"index_{key}")
        if not any(a == f or a.startswith(f + "=") for a in build for f in NEIGHBOUR_FLAGS):
            continue
        index_dir = _flag(build, "output_dir")
        annoy_build = _annoy(out, build) + ["--neighbours_exact_below=0"]
        _run(annoy_build, os.path.join(_flag(annoy_build, "output_dir"), "config.json"))
        penalties = {}
        for path, name in ((index_dir, "exact"), (_flag(annoy_build, "output_dir"), "annoy")):
            file = os.path.join(path, "penalties.npy")
            penalties[name] = np.load(file) if os.path.exists(file) else None
        for predict_json in sorted(glob.glob(os.path.join(out, "stages", "predict_*.json"))):
            method = os.path.basename(predict_json)[len("predict_"):-len(".json")]
            predict = _stage(out, f"predict_{method}")
            evaluate = _stage(out, f"evaluate_{method}")
            if _flag(predict or [], "index_dir").rstrip("/") != index_dir.rstrip("/") or evaluate is None:
                continue
            annoy_predict, annoy_evaluate = _annoy(out, predict), _annoy(out, evaluate)
            _run(annoy_predict, os.path.join(_flag(annoy_predict, "output_dir"), "predict_stats.json"))
            _run(annoy_evaluate, os.path.join(_flag(annoy_evaluate, "output_dir"), "metrics.json"))
            exact = _metrics(os.path.join(_flag(evaluate, "output_dir"), "metrics.json"))
            annoy = _metrics(os.path.join(_flag(annoy_evaluate, "output_dir"), "metrics.json"))
            row = {"method": method, "index": key, "gap_exact": exact["gap"], "gap_annoy": annoy["gap"],
                   "top1_exact": exact["accuracy"], "top1_annoy": annoy["accuracy"]}
            if penalties["exact"] is not None and penalties["annoy"] is not None:
                row["same_penalty"] = float(np.mean(np.abs(penalties["exact"] - penalties["annoy"]) <= 1e-6))
                row["references"] = len(penalties["exact"])
            rows.append(row)
    return rows


def report(rows: List[Dict]) -> str:
    lines = ["| method | GAP exact | GAP Annoy | difference | top-1 exact | top-1 Annoy | same penalty |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        same = f"{r['same_penalty']:.2%} of {r['references']}" if "same_penalty" in r else "-"
        lines.append(f"| {r['method']} | {r['gap_exact']:.4f} | {r['gap_annoy']:.4f} | "
                     f"{r['gap_annoy'] - r['gap_exact']:+.4f} | {r['top1_exact']:.4f} | {r['top1_annoy']:.4f} | {same} |")
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    if not FLAGS.demo_dir or not os.path.isdir(os.path.join(FLAGS.demo_dir, "stages")):
        sys.exit(f"neighbours_gap: --demo_dir={FLAGS.demo_dir}: expected a finished demo's folder (with stages/)")
    rows = compare(FLAGS.demo_dir)
    if not rows:
        sys.exit(f"neighbours_gap: no index in {FLAGS.demo_dir} was built with {' or '.join(NEIGHBOUR_FLAGS)}")
    print(report(rows))
    worst = max(abs(r["gap_annoy"] - r["gap_exact"]) for r in rows)
    print(f"largest |GAP difference|: {worst:.4f} (tolerance {FLAGS.tolerance})")
    sys.exit(0 if worst <= FLAGS.tolerance else 1)


if __name__ == "__main__":
    app.run(main)
