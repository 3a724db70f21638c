"""The triplet losses against brute-force NumPy references on hand-built batches."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from trainer.network import losses


def _dist(e: np.ndarray) -> np.ndarray:
    return np.sqrt(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1))


def _pairs(labels):
    n = len(labels)
    for a, p in itertools.permutations(range(n), 2):
        if labels[a] == labels[p]:
            yield a, p, [x for x in range(n) if labels[x] != labels[a]]


def ref_semihard(labels, e, margin):
    d, out = _dist(e), []
    for a, p, negs in _pairs(labels):
        if not negs:
            continue
        farther = [d[a, n] for n in negs if d[a, n] > d[a, p]]
        dn = min(farther) if farther else max(d[a, n] for n in negs)
        out.append(max(d[a, p] - dn + margin, 0.0))
    return float(np.mean(out)) if out else 0.0


def ref_batch_hard(labels, e, margin):
    d, out = _dist(e), []
    for a in range(len(labels)):
        pos = [p for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [n for n in range(len(labels)) if labels[n] != labels[a]]
        if pos and neg:
            out.append(max(max(d[a, pos]) - min(d[a, neg]) + margin, 0.0))
    return float(np.mean(out)) if out else 0.0


def ref_batch_all(labels, e, margin):
    d, out = _dist(e), []
    for a, p, negs in _pairs(labels):
        out += [d[a, p] - d[a, n] + margin for n in negs]
    active = [x for x in out if x > 0]
    return float(np.mean(active)) if active else 0.0


REFERENCES = {"semihard": ref_semihard, "batch_hard": ref_batch_hard, "batch_all": ref_batch_all}


def _unit(rng, n, dim):
    e = rng.normal(size=(n, dim))
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _batches():
    rng = np.random.default_rng(7)
    yield "pk 4x2", np.repeat(np.arange(4), 2), _unit(rng, 8, 5)
    yield "long tail with singletons", np.array([3, 3, 3, 1, 1, 9, 8, 7]), _unit(rng, 8, 4)
    yield "duplicates", np.array([0, 0, 1, 1]), np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0.6, 0.8]])
    yield "no positive pair", np.arange(6), _unit(rng, 6, 3)
    yield "no negative", np.zeros(5, dtype=int), _unit(rng, 5, 3)
    yield "one image", np.array([4]), _unit(rng, 1, 3)
    # near-collapsed cluster: semi-hard negatives exist for some pairs, not others
    yield "clustered", np.array([0, 0, 0, 1, 1, 2]), _unit(rng, 6, 2) * 0.1 + np.array([1.0, 0.0])


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
@pytest.mark.parametrize("margin", [0.1, 0.5])
def test_losses_match_numpy_reference(name, margin):
    for title, labels, e in _batches():
        e = e.astype(np.float32)
        got = float(losses.LOSSES[name](tf.constant(labels), tf.constant(e), margin))
        want = REFERENCES[name](labels, e.astype(np.float64), margin)
        assert got == pytest.approx(want, abs=2e-5), f"{name} on {title}"


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_no_valid_triplet_gives_zero_and_finite_gradients(name):
    for labels in (np.arange(4), np.zeros(4, dtype=int)):
        e = tf.Variable(_unit(np.random.default_rng(1), 4, 3).astype(np.float32))
        with tf.GradientTape() as tape:
            loss = losses.LOSSES[name](tf.constant(labels), e, 0.2)
        grad = tape.gradient(loss, e)
        assert float(loss) == 0.0
        assert grad is None or np.all(np.isfinite(grad.numpy()))


def test_hand_computed_batch_hard_value():
    # anchor 0: hardest positive sqrt(2), closest negative 0; anchor 1: sqrt(2) and sqrt(2)
    e = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    got = float(losses.batch_hard_loss(tf.constant([0, 0, 1]), e, 0.2))
    assert got == pytest.approx((math.sqrt(2) + 0.2 + 0.2) / 2, abs=1e-6)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_gradients_finite_with_identical_embeddings(name):
    e = tf.Variable(np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]], np.float32))
    with tf.GradientTape() as tape:
        loss = losses.LOSSES[name](tf.constant([0, 0, 1, 1]), e, 0.3)
    assert np.all(np.isfinite(tape.gradient(loss, e).numpy()))


def ref_arcface(labels, e, centers, scale, margin, subcenters):
    """Per row: the best sub-center cosine per class, the margin on the true class, softmax CE."""
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    w = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    out = []
    for row, label in enumerate(labels):
        if label < 0:
            continue
        m = float(margin[label]) if np.ndim(margin) else margin
        logits = []
        for c in range(len(w) // subcenters):
            cos = min(max(max(float(e[row] @ w[c * subcenters + j]) for j in range(subcenters)), -1 + 1e-6), 1 - 1e-6)
            if c == label:
                theta = math.acos(cos)
                cos = math.cos(theta + m) if theta + m < math.pi else cos - m * math.sin(m)
            logits.append(scale * cos)
        top = max(logits)
        out.append(top + math.log(sum(math.exp(x - top) for x in logits)) - logits[label])
    return float(np.mean(out)) if out else 0.0


@pytest.mark.parametrize("subcenters", [1, 3])
@pytest.mark.parametrize("scale,margin", [(1.0, 0.0), (16.0, 0.3), (30.0, 0.5)])
def test_arcface_matches_numpy_reference(subcenters, scale, margin):
    rng = np.random.default_rng(3)
    centers = _unit(rng, 4 * subcenters, 5)
    cases = [
        ("pk 4x2", np.repeat(np.arange(4), 2), _unit(rng, 8, 5)),
        ("unknown labels left out", np.array([0, -1, 3, -1]), _unit(rng, 4, 5)),
        # the true class at a wide angle (past pi - m): the monotonic fallback
        ("opposite", np.array([1, 2]), -np.stack([centers[1 * subcenters], centers[2 * subcenters]])),
        ("unnormalised", np.array([2, 0, 0]), 3.0 * _unit(rng, 3, 5)),
        ("no class", np.array([-1, -1]), _unit(rng, 2, 5)),
    ]
    for title, labels, e in cases:
        got = float(losses.arcface_loss(tf.constant(labels), tf.constant(e, tf.float32),
                                        tf.constant(centers, tf.float32), scale, margin, subcenters))
        want = ref_arcface(labels, e, centers, scale, margin, subcenters)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-4), title


def test_arcface_margin_raises_the_loss_and_gradients_stay_finite():
    centers = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    # an embedding exactly on its centre (cos = 1) and one exactly opposite (cos = -1)
    e = tf.Variable([[1.0, 0.0], [0.0, -1.0]])
    with tf.GradientTape() as tape:
        loss = losses.arcface_loss(tf.constant([0, 1]), e, centers, 10.0, 0.4)
    assert np.all(np.isfinite(tape.gradient(loss, e).numpy()))
    plain = float(losses.arcface_loss(tf.constant([0, 1]), e, centers, 10.0, 0.0))
    assert float(loss) > plain > 0.0


@pytest.mark.parametrize("subcenters", [1, 2])
def test_arcface_with_a_margin_per_class_matches_numpy_reference(subcenters):
    rng = np.random.default_rng(5)
    centers = _unit(rng, 4 * subcenters, 6)
    margins = losses.dynamic_margins([1000, 40, 3, 1])
    for labels, e in ((np.repeat(np.arange(4), 2), _unit(rng, 8, 6)), (np.array([3, -1, 0]), _unit(rng, 3, 6)),
                      (np.array([3, 0]), -np.stack([centers[3 * subcenters], centers[0]]))):
        got = float(losses.arcface_loss(tf.constant(labels), tf.constant(e, tf.float32),
                                        tf.constant(centers, tf.float32), 20.0, tf.constant(margins), subcenters))
        assert got == pytest.approx(ref_arcface(labels, e, centers, 20.0, margins, subcenters), rel=1e-4, abs=1e-4)


def test_dynamic_margins_fall_with_frequency_within_the_winners_range():
    counts = np.array([1, 3, 16, 100, 5000])
    m = losses.dynamic_margins(counts)
    f = counts ** -0.25
    np.testing.assert_allclose(m, 0.05 + 0.45 * (f - f.min()) / (f.max() - f.min()), rtol=1e-6)
    assert m[0] == pytest.approx(0.5) and m[-1] == pytest.approx(0.05) and np.all(np.diff(m) < 0)
    np.testing.assert_allclose(losses.dynamic_margins([7, 7, 7]), 0.5)
    with pytest.raises(ValueError):
        losses.dynamic_margins([3, 0])
