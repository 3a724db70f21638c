"""A PNG grid a person can check at a glance: each row is a query, then its nearest references.

Titles carry the landmark ids and similarities. With a solution, the query's title is green when
its answer is right (a landmark it shows, or no answer for a non-landmark image) and red when
wrong, and each neighbour is green or red by whether its landmark is one the query shows.
Without a solution everything stays black.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import FrozenSet, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from indexer.evaluation.names import label

RIGHT, WRONG, UNKNOWN = "green", "red", "black"


@dataclasses.dataclass(frozen=True)
class Tile:
    """One picture in the grid: encoded image (None: not available) and its caption."""

    jpeg: Optional[bytes]
    caption: str
    colour: str = UNKNOWN


def _decode(jpeg: Optional[bytes]) -> np.ndarray:
    from PIL import Image

    if jpeg is None:
        return np.full((64, 64, 3), 200, dtype=np.uint8)
    with Image.open(io.BytesIO(jpeg)) as img:
        return np.asarray(img.convert("RGB"))


def query_row(
    query_id: str,
    query_jpeg: Optional[bytes],
    answer: Optional[Tuple[int, float]],
    truth: Optional[FrozenSet[int]],
    neighbours: Sequence[Tuple[Optional[bytes], int, float]],
    names: Optional[Mapping[int, str]] = None,
) -> List[Tile]:
    """Tiles for one query: itself (with its answer) then each (jpeg, landmark, similarity);
    landmarks named from `names` when given (indexer/evaluation/names.py)."""
    names = names or {}
    said = "no landmark" if answer is None else f"-> {_short(label(answer[0], names))} ({answer[1]:.2f})"
    if truth is None:
        colour = UNKNOWN
    elif answer is None:
        colour = WRONG if truth else RIGHT
    else:
        colour = RIGHT if answer[0] in truth else WRONG
    tiles = [Tile(query_jpeg, f"query {query_id[:16]}\n{said}", colour)]
    for jpeg, landmark, sim in neighbours:
        ncolour = UNKNOWN if truth is None else (RIGHT if landmark in truth else WRONG)
        name = f"\n{_short(names[landmark])}" if names.get(landmark) else ""
        tiles.append(Tile(jpeg, f"landmark {landmark}{name}\nsim {sim:.2f}", ncolour))
    return tiles


def _short(text: str, width: int = 24) -> str:
    """A caption line that fits a tile."""
    return text if len(text) <= width else text[:width - 1] + "…"


def draw_grid(rows: Sequence[Sequence[Tile]], path: str) -> None:
    """Write the rows of tiles as one PNG (temp + rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.0 * n_cols, 2.3 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(row):
                continue
            tile = row[c]
            ax.imshow(_decode(tile.jpeg))
            ax.set_title(tile.caption, fontsize=8, color=tile.colour)
            if tile.colour != UNKNOWN:
                ax.axis("on")
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_edgecolor(tile.colour)
                    spine.set_linewidth(3 if c == 0 else 2)
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}"
    fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    os.replace(tmp, path)
