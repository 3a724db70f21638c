"""gs:// input CSV (with urls relative to it) and gs:// output, against gcp-storage-emulator."""

from __future__ import annotations

import json


from pipelines import preprocess, schema
from pipelines.sources import storage
from tests.pipeline import helpers


def test_gs_csv_in_gs_shards_out(gcs, capsys):
    lines = ["id,url,landmark_id"]
    for i in range(6):
        storage.write_atomic(f"gs://bkt/in/images/{i}.jpg", helpers.jpeg(320, 240, seed=str(i)))
        lines.append(f"a{i},images/{i}.jpg,{i % 2}")
    lines.append("gone,images/none.jpg,1")
    storage.write_atomic("gs://bkt/in/train.csv", ("\n".join(lines) + "\n").encode())

    argv = ["--csv=gs://bkt/in/train.csv", "--output_dir=gs://bkt/out", "--num_shards=2", "--val_fraction=0"]
    stats = preprocess.run(argv)
    assert (stats["written"], stats["failed"], stats["accounted_for"]) == (6, 1, True)
    names = sorted(storage.basename(p) for p in storage.list_dir("gs://bkt/out"))
    assert names == ["failures.csv", "inputs.json", "shard_index.json", "stats.json", "train-00000-of-00002.tfrecord",
                     "train-00001-of-00002.tfrecord"]
    assert storage.list_dir("gs://bkt/out/_tmp") == []
    ids = sorted(
        schema.deserialize(x).image_id
        for n in names if n.endswith(".tfrecord")
        for x in schema.iter_frames(storage.read_bytes(f"gs://bkt/out/{n}"))
    )
    assert ids == [f"a{i}" for i in range(6)]
    assert storage.read_bytes("gs://bkt/out/failures.csv").decode().startswith(
        "id,url,reason,detail\ngone,images/none.jpg,not_found,gs://bkt/in/images/none.jpg"
    )
    assert json.loads(storage.read_bytes("gs://bkt/out/stats.json")) == stats

    capsys.readouterr()
    assert preprocess.run(argv) == stats  # rerun: both shards already done, same report
    assert "2 already done" in capsys.readouterr().out


def test_gs_tar_headers_and_member_ranges(gcs):
    import io
    import tarfile

    from pipelines.sources import tar_source

    buf = io.BytesIO()
    photos = {f"{c}{c}{c}00{i}": helpers.jpeg(64, 48, seed=f"{c}{i}") for c in "ab" for i in range(3)}
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for image_id, data in photos.items():
            info = tarfile.TarInfo(f"{image_id[0]}/{image_id[1]}/{image_id[2]}/{image_id}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    storage.write_atomic("gs://bkt/tars/images_000.tar", buf.getvalue())
    assert tar_source.expand_tars("gs://bkt/tars/images_*.tar") == ["gs://bkt/tars/images_000.tar"]
    members = list(tar_source.index_tar("gs://bkt/tars/images_000.tar"))
    assert [m.image_id for m in members] == list(photos)
    assert {m.image_id: tar_source.read_member(tar_source.location(m), 1 << 20) for m in members} == photos
