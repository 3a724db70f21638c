"""Triplet losses with online mining, as pure functions of (labels [B], embeddings [B, D]).

Distances are Euclidean between embeddings (unit vectors in this project, so within [0, 2]).
Anchor-positive pairs are distinct batch positions with equal labels; negatives have another label.
Every loss returns 0 for a batch without a valid triplet (no positive pair, or no negative), so a
replica whose batch happens to hold one landmark contributes nothing instead of NaN.

- `semihard_loss` (Schroff et al., FaceNet): for each anchor-positive pair, the closest negative that
  is farther than the positive; when none is, the farthest negative. Mean over pairs with a negative.
- `batch_hard_loss` (Hermans et al.): per anchor, the farthest positive and the closest negative.
  Mean over anchors that have both.
- `batch_all_loss` (Hermans et al.): every valid triplet; mean over those with a positive loss.

`arcface_loss` (Deng et al., ArcFace; sub-centers: Deng et al. 2020) is the classification-style
alternative the Kaggle landmark winners trained with: it also needs the class centres of a
training-only head (trainer/network/heads.py), so it is not in `LOSSES`.
"""

from __future__ import annotations

import math
from typing import Callable, Dict

import numpy as np
import tensorflow as tf

# --arcface_margin=dynamic: margins from DYNAMIC_MARGIN_RANGE[1] (rarest class) down to [0] (most frequent).
DYNAMIC_MARGIN_RANGE = (0.05, 0.5)
DYNAMIC_MARGIN_POWER = 0.25


def pairwise_distances(embeddings: tf.Tensor) -> tf.Tensor:
    """[B, B] Euclidean distances, exactly 0 on the diagonal and finite gradients everywhere."""
    e = tf.cast(embeddings, tf.float32)
    sq = tf.reduce_sum(tf.square(e), axis=1)
    d2 = sq[:, None] - 2.0 * tf.matmul(e, e, transpose_b=True) + sq[None, :]
    d2 = tf.maximum(d2, 0.0)
    zero = tf.cast(tf.equal(d2, 0.0), tf.float32)
    # sqrt has an infinite slope at 0: shift exact zeros away, then put them back.
    return tf.sqrt(d2 + zero * 1e-16) * (1.0 - zero)


def _masks(labels: tf.Tensor):
    labels = tf.reshape(labels, [-1])
    same = tf.equal(labels[:, None], labels[None, :])
    not_self = tf.logical_not(tf.eye(tf.size(labels), dtype=tf.bool))
    return tf.logical_and(same, not_self), tf.logical_not(same)


def _safe_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    mask = tf.cast(mask, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))


def semihard_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float) -> tf.Tensor:
    dist = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    big = tf.reduce_max(dist) + 1.0
    d_ap = dist[:, :, None]  # [anchor, positive, 1]
    d_an = dist[:, None, :]  # [anchor, 1, negative]
    neg = negative[:, None, :]
    farther = tf.logical_and(neg, d_an > d_ap)
    # closest negative beyond the positive, else the farthest negative
    semihard = tf.reduce_min(tf.where(farther, d_an, big), axis=2)
    fallback = tf.reduce_max(tf.where(neg, d_an, -1.0), axis=2)
    chosen = tf.where(tf.reduce_any(farther, axis=2), semihard, fallback)
    losses = tf.nn.relu(dist - chosen + margin)
    has_negative = tf.reduce_any(negative, axis=1, keepdims=True)
    return _safe_mean(losses, tf.logical_and(positive, has_negative))


def batch_hard_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float) -> tf.Tensor:
    dist = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    big = tf.reduce_max(dist) + 1.0
    hardest_pos = tf.reduce_max(tf.where(positive, dist, 0.0), axis=1)
    hardest_neg = tf.reduce_min(tf.where(negative, dist, big), axis=1)
    valid = tf.logical_and(tf.reduce_any(positive, axis=1), tf.reduce_any(negative, axis=1))
    return _safe_mean(tf.nn.relu(hardest_pos - hardest_neg + margin), valid)


