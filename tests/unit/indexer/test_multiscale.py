"""Multi-scale test-time augmentation (`--tta=multiscale`, `flip,multiscale`; indexer/embedding/tta.py):
the embedding is the normalised mean of single-scale embeddings computed independently, the index
manifest records the mode, prediction and the API embed queries with it, the Beam job gives the
in-process embeddings, and an export without `serving_sized` is refused in one line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from indexer import predict
from indexer.api import Recognizer
from indexer.build import build
from indexer.embedding import beam_embed, embedding_shards, tta
from indexer.embedding.beam_embed import embed_with_beam
from indexer.embedding.embed import Embedder, embed_records, iter_jpegs, list_shards
from indexer.embedding.embed_job import EmbedSettings
from indexer.outputs import read_submission
from indexer.store import index_dir
from pipelines.cli.cli_errors import SettingsError
from tests.e2e.test_hostile_inputs import cli, one_error_line
from tests.unit.indexer.indexer_helpers import IMAGE_SIZE, make_export, tiny_model
from tests.unit.indexer.test_build_predict import (  # noqa: F401 - test_csv is a fixture used here
    build_config, fake_preprocessed, predict_config, test_csv)
from trainer import contract

BOTH = "flip,multiscale"


@pytest.fixture(scope="module")
def files(reference_shards):
    return list_shards(str(reference_shards), ["train"])


@pytest.fixture(scope="module")
def jpegs(files):
    return [jpeg for _, jpeg in list(iter_jpegs(files))[:5]]


@pytest.fixture(scope="module")
def old_export(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("old") / "export", sized=False)


@pytest.fixture(scope="module")
def multiscale_index(tiny_export, reference_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("ms") / "idx"
    build(build_config(tiny_export, reference_shards, out, tta=BOTH))
    return out


def test_modes_are_spelt_one_way_and_sizes_round_to_the_nearest_pixel():
    assert [tta.parse(m) for m in ("none", "flip", "multiscale", "multiscale,flip", " flip , multiscale")] == [
        "none", "flip", "multiscale", BOTH, BOTH]
    assert tta.MODES == ("none", "flip", "multiscale", BOTH)
    for bad in ("bogus", "flip,flip", "none,flip", "", "flip,"):
        with pytest.raises(SettingsError, match=f"--tta={bad}: expected none, or one or more of flip, multiscale"):
            tta.parse(bad)
    assert tta.multiscale_sizes(32) == (23, 32, 45)  # 22.63 -> 23, 45.25 -> 45
    assert tta.multiscale_sizes(64) == (45, 64, 91)
    assert tta.multiscale_sizes(224) == (158, 224, 317)
    assert tta.multiscale_sizes(1) == (1, 1, 1)


def _reference_embedding(jpeg: bytes, size: int) -> np.ndarray:
    """One unit embedding at `size`, without the export: the helper's preprocessing and a Keras
    model built for that size with the export's weights."""
    model = tiny_model(size=size)
    reference_weights = tiny_model().get_weights()
    for got, want in zip(model.get_weights(), reference_weights):
        np.testing.assert_array_equal(got, want)
    image = tf.image.resize(tf.cast(tf.image.decode_jpeg(jpeg, channels=3), tf.float32), [size, size])
    return model(image[None]).numpy()[0]


def test_multiscale_is_the_normalised_mean_of_independent_single_scale_embeddings(tiny_export, jpegs):
    embedder = Embedder(str(tiny_export))
    sizes = tta.multiscale_sizes(IMAGE_SIZE)
    mirrored = [bytes(b) for b in tta.mirrored_jpeg(jpegs).numpy()]
    for mode, views in (("multiscale", [jpegs]), (BOTH, [jpegs, mirrored])):
        expected = []
        for i in range(len(jpegs)):
            singles = [_reference_embedding(view[i], s) for view in views for s in sizes]
            assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in singles)
            mean = np.mean(singles, axis=0)
            expected.append(mean / np.linalg.norm(mean))
        got = tta.embed(embedder, jpegs, mode)
        np.testing.assert_allclose(got, np.array(expected), atol=2e-6)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    # the sizes matter: each scale alone is another embedding, S alone is the plain one
    at = {s: embedder.sized(jpegs, s) for s in sizes}
    np.testing.assert_allclose(at[IMAGE_SIZE], embedder(jpegs), atol=1e-6)
    assert np.abs(at[sizes[0]] - at[sizes[2]]).max() > 0.05
    assert np.abs(tta.embed(embedder, jpegs, "multiscale") - embedder(jpegs)).max() > 0.01


def test_an_old_export_with_multiscale_is_a_one_line_error(old_export, reference_shards, tmp_path, jpegs,
                                                           repo_root):
    message = (r"--tta=multiscale: the model in .* was exported under export contract 1, without the "
               r"'serving_sized' signature multiscale needs: export it again")
    embedder = Embedder(str(old_export))
    with pytest.raises(SettingsError, match=message):
        tta.embed(embedder, jpegs, "multiscale")
    assert tta.embed(embedder, jpegs, "flip").shape == (5, embedder.dimension)  # none / flip still work
    with pytest.raises(SettingsError, match=message.replace("multiscale:", "flip,multiscale:", 1)):
        build(build_config(old_export, reference_shards, tmp_path / "idx", tta=BOTH))
    assert not (tmp_path / "idx").exists(), "refused before any work"
    done = cli(repo_root, "indexer.build", f"--model={old_export}", f"--data_dir={reference_shards}",
               f"--output_dir={tmp_path / 'idx'}", "--tta=multiscale,flip", "--embed_runner=beam")
    line = one_error_line(done, "indexer.build")
    assert line.startswith("indexer.build: error: --tta=flip,multiscale: the model in") and "export it again" in line


