"""The training input through a tf.data service: CPU-only machines feed the GPU hosts.

`python -m trainer.data_service --role=dispatcher --port=5050` on one machine,
`python -m trainer.data_service --role=worker --dispatcher=HOST:5050` on each input machine
(`make data-service-dispatcher`, `make data-service-worker DISPATCHER=HOST:5050`), then
`make train ... ARGS=--data_service=grpc://HOST:5050`: the trainer registers its whole input
pipeline (trainer/input/data.py: read, P x K grouping, crop-window decode to uint8, jitter parameters) with the
dispatcher, and the workers run it and send whole batches, so every batch still holds P whole
landmark groups of K. Workers need this package installed (the pool planner is a Python function
they must find by name: trainer/input/pool_input.py) and read access to `--data_dir` (e.g. gs://).

The trainer and each worker first wait for the dispatcher to answer (a gRPC channel readiness
probe, `--data_service_timeout` / `--timeout` seconds, 60 by default); without one they stop with a
one-line error (`DispatcherUnreachable`, exit status 1) instead of TensorFlow's endless retries.

Each worker runs the whole pipeline (`parallel_epochs`); its stream seed gets a runtime salt, so
workers send different batches. The order in which the trainer receives them depends on the
workers' speeds: runs through the service are not bit-for-bit reproducible.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
from absl import app, flags

from pipelines.cli import cli_errors

DISPATCHER_PORT = 5050
DEFAULT_TIMEOUT_S = 60


class DispatcherUnreachable(cli_errors.InputError):
    """No tf.data service dispatcher answered at the address given."""


def wait_for_dispatcher(address: str, timeout_s: float, flag: str = "--data_service") -> None:
    """Return once a gRPC server answers at `address` ([grpc://]HOST:PORT); `DispatcherUnreachable`
    after `timeout_s` seconds (TensorFlow's own client would retry forever)."""
    import grpc  # TensorFlow's own dependency

    target = address.removeprefix("grpc://")
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise DispatcherUnreachable(
            f"{flag}={address}: no tf.data service dispatcher answered at {target} within {timeout_s:g} s; start "
            f"one there (make data-service-dispatcher PORT={target.rsplit(':', 1)[-1]}) or fix HOST:PORT") from None
    finally:
        channel.close()


def distribute(ds: tf.data.Dataset, address: str) -> tf.data.Dataset:
    """`ds` (whole batches) produced by the service's workers instead of this process."""
    return ds.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.OFF, service=address))


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    role: str
    port: int
    dispatcher: str
    timeout: int = DEFAULT_TIMEOUT_S


def serve(cfg: ServerConfig) -> None:
    """Start a dispatcher or a worker and block."""
    from trainer.input import pool_input  # noqa: F401 - registers the pool planner a worker must run

    service = tf.data.experimental.service
    if cfg.role == "dispatcher":
        port = cfg.port or DISPATCHER_PORT
        server = service.DispatchServer(service.DispatcherConfig(port=port))
        print(f"tf.data service dispatcher on port {port}: train with --data_service=grpc://THIS_HOST:{port}",
              flush=True)
    else:
        address = cfg.dispatcher.removeprefix("grpc://")
        wait_for_dispatcher(address, cfg.timeout, flag="--dispatcher")
        server = service.WorkerServer(service.WorkerConfig(dispatcher_address=address, port=cfg.port))
        print(f"tf.data service worker for dispatcher {address}", flush=True)
    server.join()


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if f.role == "worker" and not f.dispatcher:
        raise app.UsageError("--role=worker needs --dispatcher=HOST:PORT")
    serve(ServerConfig(role=f.role, port=f.port, dispatcher=f.dispatcher or "", timeout=f.timeout))


if __name__ == "__main__":
    flags.DEFINE_enum("role", "worker", ["worker", "dispatcher"], "Which server to start.")
    flags.DEFINE_integer("port", 0, "Port to listen on (0: 5050 for the dispatcher, any free port for a worker).")
    flags.DEFINE_string("dispatcher", None, "Worker: the dispatcher's HOST:PORT (grpc:// optional).")
    flags.DEFINE_integer("timeout", DEFAULT_TIMEOUT_S, "Worker: seconds to wait for the dispatcher to answer before "
                         "stopping with an error.")
    app.run(cli_errors.absl_main("trainer.data_service", main))
