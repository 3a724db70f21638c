"""Validation by nearest-neighbour retrieval: val queries against train references.

top1 is the fraction of queries whose nearest reference shows the same landmark; recall@k the
fraction with at least one same-landmark reference among the k nearest. Queries whose landmark has
no reference (or no landmark) cannot be answered and are left out (counted in `queries_skipped`).
Similarity is the dot product of unit embeddings; queries go in blocks to bound memory.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf


def retrieval_metrics(queries: np.ndarray, query_labels: np.ndarray, refs: np.ndarray, ref_labels: np.ndarray,
                      ks: Sequence[int], block: int = 1024) -> Dict[str, float]:
    """{"top1", "recall@k"..., "queries", "queries_skipped"} for unit embeddings."""
    answerable = np.isin(query_labels, ref_labels[ref_labels >= 0]) & (query_labels >= 0)
    queries, query_labels = queries[answerable], query_labels[answerable]
    kmax = min(max(ks), len(refs))
    hits = np.zeros((len(queries), kmax), dtype=bool)
    for start in range(0, len(queries), block):
        sims = queries[start : start + block] @ refs.T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :kmax]
        hits[start : start + block] = ref_labels[top] == query_labels[start : start + block, None]
    out = {"top1": float(hits[:, 0].mean()) if len(hits) else 0.0}
    for k in ks:
        out[f"recall@{k}"] = float(hits[:, :k].any(axis=1).mean()) if len(hits) else 0.0
    out["queries"] = int(len(queries))
    out["queries_skipped"] = int((~answerable).sum())
    return out


def embed(infer: Callable[[tf.Tensor], tf.Tensor], dataset: tf.data.Dataset) -> Tuple[np.ndarray, np.ndarray]:
    """(embeddings [N, D], labels [N]) of an (images, labels) dataset through `infer` (inference mode)."""
    embeddings, labels = [], []
    for images, batch_labels in dataset:
        embeddings.append(infer(images).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(embeddings), np.concatenate(labels)


def inference_fn(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """The model in inference mode as one traced function; build it once per run (not per epoch:
    a fresh tf.function retraces) and keep it off the model (it would be saved with the export)."""
    return tf.function(lambda images: model(images, training=False), reduce_retracing=True)


def evaluate(infer: Callable[[tf.Tensor], tf.Tensor], queries: tf.data.Dataset, references: tf.data.Dataset,
             ks: Sequence[int]) -> Dict[str, float]:
    """Retrieval metrics of the embedding `infer` on query and reference datasets."""
    q, ql = embed(infer, queries)
    r, rl = embed(infer, references)
    return retrieval_metrics(q, ql, r, rl, ks)