def test_build_config_refuses_a_mode_spelt_another_way(tiny_export, reference_shards, tmp_path):
    with pytest.raises(SettingsError, match="--tta=multiscale,flip: write it as --tta=flip,multiscale"):
        build_config(tiny_export, reference_shards, tmp_path / "idx", tta="multiscale,flip")


def test_the_manifest_records_the_mode_and_the_index_holds_those_embeddings(multiscale_index, tiny_export, files):
    index = index_dir.open_index(str(multiscale_index))
    assert index.manifest.tta == BOTH
    assert json.loads((multiscale_index / index_dir.MANIFEST).read_text())["tta"] == BOTH
    expected = embed_records(files, Embedder(str(tiny_export)), 16, BOTH).vectors
    np.testing.assert_allclose(index.searcher.item_vectors(np.arange(index.manifest.n_items)), expected, atol=1e-5)


def test_api_embeds_queries_as_the_index_was(multiscale_index, files, jpegs, monkeypatch):
    recognizer = Recognizer.open(str(multiscale_index))
    embedder = Embedder(str(multiscale_index / index_dir.MODEL_DIR))
    np.testing.assert_allclose(recognizer.embed_records(files[:1], 16).vectors,
                               embed_records(files[:1], embedder, 16, BOTH).vectors, atol=1e-6)
    seen = []
    answer = recognizer.answer
    monkeypatch.setattr(recognizer, "answer", lambda vectors: seen.append(vectors) or answer(vectors))
    predictions = recognizer.predict(jpegs[:2])
    assert [p.error for p in predictions] == [None, None]
    from pipelines.images import image

    prepared = [image.process_image(j, recognizer.image_config)[0] for j in jpegs[:2]]
    np.testing.assert_allclose(seen[0], tta.embed(embedder, prepared, BOTH), atol=1e-6)
    assert np.abs(seen[0] - tta.embed(embedder, prepared, "none")).max() > 0.01


def test_predict_follows_the_index_in_process_and_as_a_beam_job(multiscale_index, reference_shards, tmp_path,
                                                               test_csv):
    csv_path, _ = test_csv
    submissions = {}
    for runner in ("local", "beam"):
        pred = tmp_path / runner
        config = predict_config(multiscale_index, csv_path, pred, embedding=EmbedSettings(runner))
        fake_preprocessed(pred, reference_shards, config)
        assert predict.predict(config)["predicted"] == 12
        submissions[runner] = read_submission(str(pred / "submission.csv"))
    assert submissions["local"].keys() == submissions["beam"].keys()
    for key, (landmark, score) in submissions["local"].items():
        assert submissions["beam"][key][0] == landmark and abs(submissions["beam"][key][1] - score) < 1e-4
    # the Beam path is the per-shard prediction job (indexer/embedding/beam_predict.py), which
    # embeds with the Recognizer the index's manifest configures: the same bytes as in process
    assert list((tmp_path / "beam" / "shards").glob("*.npz"))
    assert (tmp_path / "beam" / "submission.csv").read_bytes() == (tmp_path / "local" / "submission.csv").read_bytes()


def test_the_beam_job_gives_the_in_process_embeddings_and_redoes_shards_of_another_mode(tiny_export, files,
                                                                                     tmp_path):
    emb = tmp_path / "emb"
    in_process = embed_records(files, Embedder(str(tiny_export)), 16, "multiscale")
    got = embed_with_beam(files, str(tiny_export), str(emb), 5, ["--runner=DirectRunner"], tta="multiscale")
    assert got.image_ids == in_process.image_ids
    np.testing.assert_allclose(got.vectors, in_process.vectors, atol=1e-6)
    path = embedding_shards.output_path(str(emb), files[0])
    assert embedding_shards.read(path)[0]["tta"] == "multiscale"
    with pytest.raises(RuntimeError, match=r"\(tta differ\)"):  # another mode's files are not this job's
        embedding_shards.gather(str(emb), files, beam_embed.model_fingerprint(str(tiny_export)), 16)
    before = os.stat(path).st_ino
    plain = embed_with_beam(files, str(tiny_export), str(emb), 16, [])
    np.testing.assert_allclose(plain.vectors, embed_records(files, Embedder(str(tiny_export)), 16).vectors, atol=1e-6)
    assert "tta" not in embedding_shards.read(path)[0] and os.stat(path).st_ino != before


def test_export_contract_names_the_sized_signature():
    assert contract.CONTRACT_VERSION >= contract.SIZED_SINCE == 2
    assert contract.contract_version({}) == 1 and contract.contract_version({"contract_version": 2}) == 2