def batch_all_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float) -> tf.Tensor:
    dist = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    losses = tf.nn.relu(dist[:, :, None] - dist[:, None, :] + margin)
    valid = tf.logical_and(positive[:, :, None], negative[:, None, :])
    return _safe_mean(losses, tf.logical_and(valid, losses > 0.0))


def dynamic_margins(counts, low: float = DYNAMIC_MARGIN_RANGE[0], high: float = DYNAMIC_MARGIN_RANGE[1],
                    power: float = DYNAMIC_MARGIN_POWER) -> np.ndarray:
    """Per-class ArcFace margins that fall with the class's frequency (`--arcface_margin=dynamic`).

    m_c = low + (high - low) * (f_c - min f) / (max f - min f), with f_c = n_c ** -power and n_c the
    class's train photo count: the rarest class gets `high`, the most frequent `low`. This is the
    dynamic margin of the GLR 2020 winners (Henkel & Singer, "Supporting large-scale image recognition
    with out-of-domain samples", arXiv:2010.01650: power 1/4, margins within [0.05, 0.5]), rescaled
    min-max as they describe. Classes all of one size get `high`.
    """
    n = np.asarray(counts, np.float64)
    if n.ndim != 1 or n.size == 0 or not np.all(n > 0):
        raise ValueError(f"dynamic margins need a positive count per class, got {counts!r:.80}")
    f = n ** -power
    spread = f.max() - f.min()
    unit = (f - f.min()) / spread if spread > 0 else np.ones_like(f)
    return (low + (high - low) * unit).astype(np.float32)


def arcface_loss(labels: tf.Tensor, embeddings: tf.Tensor, centers: tf.Tensor, scale: float, margin,
                 subcenters: int = 1) -> tf.Tensor:
    """Additive angular margin softmax loss, mean over the rows whose label is a class index.

    `labels` [B]: class indices in [0, C) (negative = no class: left out); `embeddings` [B, D];
    `centers` [C * subcenters, D], row c * subcenters + j being sub-center j of class c. Both are
    L2-normalised here. A class's cosine is its best sub-center's; the true class's angle theta gets
    the margin, cos(theta + m), except past theta > pi - m, where cos(theta + m) would rise again
    and the logit becomes cos(theta) - m sin(m) instead (monotonic, as in InsightFace). Logits are
    `scale` times the cosines. `margin`: one m for every class, or m per class [C]
    (`dynamic_margins`).
    """
    e = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=1)
    w = tf.math.l2_normalize(tf.cast(centers, tf.float32), axis=1)
    classes = tf.shape(w)[0] // subcenters
    cos = tf.reduce_max(tf.reshape(tf.matmul(e, w, transpose_b=True), [-1, classes, subcenters]), axis=2)
    cos = tf.clip_by_value(cos, -1.0 + 1e-6, 1.0 - 1e-6)  # keeps sin's gradient finite
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    valid = labels >= 0
    onehot = tf.one_hot(tf.maximum(labels, 0), classes, dtype=tf.float32)
    m = tf.convert_to_tensor(margin, tf.float32)
    m = (tf.gather(m, tf.maximum(labels, 0)) if m.shape.rank == 1 else tf.fill(tf.shape(labels), m))[:, None]
    sin = tf.sqrt(1.0 - tf.square(cos))
    with_margin = cos * tf.cos(m) - sin * tf.sin(m)
    with_margin = tf.where(cos > tf.cos(math.pi - m), with_margin, cos - m * tf.sin(m))
    logits = scale * (onehot * with_margin + (1.0 - onehot) * cos)
    per_row = tf.nn.softmax_cross_entropy_with_logits(onehot, logits)
    return _safe_mean(per_row, valid)


LOSSES: Dict[str, Callable[[tf.Tensor, tf.Tensor, float], tf.Tensor]] = {
    "semihard": semihard_loss,
    "batch_hard": batch_hard_loss,
    "batch_all": batch_all_loss,
}
