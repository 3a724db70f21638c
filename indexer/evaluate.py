"""`python -m indexer.evaluate --submission=S --solution=SOL [--neighbours=N] [--output_dir=D]`

Scores a submission against a solution CSV (see outputs.py): GAP and accuracy of the submitted
answers; with the raw neighbours also top-1 / top-5 accuracy of the vote and the accuracy-vs-k
curve (top-1 accuracy when only the first k neighbours vote). Prints the metrics and writes
D/metrics.json, D/accuracy_vs_k.png and D/evaluate_config.json (D defaults to the submission's
folder).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

from absl import app, flags

from indexer import outputs
from indexer.evaluation import metrics, solutions
from indexer.ranking.vote import METHODS
from pipelines.cli import console, flag_checks
from pipelines.cli.cli_errors import InputError, absl_main

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line (defined only when run as a program, so modules import side-effect free)."""
    flags.DEFINE_string("submission", None, "submission.csv (id,landmarks)")
    flags.DEFINE_string("solution", None, "solution CSV: id,landmark_id (empty = non-landmark), or the "
                        "2019-2021 id,landmarks,Usage (GAP also per Public / Private)")
    flags.DEFINE_string("neighbours", None, "neighbours.csv from predict (enables top-k and the curve)")
    flags.DEFINE_string("output_dir", None, "where metrics.json and the plot go (default: the submission's folder)")
    flags.DEFINE_enum("vote", "sum", METHODS, "how neighbours vote for top-k accuracy (as in predict)")
    flags.mark_flags_as_required(["submission", "solution"])


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    submission: str
    solution: str
    neighbours: Optional[str]
    output_dir: str
    vote: str


def evaluate(config: EvaluateConfig) -> Dict:
    """Compute every metric the inputs allow and write metrics.json (+ the curve's PNG)."""
    flag_checks.output_dir(config.output_dir)
    scored = solutions.read_solution(config.solution)
    solution = scored.truth
    predictions = scored.scored(outputs.read_submission(config.submission))
    check_ids(config, predictions, solution)
    result: Dict = {
        "queries": len(solution),
        "landmark_queries": sum(1 for t in solution.values() if t),
        "predicted": len(predictions),
        "gap": metrics.gap(predictions, solution),
        "accuracy": metrics.accuracy(predictions, solution),
        **usage_gaps(scored, predictions),
    }
    if config.neighbours:
        neighbours = {i: v for i, v in outputs.read_neighbours(config.neighbours).items() if i not in scored.ignored}
        top = metrics.topk_accuracy(neighbours, solution, (1, 5), config.vote)
        max_k = max((len(v) for v in neighbours.values()), default=0)
        curve = metrics.accuracy_vs_neighbours(neighbours, solution, max_k, config.vote)
        result.update(top1=top[1], top5=top[5], accuracy_vs_k=curve)
        plot_curve(curve, os.path.join(config.output_dir, "accuracy_vs_k.png"))
    outputs.write_json(os.path.join(config.output_dir, "metrics.json"), result)
    return result


def check_ids(config: EvaluateConfig, predictions: Dict, solution: Dict) -> None:
    """The submission answers only queries of the solution, and the solution has a landmark query
    (else GAP is undefined): InputError naming the file otherwise."""
    unknown = [image_id for image_id in predictions if image_id not in solution]
    if unknown:
        raise InputError(f"{config.submission}: {len(unknown)} id(s) not in the solution {config.solution}, "
                         f"e.g. {unknown[0]!r}")
    if not any(solution.values()):
        raise InputError(f"{config.solution}: no query with a landmark: GAP and accuracy are undefined")
def usage_gaps(scored: solutions.Solution, predictions) -> Dict[str, Optional[float]]:
    """`gap_public` / `gap_private` for a 2019-2021 solution (None for a part without landmark
    queries); nothing for the 2018 layout."""
    if not any(scored.usage.values()):
        return {}
    out: Dict[str, Optional[float]] = {}
    for usage in solutions.USAGES:
        part = scored.subset(usage)
        mine = {i: p for i, p in predictions.items() if i in part}
        out[f"gap_{usage.lower()}"] = metrics.gap(mine, part) if any(part.values()) else None
    return out


def plot_curve(curve: List[float], path: str) -> None:
    """Top-1 accuracy against the number of voting neighbours."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ks = list(range(1, len(curve) + 1))
    ax.plot(ks, curve, marker="o")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("k (neighbours voting)")
    ax.set_ylabel("top-1 accuracy (landmark queries)")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.set_title("Accuracy vs k")
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}"
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def main(argv) -> None:
    del argv
    console.setup(FLAGS.verbosity)
    config = EvaluateConfig(
        submission=FLAGS.submission,
        solution=FLAGS.solution,
        neighbours=FLAGS.neighbours,
        output_dir=FLAGS.output_dir or os.path.dirname(os.path.abspath(FLAGS.submission)),
        vote=FLAGS.vote,
    )
    result = evaluate(config)
    outputs.write_json(os.path.join(config.output_dir, "evaluate_config.json"), dataclasses.asdict(config))
    for key, value in result.items():
        if key != "accuracy_vs_k":
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    define_flags()
    app.run(absl_main("indexer.evaluate", main))
