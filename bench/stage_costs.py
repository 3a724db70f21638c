"""CPU microseconds per image of each stage of the pipeline's per-row work, on one thread.

The stages are the calls `pipelines.graph.transforms.process_row` and `shards.write_shard` make, timed
one at a time over the same images (thread CPU time, so a loopback HTTP server in another thread
is not counted): fetch (file and HTTP), header+decode (`process_image` less its resize and encode:
format sniff, declared-size check, EXIF, the decode budget's header read, and the decode), resize,
encode, serialize (tf.train.Example), frame+CRC (TFRecord framing), write; and, when given,
other per-image work on the same image in the same turn (the benchmark's bare loop, so that a
whole pipeline run's CPU per image, measured beside the same loop, can be put in these units;
img2dataset's codec calls, the floor of its own cost). What a whole pipeline run spends per
image beyond the stages' sum is the runner's (Beam, thread pool, CSV, planning, markers).
"""

from __future__ import annotations

import tempfile
import time
from typing import Callable, Dict, Mapping, Sequence, Tuple

import simplejpeg

from pipelines import schema
from pipelines.images import decode_budget, fast_jpeg, image
from pipelines.sources import fetch as fetch_lib

STAGES = ("fetch (file)", "fetch (HTTP)", "header+decode", "resize", "encode", "serialize", "frame+CRC", "write")


def measure(paths: Sequence[str], urls: Sequence[str], cfg: image.ImageConfig = image.ImageConfig(),
            rounds: int = 2, others: Mapping[str, Callable[[str], None]] = {}) -> Dict[str, float]:
    """{stage: CPU us per image}, plus "process_image" (header + decode + resize + encode, with
    `decode_budget.decoded_pixels`, which `transforms.process_row` calls first), "decode" (the
    decode alone, run again on the same bytes), plus `others`' names (`others[name](path)`).

    The header is not split from the decode: the decode run again on bytes just decoded costs
    160-290 us less than the first decode of an image (`process_image`'s, as in the pipeline,
    where every image is decoded once), while the header's own calls take ~45 us, so
    "process_image - codec stages" credited the first decode's extra cost to the header.

    Every stage runs on each image in turn (rather than each stage over all images), so a
    neighbour's load hits the stages alike.
    A first, untimed round warms up lazy imports and connections.
    """
    totals: Dict[str, float] = {}
    clock = time.thread_time
    with tempfile.TemporaryFile() as out:
        for round_ in range(rounds + 1):
            for i, (path, url) in enumerate(zip(paths, urls)):
                t0 = clock()
                data = fetch_lib.fetch(path)
                t1 = clock()
                fetch_lib.fetch(url)
                t2 = clock()
                decode_budget.decoded_pixels(data, cfg.image_size, cfg.max_pixels, cfg.min_side)  # as process_row does
                jpeg, height, width = image.process_image(data, cfg)
                t3 = clock()
                w, h = image.target_size(*_declared(data), cfg.image_size)
                t4 = clock()
                pixels = fast_jpeg.decode(data, w, h)
                t5 = clock()
                pixels = fast_jpeg.resize(pixels, w, h)
                t6 = clock()
                fast_jpeg.encode(pixels, cfg.jpeg_quality)
                t7 = clock()
                serialized = schema.serialize(schema.ImageRecord(f"id{i}", jpeg, height, width, 1, url))
                t8 = clock()
                framed = schema.frame(serialized)
                t9 = clock()
                out.write(framed)
                t10 = clock()
                for name, work in others.items():
                    t = clock()
                    work(path)
                    totals[name] = totals.get(name, 0.0) + (clock() - t if round_ else 0.0)
                if round_ == 0:
                    continue
                for stage, dt in (("fetch (file)", t1 - t0), ("fetch (HTTP)", t2 - t1), ("process_image", t3 - t2),
                                  ("decode", t5 - t4), ("resize", t6 - t5), ("encode", t7 - t6),
                                  ("serialize", t8 - t7), ("frame+CRC", t9 - t8), ("write", t10 - t9)):
                    totals[stage] = totals.get(stage, 0.0) + dt
        out.flush()
    costs = {stage: total * 1e6 / (rounds * len(paths)) for stage, total in totals.items()}
    costs["header+decode"] = costs["process_image"] - costs["resize"] - costs["encode"]
    return costs


def _declared(data: bytes) -> Tuple[int, int]:
    """(width, height) from the JPEG header."""
    height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    return width, height


def per_image_total(costs: Dict[str, float], fetch: str = "fetch (file)") -> float:
    """The stages' sum for one image, with the given fetch."""
    return costs[fetch] + sum(costs[s] for s in STAGES if not s.startswith("fetch"))
