"""`--data_service`: the training input run by tf.data service workers (trainer/data_service.py).

A dispatcher and 2 workers on 127.0.0.1, in-process (as TensorFlow's own tests start them); the
batches that come back keep the local pipeline's P x K grouping, dtypes and labels.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.unit.trainer.test_trainer_sampling import LONG_TAIL, _check_batches
from tests.unit.trainer.trainer_helpers import REPO, make_shards
from trainer.config import Config, ConfigError

tf = pytest.importorskip("tensorflow")


# Runs in a subprocess: an in-process WorkerServer's stop waits for the endless job it still serves
# (the client took only `count` batches), so the servers are never stopped; the process ends with
# os._exit, which takes them down with it.
SERVICE_RUN = """
import json, os, sys
import tensorflow as tf
from trainer.config import Config
from trainer.input import data, pool_input  # noqa: F401 - the workers find the pool planner by name

local = Config(**json.loads(sys.argv[1]))
svc = tf.data.experimental.service
dispatcher = svc.DispatchServer(svc.DispatcherConfig(port=0))
address = dispatcher.target.split("://")[1].replace("localhost", "127.0.0.1")
workers = [svc.WorkerServer(svc.WorkerConfig(dispatcher_address=address, worker_address="127.0.0.1:%port%"))
           for _ in range(2)]
remote = Config(**{**local.__dict__, "data_service": f"grpc://{address}"})
out = {}
for name, cfg in (("local", local), ("service", remote)):
    out[name] = [{"shape": list(crops.shape), "dtype": crops.dtype.name, "labels": labels.numpy().tolist(),
                  "sizes": list(sizes.shape), "params": list(params.shape), "key": params.numpy().tobytes().hex()}
                 for crops, labels, sizes, params in data.train_dataset(cfg).take(int(sys.argv[2]))]
sys.stdout.write(json.dumps(out))
sys.stdout.flush()
os._exit(0)
"""


def _batches(local: Config, count: int) -> dict:
    """{"local": batches, "service": batches} from a dispatcher and 2 workers on 127.0.0.1."""
    done = subprocess.run([sys.executable, "-c", SERVICE_RUN, json.dumps(dataclasses.asdict(local)), str(count)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_service_batches_keep_the_local_grouping_and_labels(tmp_path):
    shards = make_shards(tmp_path / "data", f"--classes={len(LONG_TAIL)}",
                         f"--per_class={','.join(map(str, LONG_TAIL))}", "--size=32", "--shards=4")
    local = Config(data_dir=str(shards), output_dir=str(tmp_path / "out"), preset="tiny", batch_p=3, batch_k=2,
                   image_size=32, pool_shards=2, backbone="mobilenet", alpha=0.25)
    runs = _batches(local, 20)
    seen = {name: collections.Counter() for name in ("local", "service")}
    for name, batches in runs.items():
        assert len(batches) == 20, name
        for b in batches:
            assert b["shape"][0] == 6 and b["dtype"] == "uint8" and b["sizes"] == b["params"][:1] + [2]
            _check_batches(np.array(b["labels"]), 3, 2)  # P whole landmark groups of K
            seen[name].update(b["labels"])
    assert set(seen["service"]) <= set(range(len(LONG_TAIL)))
    # The two workers run the same graph but salt their stream seeds: no batch arrives twice.
    assert len({b["key"] for b in runs["service"]}) == len(runs["service"])
    # Both streams draw from every landmark group of the split, not from a fixed few.
    assert len(seen["service"]) >= len(seen["local"]) - 2 >= len(LONG_TAIL) - 4


def test_a_malformed_address_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="grpc://HOST:PORT"):
        Config(data_dir=str(tmp_path), output_dir=str(tmp_path), data_service="127.0.0.1:5050")
