"""img2dataset, the tool people use to turn url lists into image sets, as a benchmark peer.

It is never a project dependency: `install` puts it into its own throwaway virtualenv (pip from
PyPI) under the benchmark's temporary folder; when that fails the benchmark says so and skips it.
It runs with the settings of ../shared/FIELD-NOTES.md's comparison (files output, shorter side
256 kept ratio, JPEG q90, 2 processes x 16 threads) and enough shards for every process to work.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from typing import Optional, Tuple

import cv2
import numpy as np

VERSION = "1.47.0"


def install(directory: str) -> Tuple[Optional[str], str]:
    """(path of the img2dataset executable, "") or (None, why it could not be installed)."""
    venv = os.path.join(directory, "img2dataset-venv")
    exe = os.path.join(venv, "bin", "img2dataset")
    if os.path.exists(exe):
        return exe, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True, text=True)
        subprocess.run(
            [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             f"img2dataset=={VERSION}"],
            check=True, capture_output=True, text=True, timeout=900,
        )
    except subprocess.CalledProcessError as e:
        return None, (e.stderr or e.stdout or str(e)).strip().splitlines()[-1][:300]
    except subprocess.TimeoutExpired:
        return None, "pip install took over 15 minutes"
    return (exe, "") if os.path.exists(exe) else (None, "installed, but no img2dataset executable")


def command(exe: str, url_list: str, output_dir: str, rows: int, processes: int, threads: int) -> list:
    """The img2dataset command line for `url_list` (one url per line)."""
    per_shard = max(1, -(-rows // (2 * processes)))  # two shards per process: each process works
    return [
        exe, f"--url_list={url_list}", "--input_format=txt", f"--output_folder={output_dir}",
        "--output_format=files", "--resize_mode=keep_ratio", "--image_size=256", "--encode_quality=90",
        f"--processes_count={processes}", f"--thread_count={threads}", f"--number_sample_per_shard={per_shard}",
    ]


def successes(output_dir: str) -> int:
    """Images img2dataset reports as written (sum over its per-shard stats files)."""
    total = 0
    for path in glob.glob(os.path.join(output_dir, "*_stats.json")):
        with open(path) as f:
            total += int(json.load(f).get("successes", 0))
    return total


def codec_calls(path: str, image_size: int = 256, quality: int = 90) -> None:
    """The codec calls img2dataset 1.47's resizer makes per image with `command`'s settings, in
    this process: OpenCV full-size decode (`IMREAD_UNCHANGED`), area resize of the shorter side
    (it calls albumentations' SmallestMaxSize, which calls `cv2.resize`), OpenCV JPEG encode. Its
    fetch, Python and writing cost more on top: this is the floor of its per-image CPU."""
    with open(path, "rb") as f:
        img = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_UNCHANGED)
    h, w = img.shape[:2]
    scale = image_size / min(h, w)
    img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
