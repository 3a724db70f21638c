"""Write `requirements-gpu.lock` from `requirements.lock`: the same pins, with the GPU TensorFlow.

    python tools/gpu_lock.py [--pip=PIP]      # `make lock-gpu`

The GPU lock is the CPU lock with `tensorflow-cpu` replaced by `tensorflow[and-cuda]` at the same
version, plus the NVIDIA CUDA/cuDNN wheels that extra pulls in. pip resolves it for Linux x86_64
and CPython 3.11 with every other package constrained to its CPU pin, from package metadata alone
(`pip install --dry-run --report`; PyPI serves wheel metadata apart, so the ~3 GB of CUDA wheels
are never downloaded). Any pin that would have to move is an error: the two locks stay in step
(tests/unit/test_locks.py checks it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

CPU_LOCK = "requirements.lock"
GPU_LOCK = "requirements-gpu.lock"
CPU_TF = "tensorflow-cpu"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64")
HEADER = ("# The GPU lock: requirements.lock with tensorflow-cpu replaced by tensorflow[and-cuda] and its NVIDIA\n"
          "# wheels. Written by `make lock-gpu` (tools/gpu_lock.py); `make venv` installs it where nvidia-smi lists a\n"
          "# GPU (or with TF=gpu). Do not edit by hand: change requirements.lock and rerun `make lock-gpu`.\n")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str) -> List[Tuple[str, str]]:
    """(name as written, version) for each `name==version` line of a lock file, in file order."""
    pins = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, sep, version = line.partition("==")
                if not sep:
                    raise ValueError(f"{path}: not a pin: {line!r}")
                pins.append((name.split("[", 1)[0], version))
    return pins


def resolve(tf_version: str, constraints: List[Tuple[str, str]], pip: List[str]) -> Dict[str, str]:
    """{canonical name: version} of what `tensorflow[and-cuda]==tf_version` installs under the constraints."""
    with tempfile.TemporaryDirectory() as tmp:
        cons = os.path.join(tmp, "constraints.txt")
        with open(cons, "w") as f:
            f.writelines(f"{n}=={v}\n" for n, v in constraints)
        report = os.path.join(tmp, "report.json")
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        subprocess.run(pip + ["install", "--quiet", "--dry-run", "--ignore-installed", "--report", report,
                              "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", *platforms,
                              "--only-binary=:all:", "-c", cons, f"tensorflow[and-cuda]=={tf_version}"], check=True)
        with open(report) as f:
            installs = json.load(f)["install"]
    return {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}


def gpu_pins(cpu: List[Tuple[str, str]], resolved: Dict[str, str]) -> List[Tuple[str, str]]:
    """The GPU lock's pins: the CPU pins less tensorflow-cpu, then tensorflow and the new NVIDIA wheels."""
    kept = [(n, v) for n, v in cpu if canonical(n) != CPU_TF]
    pinned = {canonical(n): v for n, v in kept}
    moved = [f"{n} {pinned[n]} -> {v}" for n, v in resolved.items() if n in pinned and pinned[n] != v]
    if moved:
        raise SystemExit(f"gpu_lock: the GPU TensorFlow would move CPU pins: {', '.join(moved)}")
    new = sorted((n, v) for n, v in resolved.items() if n == "tensorflow" or n.startswith("nvidia-"))
    return kept + new


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pip", default=f"{sys.executable} -m pip", help="pip command (26+ reads metadata alone)")
    args = parser.parse_args(argv)
    cpu = read_pins(CPU_LOCK)
    tf_version = dict((canonical(n), v) for n, v in cpu)[CPU_TF]
    resolved = resolve(tf_version, [(n, v) for n, v in cpu if canonical(n) != CPU_TF], args.pip.split())
    pins = gpu_pins(cpu, resolved)
    tmp = GPU_LOCK + ".tmp"
    with open(tmp, "w") as f:
        f.write(HEADER + "".join(f"{n}=={v}\n" for n, v in pins))
    os.replace(tmp, GPU_LOCK)
    print(f"wrote {GPU_LOCK}: {len(pins)} pins, tensorflow=={tf_version} with "
          f"{sum(n.startswith('nvidia-') for n, _ in pins)} NVIDIA wheels")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
