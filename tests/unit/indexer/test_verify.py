"""Spatial verification on hand-built images and votes: a re-photographed scene verifies, a
look-alike does not, and the verification re-orders answers the way GAP rewards."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from indexer import predict
from indexer.ranking import confidence, local_features, scoring, verify
from indexer.store import index_dir
from indexer.store.annoy_index import IndexIntegrityError
from indexer.build import build
from indexer.embedding.embed import iter_jpegs, list_shards
from indexer.evaluation.metrics import gap
from indexer.outputs import read_submission
from tests.unit.indexer.test_build_predict import (  # noqa: F401 - test_csv is a fixture used here
    build_config, fake_preprocessed, predict_config, test_csv)


def scene(seed: int, size=(224, 300)) -> np.ndarray:
    """A grey 'facade': random rectangles, circles and lines, the same style for every seed."""
    rng = np.random.default_rng(seed)
    img = np.full(size, 128, np.uint8)
    h, w = size
    for _ in range(60):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        colour = int(rng.integers(0, 256))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(5, 40)), y + int(rng.integers(5, 40))), colour, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), int(rng.integers(3, 20)), colour, -1)
        else:
            cv2.line(img, (x, y), (int(rng.integers(0, w)), int(rng.integers(0, h))), colour, 2)
    return img


def jpeg(img: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def another_view(img: np.ndarray) -> np.ndarray:
    """The same scene from a little to the side: a perspective warp, slightly darker."""
    h, w = img.shape
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[12, 8], [w - 20, 0], [w - 6, h - 14], [4, h - 2]])
    warped = cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (w, h), borderValue=128)
    return np.clip(warped.astype(np.int16) - 15, 0, 255).astype(np.uint8)


def test_a_second_view_verifies_and_a_lookalike_does_not():
    extract, verifier = local_features.Extractor(500), verify.Verifier()
    reference = extract(jpeg(scene(1)))
    same = verifier.inliers(extract(jpeg(another_view(scene(1)))), reference)
    lookalike = verifier.inliers(extract(jpeg(scene(2))), reference)
    assert len(reference) > 100
    assert same >= 100, same  # measured ~250
    assert lookalike <= 8, lookalike  # chance agreement: measured 1-5 (10-18 raw inliers, on few keypoints)
    assert verifier.inliers(local_features.EMPTY, reference) == 0  # nothing to match: no inliers, no error


def test_chance_fits_count_distinct_keypoints_beyond_the_minimal_sample():
    """Lookalikes' raw inliers pile up on a few keypoints; what counts is the distinct keypoints
    (min over the two images) beyond the 4 any homography fits."""
    extract, verifier = local_features.Extractor(500), verify.Verifier()
    reference = extract(jpeg(scene(1)))
    for seed in range(2, 8):
        query = extract(jpeg(scene(seed)))
        raw = verifier.matches(query, reference)
        _, _, query_idx, reference_idx = verifier._fit(query, reference)
        distinct = min(len(set(query_idx.tolist())), len(set(reference_idx.tolist())))
        assert len(raw) == len(query_idx) >= 8  # chance fits exist: 10-18 raw inliers measured
        assert verifier.inliers(query, reference) == max(0, distinct - verify.MINIMAL_SAMPLE) <= len(raw) - 5


@pytest.mark.parametrize("query_idx, reference_idx, want", [
    (range(21), [0, 1] * 10 + [0], 0),  # 21 inliers on 2 reference keypoints: degenerate
    (range(4), range(4), 0),  # the minimal sample: any 4 matches fit exactly
    (range(30), range(30), 26),
    ([0, 0, 1, 2, 3, 4, 5, 6, 7, 8], range(10), 5),  # 9 distinct query keypoints
])
def test_inliers_counts_distinct_keypoints_of_both_images(monkeypatch, query_idx, reference_idx, want):
    query_idx, reference_idx = np.array(list(query_idx)), np.array(list(reference_idx))
    xy = np.zeros((len(query_idx), 2), np.float32)
    verifier = verify.Verifier()
    monkeypatch.setattr(verifier, "_fit", lambda q, r: (xy, xy, query_idx, reference_idx))
    assert verifier.inliers(local_features.EMPTY, local_features.EMPTY) == want
    assert len(verifier.matches(local_features.EMPTY, local_features.EMPTY)) == len(query_idx)  # the report draws all


def test_features_survive_the_store_exactly(tmp_path):
    extract = local_features.Extractor(300)
    images = [jpeg(scene(s)) for s in range(3)] + [b"not an image"]
    path = str(tmp_path / local_features.STORE)
    total = local_features.write_store(path, images, len(images), 300)
    store = local_features.open_store(path)
    assert store.shape == (4,) and local_features.max_features_of(store) == 300
    for record, image in zip(store, images):
        want = extract(image)
        got = local_features.unpack(record)
        np.testing.assert_array_equal(got.descriptors, want.descriptors)
        np.testing.assert_array_equal(got.xy, want.xy)
    assert len(local_features.unpack(store[3])) == 0
    assert total == sum(len(local_features.unpack(r)) for r in store) > 0
    with pytest.raises(ValueError, match="3 images for 4 items"):
        local_features.write_store(str(tmp_path / "short.npy"), images[:3], 4, 300)


def test_verification_scores_cap_and_ignore_unverified():
    np.testing.assert_allclose(verify.verification_scores(np.array([[-1, 0, 20, 40, 90]]), 40),
                               [[0.0, 0.0, 0.5, 1.0, 1.0]])
    assert verify.landmark_bonus([3, 3, 5, -1], [0.2, 0.6, 0.1, 1.0]) == {3: 0.6, 5: 0.1}


def test_the_bonus_can_change_the_winner_with_exact_scores():
    landmarks, sims = [1, 1, 2], [0.9, 0.8, 0.7]
    assert confidence.decide(landmarks, sims) == (1, pytest.approx(1.7 / 3))
    # landmark 2's photo verifies fully, landmark 1's not at all: (0.7/3 + 1) / 2 against (1.7/3) / 2
    assert confidence.decide(landmarks, sims, bonus={1: 0.0, 2: 1.0}) == (2, pytest.approx((0.7 / 3 + 1) / 2))
    assert confidence.decide(landmarks, sims, bonus={1: 0.0, 2: 1.0}, bonus_weight=0.0) == (1, pytest.approx(1.7 / 3))
    winner, margin = confidence.decide(landmarks, sims, confidence="margin", bonus={2: 1.0})
    assert winner == 2 and margin == pytest.approx((0.7 / 3 + 1) / 2 - (1.7 / 3) / 2)


def test_verification_ranks_a_lookalike_distractor_below_a_right_answer():
    # a distractor that looks very like landmark 4's references, and a true view of landmark 6
    # that looks less alike but re-photographs the same facade
    solution = {"distractor": frozenset(), "view": frozenset({6})}
    neighbours = {"distractor": ([4, 4, 4], [0.92, 0.9, 0.9]), "view": ([6, 6, 4], [0.8, 0.78, 0.5])}
    inliers = {"distractor": [9, 7, 8], "view": [55, 31, -1]}
    plain = {q: confidence.decide(l, s) for q, (l, s) in neighbours.items()}
    assert plain["distractor"][1] > plain["view"][1]
    assert gap(plain, solution) == pytest.approx(0.5)  # the right answer ranks second
    checked = {q: confidence.decide(l, s, bonus=verify.landmark_bonus(l, verify.verification_scores(
        np.array(inliers[q]), 40).tolist())) for q, (l, s) in neighbours.items()}
    assert checked["view"] == (6, pytest.approx((sum([0.8, 0.78]) / 3 + 1.0) / 2))
    assert gap(checked, solution) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def verified_index(tiny_export, reference_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("v") / "idx"
    build(build_config(tiny_export, reference_shards, out, local_features=200))
    return out


def test_build_stores_every_references_features_in_item_order(verified_index, reference_shards):
    index = index_dir.open_index(str(verified_index))
    assert index.manifest.local_features.name == local_features.STORE
    files = list_shards(str(reference_shards), ["train"])
    ids, images = zip(*iter_jpegs(files))
    assert list(ids) == index.image_ids
    extract = local_features.Extractor(200)
    for item in (0, 17, len(ids) - 1):
        np.testing.assert_array_equal(local_features.unpack(index.local_features[item]).descriptors,
                                      extract(images[item]).descriptors)


def test_a_tampered_feature_store_is_refused(verified_index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(verified_index, copy)
    store = np.load(copy / local_features.STORE)
    store["count"][0] ^= 1
    np.save(copy / local_features.STORE, store)
    index = index_dir.open_index(str(copy))  # sizes match: the segment is checked when first read
    with pytest.raises(IndexIntegrityError, match=local_features.STORE):
        index.local_features[0]
    with pytest.raises(IndexIntegrityError, match=local_features.STORE):
        index_dir.open_index(str(copy), verify_features=True)


def test_predict_verifies_only_when_asked(verified_index, reference_shards, tmp_path, test_csv, monkeypatch):
    csv_path, _ = test_csv
    calls = []
    real = verify.Verifier.inliers
    monkeypatch.setattr(verify.Verifier, "inliers", lambda self, q, r: calls.append(1) or real(self, q, r))
    for name, k in (("off", 0), ("on", 3)):
        pred = tmp_path / name
        config = predict_config(verified_index, csv_path, pred, verify_k=k)
        fake_preprocessed(pred, reference_shards, config)
        assert predict.predict(config)["predicted"] == 12
        assert len(calls) == (0 if k == 0 else 12 * 3)
        assert all(0.0 <= c <= 1.0 for _, c in read_submission(str(pred / "submission.csv")).values())
    with pytest.raises(ValueError, match="--verify_k"):
        scoring.Scoring(verify_k=-1)


def test_the_python_api_verifies_photos_too(verified_index, reference_shards, monkeypatch):
    from indexer.api import Recognizer

    calls = []
    real = verify.Verifier.inliers
    monkeypatch.setattr(verify.Verifier, "inliers", lambda self, q, r: calls.append(1) or real(self, q, r))
    photos = [jpeg for _, jpeg in iter_jpegs(list_shards(str(reference_shards), ["val"]))][:3]
    recognizer = Recognizer.open(str(verified_index), k=4, verify_k=2)
    assert recognizer.verifies
    predictions = recognizer.predict(photos)
    assert len(predictions) == 3 and all(p.landmark is not None for p in predictions)
    assert len(calls) == 3 * 2
    assert not Recognizer.open(str(verified_index), verify_k=0).verifies
