"""`--data_service`: the training input run by tf.data service workers (trainer/data_service.py).

A dispatcher and 2 workers on 127.0.0.1, in-process (as TensorFlow's own tests start them); the
batches that come back keep the local pipeline's P x K grouping, dtypes and labels.
"""

from __future__ import annotations

import collections

import pytest

from tests.unit.trainer.test_trainer_sampling import LONG_TAIL, _check_batches
from tests.unit.trainer.trainer_helpers import make_shards
from trainer.config import Config, ConfigError

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def service():
    from trainer.input import pool_input  # noqa: F401 - the workers find the pool planner by name

    svc = tf.data.experimental.service
    dispatcher = svc.DispatchServer(svc.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1].replace("localhost", "127.0.0.1")
    workers = [svc.WorkerServer(svc.WorkerConfig(dispatcher_address=address, worker_address="127.0.0.1:%port%"))
               for _ in range(2)]
    yield f"grpc://{address}"
    for server in workers + [dispatcher]:
        server._stop()  # noqa: SLF001 - the in-process servers' only stop


def _batches(cfg: Config, count: int):
    from trainer.input import data

    return [tuple(t.numpy() for t in batch) for batch in data.train_dataset(cfg).take(count)]


def test_service_batches_keep_the_local_grouping_and_labels(tmp_path, service):
    shards = make_shards(tmp_path / "data", f"--classes={len(LONG_TAIL)}",
                         f"--per_class={','.join(map(str, LONG_TAIL))}", "--size=32", "--shards=4")
    local = Config(data_dir=str(shards), output_dir=str(tmp_path / "out"), preset="tiny", batch_p=3, batch_k=2,
                   image_size=32, pool_shards=2, backbone="mobilenet", alpha=0.25)
    remote = Config(**{**local.__dict__, "data_service": service})
    expected, got = _batches(local, 20), _batches(remote, 20)
    seen = {name: collections.Counter() for name in ("local", "service")}
    for name, batches in (("local", expected), ("service", got)):
        for crops, labels, sizes, params in batches:
            assert crops.shape[0] == 6 and crops.dtype == "uint8" and sizes.shape == params.shape[:1] + (2,)
            _check_batches(labels, 3, 2)  # P whole landmark groups of K
            seen[name].update(labels.tolist())
    assert set(seen["service"]) <= set(range(len(LONG_TAIL)))
    # The two workers run the same graph but salt their stream seeds: no batch arrives twice.
    assert len({params.tobytes() for *_, params in got}) == len(got)
    # Both streams draw from every landmark group of the split, not from a fixed few.
    assert len(seen["service"]) >= len(seen["local"]) - 2 >= len(LONG_TAIL) - 4


def test_a_malformed_address_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="grpc://HOST:PORT"):
        Config(data_dir=str(tmp_path), output_dir=str(tmp_path), data_service="127.0.0.1:5050")
