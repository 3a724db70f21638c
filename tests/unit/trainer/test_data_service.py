"""`--data_service`: the training input run by tf.data service workers (trainer/data_service.py).

A dispatcher and 2 workers on 127.0.0.1, in-process (as TensorFlow's own tests start them); the
batches that come back keep the local pipeline's P x K grouping, dtypes and labels.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.unit.trainer.test_trainer_sampling import LONG_TAIL, _check_batches
from tests.unit.trainer.trainer_helpers import REPO, make_shards, run_train
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


def _unused_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_dispatcher_is_a_one_line_error_not_endless_retries(tmp_path, small_shards):
    port = _unused_port()
    done = run_train(small_shards, tmp_path / "out", f"--data_service=grpc://127.0.0.1:{port}",
                     "--data_service_timeout=1", "--epochs=1", check=False)
    assert done.returncode == 1, done.stdout[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"trainer: error: --data_service=grpc://127.0.0.1:{port}: no tf.data service "
                           "dispatcher answered"), done.stdout[-3000:]
    assert "Traceback" not in done.stdout
    assert not (tmp_path / "out" / "export").exists()


def test_a_worker_without_its_dispatcher_is_a_one_line_error(tmp_path):
    port = _unused_port()
    done = subprocess.run([sys.executable, "-m", "trainer.data_service", "--role=worker",
                           f"--dispatcher=127.0.0.1:{port}", "--timeout=1"], cwd=REPO, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"trainer.data_service: error: --dispatcher=127.0.0.1:{port}: no tf.data service dispatcher answered")
    assert "tf.data service worker for dispatcher" not in done.stdout
