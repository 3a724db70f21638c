"""The TFRecord contract end to end: records written by the Beam pipeline (no TensorFlow in this
process) are read back by `tf.data` + `schema.tf_parse` in a separate process."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
from PIL import Image

from pipelines import preprocess, schema
from tests.pipeline import helpers

READER = r"""
import json, sys
import numpy as np
import tensorflow as tf
from pipelines import schema
ds = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(schema.shard_pattern(sys.argv[1], "train"))))
out = []
for ex in ds.batch(4).map(schema.tf_parse):
    for i in range(len(ex[schema.ID])):
        img = tf.io.decode_jpeg(ex[schema.ENCODED][i], channels=3).numpy()
        out.append({
            "id": ex[schema.ID][i].numpy().decode(), "label": int(ex[schema.LANDMARK_ID][i]),
            "height": int(ex[schema.HEIGHT][i]), "width": int(ex[schema.WIDTH][i]),
            "url": ex[schema.SOURCE_URL][i].numpy().decode(),
            "shape": list(img.shape), "mean": img.reshape(-1, 3).mean(0).tolist(),
        })
print(json.dumps(out))
"""


def test_tf_data_reads_what_beam_wrote(tmp_path):
    (tmp_path / "images").mkdir()
    lines = ["id,url,landmark_id"]
    for i in range(6):
        w, h = (500, 300) if i % 2 else (300, 500)
        (tmp_path / "images" / f"{i}.jpg").write_bytes(helpers.jpeg(w, h, seed=f"rt{i}"))
        lines.append(f"rt{i},images/{i}.jpg,{10 + i}")
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    preprocess.run([f"--csv={tmp_path / 'in.csv'}", f"--output_dir={out}", "--num_shards=2", "--val_fraction=0",
                    "--image_size=128"])

    proc = subprocess.run([sys.executable, "-c", READER, str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = {r["id"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])}
    assert sorted(got) == [f"rt{i}" for i in range(6)]
    for path in sorted(out.glob("train-*.tfrecord")):
        for payload in schema.iter_frames(path.read_bytes()):
            rec = schema.deserialize(payload)
            tf_side = got[rec.image_id]
            pil = np.asarray(Image.open(io.BytesIO(rec.jpeg)).convert("RGB"), dtype=np.float64)
            assert tf_side["label"] == rec.landmark_id == 10 + int(rec.image_id[2:])
            assert (tf_side["height"], tf_side["width"]) == (rec.height, rec.width) == pil.shape[:2]
            assert tf_side["shape"] == [rec.height, rec.width, 3] and min(rec.height, rec.width) == 128
            assert tf_side["url"] == rec.source_url == f"images/{rec.image_id[2:]}.jpg"
            assert np.abs(np.array(tf_side["mean"]) - pil.reshape(-1, 3).mean(0)).max() < 1.5
            source = Image.open(tmp_path / "images" / f"{rec.image_id[2:]}.jpg").convert("RGB")
            source = np.asarray(source.resize((rec.width, rec.height), Image.Resampling.BILINEAR), dtype=np.float64)
            assert np.abs(source - pil).mean() < 4  # the stored pixels are the source's


def test_tf_serialize_in_a_tensorflow_process_writes_the_same_bytes_as_serialize():
    record = schema.ImageRecord("é-1", b"\xff\xd8jpeg\x00bytes", 48, 64, 12345678901, "gen://é-1")
    writer = ("import sys; from pipelines import schema; "
              "r = schema.ImageRecord('\\u00e9-1', b'\\xff\\xd8jpeg\\x00bytes', 48, 64, 12345678901, 'gen://\\u00e9-1'); "
              "import tensorflow; sys.stdout.buffer.write(schema.tf_serialize(r))")
    done = subprocess.run([sys.executable, "-c", writer], capture_output=True, check=True, timeout=300)
    assert done.stdout == schema.serialize(record)
