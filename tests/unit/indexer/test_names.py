"""Landmark names (indexer/evaluation/names.py) in both layouts, bad files refused with one line, and the names
where they show: the Python API's `Prediction.name` and the captions of neighbours.png."""

from __future__ import annotations

import pytest

from indexer.evaluation import names, visualize
from indexer.api import Recognizer


def test_both_layouts_are_read(tmp_path):
    mini = tmp_path / "landmarks.csv"
    mini.write_text("landmark_id,name\n0,building1\n7, sapa_rice_terraces \n")
    assert names.read_names(str(mini)) == {0: "building1", 7: "sapa_rice_terraces"}
    gld = tmp_path / "train_label_to_category.csv"  # GLDv2's file, BOM and all
    gld.write_bytes("\ufefflandmark_id,category\n"
                    "1,http://commons.wikimedia.org/wiki/Category:Haleakal%C4%81_National_Park\n"
                    "2,https://commons.wikimedia.org/wiki/Category:Pont_d%27Avignon\n3,\n".encode("utf-8"))
    assert names.read_names(str(gld)) == {1: "Haleakalā National Park", 2: "Pont d'Avignon", 3: ""}
    assert names.label(1, names.read_names(str(gld))) == "1 Haleakalā National Park" and names.label(3, {3: ""}) == "3"
    assert names.load(None) == {} and names.load("") == {}


@pytest.mark.parametrize("content, message", [
    ("id,name\n1,a\n", "no landmark_id and name"),
    ("landmark_id,url\n1,a\n", "no landmark_id and name"),
    ("landmark_id,name\n1,a\nx,b\n", "row 3: landmark_id 'x' is not an integer"),
    ("landmark_id,name\n1,a\n1,b\n", "row 3: landmark_id 1 again (first in row 2)"),
    (b"landmark_id,name\n1,\xff\xfe\n", "not a UTF-8 CSV"),
    ("", "no landmark_id and name"),
])
def test_a_bad_names_file_is_refused_naming_file_and_row(tmp_path, content, message):
    path = tmp_path / "names.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(names.BadNamesError) as err:
        names.read_names(str(path))
    assert str(err.value).startswith(str(path)) and message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(names.BadNamesError, match="cannot read"):
        names.read_names(str(tmp_path / "missing.csv"))


def test_png_captions_carry_names_and_keep_ids():
    tiles = visualize.query_row("q1", None, (7, 0.5), frozenset({7}), [(None, 7, 0.9), (None, 2, 0.8)],
                                {7: "sapa_rice_terraces_of_northern_vietnam"})
    assert tiles[0].caption == "query q1\n-> 7 sapa_rice_terraces_of… (0.50)" and tiles[0].colour == visualize.RIGHT
    assert tiles[1].caption.startswith("landmark 7\nsapa_rice_terraces_of_") and tiles[1].caption.endswith("sim 0.90")
    assert tiles[2].caption == "landmark 2\nsim 0.80"  # no name: the id alone, as before
    assert visualize.query_row("q1", None, (7, 0.5), None, [], None)[0].caption == "query q1\n-> 7 (0.50)"


def test_the_api_names_its_answers(tiny_export, reference_shards, tmp_path):
    from indexer.build import BuildConfig, build
    from indexer.embedding.embed import iter_jpegs, list_shards

    build(BuildConfig(str(tiny_export), str(reference_shards), str(tmp_path / "idx"), 5, 1, ("train",), 16, 0))
    table = tmp_path / "names.csv"
    table.write_text("landmark_id,name\n" + "".join(f"{n},place {n}\n" for n in range(6)))
    photos = [jpeg for _, jpeg in iter_jpegs(list_shards(str(reference_shards), ["val"]))][:4]
    named = Recognizer.open(str(tmp_path / "idx"), k=3, landmark_names=str(table)).predict(photos)
    assert all(p.landmark is not None and p.name == f"place {p.landmark}" for p in named)
    unnamed = Recognizer.open(str(tmp_path / "idx"), k=3).predict(photos)
    assert [p.landmark for p in unnamed] == [p.landmark for p in named] and all(p.name is None for p in unnamed)
    (tmp_path / "bad.csv").write_text("landmark_id,name\nx,y\n")
    with pytest.raises(names.BadNamesError, match="bad.csv: row 2"):
        Recognizer.open(str(tmp_path / "idx"), landmark_names=str(tmp_path / "bad.csv"))
