"""indexer.api.Recognizer against the prediction CLI: a folder of photos answered in process by the
API and through `indexer.predict --images` (real Beam preprocessing subprocess, TFRecords, tf.data)
must give the same landmarks, confidences and failures."""

from __future__ import annotations

import csv
import os

import pytest

from indexer import predict
from indexer.api import Recognizer
from indexer.build import BuildConfig, build
from indexer.embedding.embed import list_shards, read_jpegs
from tests.unit.indexer.indexer_helpers import IMAGE_SIZE


@pytest.fixture(scope="module")
def index_and_photos(tiny_export, reference_shards, tmp_path_factory):
    """An index over the train references, and a folder of the 12 val photos (in a Kaggle-like
    nested tree) plus one file that is no image."""
    out = tmp_path_factory.mktemp("api")
    build(BuildConfig(str(tiny_export), str(reference_shards), str(out / "idx"), 5, 1, ("train",), 16, 0))
    ids = [f"val-{c:03d}-{i:03d}" for c in range(6) for i in range(2)]
    jpegs = read_jpegs(list_shards(str(reference_shards), ["val"]), ids)
    assert sorted(jpegs) == ids
    photos = out / "photos"
    for image_id, data in jpegs.items():
        folder = photos / image_id[4] / image_id[5]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{image_id}.jpg").write_bytes(data)
    (photos / "broken.jpg").write_bytes(b"<html>not a photo</html>")
    (photos / "notes.txt").write_text("ignored: not an image extension")
    return out / "idx", photos, jpegs


def test_api_answers_a_folder_like_the_predict_cli(index_and_photos, tmp_path):
    idx, photos, jpegs = index_and_photos
    recognizer = Recognizer.open(str(idx), k=5, search_k=1000, image_size=IMAGE_SIZE)
    answers = {p.image_id: p for p in recognizer.predict(str(photos))}
    assert sorted(answers) == sorted([*jpegs, "broken"])
    assert answers["broken"].landmark is None and answers["broken"].error == "not_an_image"
    for image_id in jpegs:
        p = answers[image_id]
        assert p.error is None and len(p.neighbours) == 5 and 0 < p.confidence <= 1
        assert p.neighbours[0].similarity >= p.neighbours[-1].similarity
        assert p.landmark == max({n.landmark_id for n in p.neighbours},
                                 key=lambda l: (sum(max(0.0, n.similarity) for n in p.neighbours if n.landmark_id == l),
                                                -l))

    pred = tmp_path / "pred"
    stats = predict.predict(predict.PredictConfig(
        index_dir=str(idx), test_csv=None, output_dir=str(pred), k=5, search_k=1000, min_confidence=0.0, vote="sum",
        visualize=0, solution=None, image_size=IMAGE_SIZE, batch_size=16, images=str(photos)))
    assert stats["test_ids"] == 13 and stats["embedded"] == 12 and stats["failed"] == 1
    with open(pred / "submission.csv", newline="") as f:
        submitted = {r["id"]: r["landmarks"] for r in csv.DictReader(f)}
    assert submitted["broken"] == ""
    for image_id in jpegs:
        landmark, confidence = submitted[image_id].split()
        assert int(landmark) == answers[image_id].landmark
        assert float(confidence) == pytest.approx(answers[image_id].confidence, abs=2e-6)


def test_api_takes_bytes_and_paths_and_applies_min_confidence(index_and_photos):
    idx, photos, jpegs = index_and_photos
    some = sorted(jpegs)[0]
    path = next(photos.rglob(f"{some}.jpg"))
    strict = Recognizer.open(str(idx), k=3, image_size=IMAGE_SIZE, min_confidence=1.01)
    by_bytes, by_path, missing = strict.predict([jpegs[some], path, photos / "nope.jpg"])
    assert by_bytes.image_id == "bytes-0" and by_path.image_id == some
    assert by_bytes.neighbours == by_path.neighbours and len(by_path.neighbours) == 3
    assert by_path.landmark is None and by_path.confidence > 0  # answered, but below the threshold
    assert missing.error == "not_found"
    fifo = photos.parent / "pipe.jpg"
    os.mkfifo(fifo)  # never opened for writing: reading it whole would block forever
    (piped,) = strict.predict([fifo])
    assert piped.error == "not_a_file" and piped.landmark is None
    with pytest.raises(ValueError, match="share the id"):
        strict.predict([path, path])


def test_api_batch_neighbours_treat_one_call_as_the_batch(index_and_photos, tmp_path):
    idx, photos, jpegs = index_and_photos
    plain = Recognizer.open(str(idx), k=5, search_k=1000, image_size=IMAGE_SIZE)
    batched = Recognizer.open(str(idx), k=5, search_k=1000, image_size=IMAGE_SIZE, batch_neighbours=True)
    alone = {i: batched.predict(data)[0] for i, data in jpegs.items()}  # a batch of one: nothing to share
    assert all((alone[i].landmark, alone[i].confidence) == (p.landmark, p.confidence)
               for i, p in ((i, plain.predict(data)[0]) for i, data in jpegs.items()))
    together = dict(zip(jpegs, batched.predict(list(jpegs.values()))))
    assert any(together[i].confidence < alone[i].confidence for i in jpegs)  # siblings took voting places

    pred = tmp_path / "pred"
    predict.predict(predict.PredictConfig(
        index_dir=str(idx), test_csv=None, output_dir=str(pred), k=5, search_k=1000, min_confidence=0.0, vote="sum",
        visualize=0, solution=None, image_size=IMAGE_SIZE, batch_size=16, images=str(photos), batch_neighbours=True))
    with open(pred / "submission.csv", newline="") as f:
        submitted = {r["id"]: r["landmarks"] for r in csv.DictReader(f)}
    for image_id in jpegs:  # the CLI's batch is the folder: the same 12 photos
        landmark, confidence = submitted[image_id].split()
        assert (int(landmark), float(confidence)) == (together[image_id].landmark,
                                                      pytest.approx(together[image_id].confidence, abs=2e-6))
