"""The built-in landmark data set: procedurally drawn scenes, photographed from many views.

No landmark photos can ship in the repository, so `make demo` and the tests generate their own,
written in the Google Landmarks CSV layout (the same as `landmarks-mini`) so that every stage runs
its real code path:

  DIR/train.csv          id,url,landmark_id
  DIR/test.csv           id,url
  DIR/test_solution.csv  id,landmark_id   (empty landmark_id: a distractor that shows no known landmark)
  DIR/nonlandmark.csv    id,url          (photos of other scenes, in neither train nor test: a known
                                         non-landmark set for indexer.build --nonlandmark_csv)
  DIR/landmarks.csv      landmark_id,name
  DIR/images/<name>/<id>.jpg   (urls are paths relative to DIR)
  DIR/synthetic.json     the parameters and counts; written last, so its presence means complete
  DIR/synthetic_config.json  the command line's flags (written first)

Each landmark is a scene drawn once from its own seed: sky, a distant skyline, a row of textured
buildings and one or two signature structures (tower, dome, pyramid, arch, pagoda, wheel, bridge,
cathedral, obelisk), coloured from the scene's own three-colour scheme out of one shared palette
(so schemes overlap, and colour alone rarely names a landmark).
Each photo is a different view of it: a perspective camera (position, scale, yaw/tilt, roll), then
lighting, colour cast, haze, occluders in front, blur, noise, a random output size and JPEG quality.
Train photo counts follow a long tail (a few landmarks with many photos, many with few, some with
one); the test split holds held-out views of known landmarks plus views of distractor scenes that
appear nowhere in train. Every image's randomness derives from (seed, scene, view) alone, so the
output is byte-identical for a seed whatever the worker count or order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw, ImageFilter

from pipelines.cli import console, preflight
from pipelines.cli.cli_errors import SettingsError, absl_main
from pipelines.graph.report import csv_bytes

WORLD_W, WORLD_H = 768, 480
HORIZON = 330  # y of the ground line in the world image
MANIFEST = "synthetic.json"

# One shared palette: every scene draws from it, so colours overlap across landmarks.
PALETTE = np.array(
    [
        (200, 190, 170), (150, 140, 130), (180, 90, 60), (210, 170, 90), (90, 100, 120),
        (240, 235, 220), (120, 70, 50), (70, 110, 90), (170, 60, 60), (60, 80, 140),
        (220, 200, 140), (110, 110, 110), (190, 150, 120), (80, 60, 90), (230, 120, 40),
        (160, 180, 190),
    ],
    dtype=np.int32,
)
SKIES = [((90, 140, 210), (190, 215, 240)), ((40, 60, 110), (230, 150, 100)),
         ((120, 150, 180), (210, 210, 205)), ((70, 120, 200), (240, 230, 200)),
         ((150, 150, 160), (200, 200, 200))]
GROUNDS = [(90, 110, 70), (120, 115, 105), (60, 90, 120), (150, 130, 100), (80, 80, 85)]
STRUCTURES = ("tower", "dome", "pyramid", "arch", "pagoda", "wheel", "bridge", "cathedral", "obelisk")


@dataclasses.dataclass(frozen=True)
class Size:
    """How many scenes and photos to generate."""

    train_counts: Tuple[int, ...]  # train photos per landmark, landmark i has train_counts[i]
    distractors: int  # scenes that only appear in test
    distractor_views: int  # test photos per distractor scene
    max_test_views: int  # held-out test photos per known landmark (at least 1, grows with count)


def long_tail(landmarks: int, head: int, alpha: float = 1.0) -> Tuple[int, ...]:
    """Zipf-like train counts, shifted so the tail ends at exactly one photo.

    The k-th most photographed of n landmarks (k = 1..n) has 1 + floor(head * (k**-alpha - n**-alpha)).
    """
    floor = landmarks ** -alpha
    return tuple(1 + int(head * ((k + 1) ** -alpha - floor)) for k in range(landmarks))


PRESETS: Dict[str, Tuple[int, int, float, int, int]] = {
    # name: (landmarks, head, alpha, distractors, max_test_views)
    "tiny": (6, 10, 0.9, 2, 2),
    "small": (24, 30, 0.95, 8, 3),
    "default": (64, 100, 0.8, 20, 3),
    "large": (400, 300, 0.75, 100, 4),
}


def parse_size(spec: str, landmarks: Optional[int]) -> Size:
    """A preset name (`tiny|small|default|large`) or a comma list of train counts per landmark.

    `landmarks` (if given) overrides a preset's landmark count, keeping its tail shape.
    """
    if spec in PRESETS:
        n, head, alpha, distractors, max_test = PRESETS[spec]
        n = landmarks if landmarks is not None else n
        if n < 1:
            raise ValueError(f"--landmarks must be >= 1, got {n}")
        distractors = max(1, round(distractors * n / PRESETS[spec][0]))
        return Size(long_tail(n, head, alpha), distractors, 2, max_test)
    try:
        counts = tuple(int(x) for x in spec.split(","))
    except ValueError:
        raise ValueError(f"--size must be one of {sorted(PRESETS)} or a comma list of ints, got {spec!r}") from None
    if not counts or min(counts) < 1:
        raise ValueError(f"--size counts must all be >= 1, got {spec!r}")
    if landmarks is not None and landmarks != len(counts):
        raise ValueError(f"--landmarks={landmarks} disagrees with {len(counts)} counts in --size")
    return Size(counts, max(1, len(counts) // 3), 2, 3)


def _rng(*key: object) -> np.random.Generator:
    """A generator determined by `key` alone (stable across processes and Python runs)."""
    digest = hashlib.sha256("/".join(map(str, key)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def image_id(seed: int, scene: str, view: int) -> str:
    """A 16-hex-digit id like Google Landmarks', stable for (seed, scene, view)."""
    return hashlib.sha256(f"{seed}/{scene}/{view}".encode()).hexdigest()[:16]


# --- drawing one scene -------------------------------------------------------------------------


def _colour(rng: np.random.Generator, palette: np.ndarray = PALETTE, jitter: int = 18) -> Tuple[int, int, int]:
    base = palette[rng.integers(len(palette))] + rng.integers(-jitter, jitter + 1, 3)
    return tuple(int(v) for v in np.clip(base, 0, 255))


def _shade(c: Sequence[int], f: float) -> Tuple[int, int, int]:
    return tuple(int(max(0, min(255, v * f))) for v in c)


def _texture(d: ImageDraw.ImageDraw, box: Tuple[float, float, float, float], colour, rng) -> None:
    """Fill a facade box with one of a few textures (windows, bricks, bands, ribs, plain)."""
    x0, y0, x1, y1 = box
    d.rectangle(box, fill=colour)
    kind = rng.integers(5)
    accent = _shade(colour, rng.choice([0.55, 0.7, 1.3]))
    if kind == 0:  # window grid
        sx, sy = rng.integers(8, 18), rng.integers(10, 22)
        ww, wh = sx * rng.uniform(0.35, 0.6), sy * rng.uniform(0.35, 0.6)
        for y in np.arange(y0 + sy * 0.5, y1 - wh, sy):
            for x in np.arange(x0 + sx * 0.4, x1 - ww, sx):
                d.rectangle((x, y, x + ww, y + wh), fill=accent)
    elif kind == 1:  # bricks
        h = rng.integers(5, 9)
        for i, y in enumerate(np.arange(y0, y1, h)):
            d.line((x0, y, x1, y), fill=accent)
            off = (i % 2) * h
            for x in np.arange(x0 + off, x1, 2 * h):
                d.line((x, y, x, min(y + h, y1)), fill=accent)
    elif kind == 2:  # horizontal bands
        h = rng.integers(6, 16)
        for y in np.arange(y0, y1, 2 * h):
            d.rectangle((x0, y, x1, min(y + h, y1)), fill=accent)
    elif kind == 3:  # vertical ribs
        w = rng.integers(4, 12)
        for x in np.arange(x0, x1, 2 * w):
            d.rectangle((x, y0, min(x + w * 0.5, x1), y1), fill=accent)


def _structure(d: ImageDraw.ImageDraw, kind: str, cx: float, scale: float, scheme: np.ndarray, rng) -> None:
    """Draw one signature structure standing on the horizon, centred at x=cx, in the scene's colours."""
    c, c2 = _colour(rng, scheme), _colour(rng, scheme)
    g = HORIZON
    s = scale
    if kind == "tower":
        w, h = 40 * s, 260 * s
        _texture(d, (cx - w / 2, g - h, cx + w / 2, g), c, rng)
        d.rectangle((cx - w * 0.8, g - h * 0.75, cx + w * 0.8, g - h * 0.72), fill=c2)
        d.polygon([(cx - w / 2, g - h), (cx + w / 2, g - h), (cx, g - h - 70 * s)], fill=c2)
    elif kind == "dome":
        w, h = 190 * s, 100 * s
        _texture(d, (cx - w / 2, g - h, cx + w / 2, g), c, rng)
        r = w * rng.uniform(0.3, 0.45)
        d.pieslice((cx - r, g - h - r, cx + r, g - h + r), 180, 360, fill=c2)
        d.rectangle((cx - 6 * s, g - h - r - 30 * s, cx + 6 * s, g - h - r + 2), fill=_shade(c2, 0.7))
    elif kind == "pyramid":
        w, h = 280 * s, 170 * s * rng.uniform(0.8, 1.2)
        d.polygon([(cx - w / 2, g), (cx + w / 2, g), (cx, g - h)], fill=c)
        d.polygon([(cx, g), (cx + w / 2, g), (cx, g - h)], fill=_shade(c, 0.75))
        for k in range(1, 6):
            y = g - h * k / 6
            half = w / 2 * (1 - k / 6)
            d.line((cx - half, y, cx + half, y), fill=_shade(c, 0.6))
    elif kind == "arch":
        w, h = 200 * s, 210 * s
        _texture(d, (cx - w / 2, g - h, cx + w / 2, g), c, rng)
        ow = w * 0.45
        d.rectangle((cx - ow / 2, g - h * 0.55, cx + ow / 2, g), fill=(40, 40, 45))
        d.pieslice((cx - ow / 2, g - h * 0.55 - ow / 2, cx + ow / 2, g - h * 0.55 + ow / 2), 180, 360,
                   fill=(40, 40, 45))
        d.rectangle((cx - w / 2 - 8 * s, g - h - 14 * s, cx + w / 2 + 8 * s, g - h), fill=c2)
    elif kind == "pagoda":
        tiers = int(rng.integers(3, 7))
        w, th = 170 * s, 45 * s
        for t in range(tiers):
            y1 = g - t * th
            half = w / 2 * (1 - t / (tiers + 1))
            d.rectangle((cx - half * 0.7, y1 - th * 0.7, cx + half * 0.7, y1), fill=c)
            d.polygon([(cx - half, y1 - th * 0.6), (cx + half, y1 - th * 0.6),
                       (cx + half * 0.6, y1 - th), (cx - half * 0.6, y1 - th)], fill=c2)
        d.line((cx, g - tiers * th, cx, g - tiers * th - 40 * s), fill=c2, width=max(1, int(4 * s)))
    elif kind == "wheel":
        r = 110 * s
        cy = g - r - 30 * s
        d.polygon([(cx - 50 * s, g), (cx + 50 * s, g), (cx, cy)], fill=_shade(c, 0.7))
        d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=c, width=max(2, int(7 * s)))
        spokes = int(rng.integers(8, 17))
        for k in range(spokes):
            a = 2 * math.pi * k / spokes
            d.line((cx, cy, cx + r * math.cos(a), cy + r * math.sin(a)), fill=c, width=max(1, int(2 * s)))
            d.rectangle((cx + r * math.cos(a) - 7 * s, cy + r * math.sin(a) - 5 * s,
                         cx + r * math.cos(a) + 7 * s, cy + r * math.sin(a) + 7 * s), fill=c2)
    elif kind == "bridge":
        span = 420 * s
        deck = g - 40 * s
        d.rectangle((cx - span / 2, deck, cx + span / 2, deck + 12 * s), fill=c)
        for px in (cx - span / 4, cx + span / 4):
            d.rectangle((px - 9 * s, deck - 170 * s, px + 9 * s, g), fill=c2)
            for k in range(-6, 7):
                d.line((px, deck - 160 * s, px + k * span / 26, deck), fill=c2)
    elif kind == "cathedral":
        w, h = 180 * s, 140 * s
        _texture(d, (cx - w / 2, g - h, cx + w / 2, g), c, rng)
        for tx in (cx - w / 2, cx + w / 2 - 40 * s):
            _texture(d, (tx, g - h - 90 * s, tx + 40 * s, g), c, rng)
            d.polygon([(tx, g - h - 90 * s), (tx + 40 * s, g - h - 90 * s), (tx + 20 * s, g - h - 180 * s)],
                      fill=c2)
        r = 28 * s
        d.ellipse((cx - r, g - h * 0.75 - r, cx + r, g - h * 0.75 + r), fill=c2, outline=_shade(c2, 0.5), width=3)
    else:  # obelisk
        w, h = 34 * s, 240 * s
        d.polygon([(cx - w / 2, g), (cx + w / 2, g), (cx + w / 3, g - h), (cx - w / 3, g - h)], fill=c)
        d.polygon([(cx - w / 3, g - h), (cx + w / 3, g - h), (cx, g - h - 26 * s)], fill=c2)
        d.rectangle((cx - w, g - 20 * s, cx + w, g), fill=c2)


def render_scene(seed: int, scene: str) -> Image.Image:
    """The world image of one scene: everything a camera can see of it."""
    rng = _rng(seed, "scene", scene)
    scheme = PALETTE[rng.choice(len(PALETTE), 3, replace=False)]  # this scene's colours
    top, bottom = SKIES[rng.integers(len(SKIES))]
    y = np.linspace(0, 1, HORIZON)[:, None]
    sky = (1 - y) * np.array(top) + y * np.array(bottom)
    world = np.zeros((WORLD_H, WORLD_W, 3), np.float32)
    world[:HORIZON] = sky[:, None, :]
    ground = np.array(GROUNDS[rng.integers(len(GROUNDS))], np.float32) + rng.integers(-15, 16, 3)
    gy = np.linspace(0.8, 1.15, WORLD_H - HORIZON)[:, None, None]
    world[HORIZON:] = ground * gy
    img = Image.fromarray(np.clip(world, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 5))):  # clouds
        cx, cy, w = rng.uniform(0, WORLD_W), rng.uniform(20, HORIZON * 0.5), rng.uniform(40, 140)
        d.ellipse((cx - w, cy - w * 0.25, cx + w, cy + w * 0.25), fill=_shade(bottom, 1.12))
    haze = tuple(int(v) for v in np.array(bottom) * 0.75 + np.array(top) * 0.1)
    x = 0.0
    while x < WORLD_W:  # distant skyline silhouette
        w, h = rng.uniform(15, 50), rng.uniform(20, 90)
        d.rectangle((x, HORIZON - h, x + w, HORIZON), fill=haze)
        x += w
    x = rng.uniform(-30, 0)
    while x < WORLD_W:  # a row of textured buildings
        w, h = rng.uniform(40, 110), rng.uniform(50, 170)
        if rng.uniform() < 0.85:
            c = _colour(rng, scheme)
            _texture(d, (x, HORIZON - h, x + w, HORIZON), c, rng)
            if rng.uniform() < 0.35:
                d.polygon([(x, HORIZON - h), (x + w, HORIZON - h), (x + w / 2, HORIZON - h - w * 0.4)],
                          fill=_shade(c, 0.6))
        x += w + rng.uniform(0, 25)
    kinds = rng.choice(len(STRUCTURES), size=int(rng.integers(1, 3)), replace=False)
    centres = [WORLD_W / 2] if len(kinds) == 1 else sorted(rng.uniform([220, 450], [330, 560]))
    for k, cx in zip(kinds, centres):
        _structure(d, STRUCTURES[k], cx + rng.uniform(-30, 30), rng.uniform(0.8, 1.25), scheme, rng)
    if rng.uniform() < 0.5:  # water with ripples
        water = _colour(rng, scheme)
        d.rectangle((0, HORIZON + 35, WORLD_W, WORLD_H), fill=_shade(water, 0.8))
        for yy in range(HORIZON + 40, WORLD_H, 9):
            d.line((0, yy, WORLD_W, yy), fill=_shade(water, 0.95))
    for _ in range(int(rng.integers(0, 7))):  # trees
        tx, r = rng.uniform(0, WORLD_W), rng.uniform(12, 30)
        d.rectangle((tx - 3, HORIZON - 5, tx + 3, HORIZON + 20), fill=(80, 60, 40))
        d.ellipse((tx - r, HORIZON - 5 - 2 * r, tx + r, HORIZON - 5), fill=(50 + int(r), 100, 50))
    return img


# --- photographing one view --------------------------------------------------------------------


def _perspective_coeffs(dst: np.ndarray, src: np.ndarray) -> List[float]:
    """PIL PERSPECTIVE coefficients mapping output corners `dst` to world points `src`."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()


def photograph(world: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One photo of a scene: camera, lighting, occluders and sensor effects, all drawn from `rng`."""
    aspect = rng.choice([4 / 3, 3 / 4, 1.0, 16 / 9, 3 / 2])
    long_side = int(rng.integers(200, 420))
    out_w, out_h = (long_side, int(long_side / aspect)) if aspect >= 1 else (int(long_side * aspect), long_side)
    out_w, out_h = max(out_w, 150), max(out_h, 150)
    # Camera: a rectangle in the world (scale, position), rolled, with perspective from yaw and tilt.
    scale = rng.uniform(0.6, 0.95)
    cw = WORLD_W * scale
    ch = cw * out_h / out_w
    if ch > WORLD_H * 0.95:
        ch = WORLD_H * 0.95
        cw = ch * out_w / out_h
    cx = WORLD_W / 2 + rng.uniform(-0.5, 0.5) * (WORLD_W - cw) + rng.normal(0, 25)
    cy = HORIZON - ch * rng.uniform(0.15, 0.45)
    cy = float(np.clip(cy, ch / 2, WORLD_H - ch / 2))
    corners = np.array([[-cw / 2, -ch / 2], [cw / 2, -ch / 2], [cw / 2, ch / 2], [-cw / 2, ch / 2]])
    yaw, tilt = rng.uniform(-0.22, 0.22), rng.uniform(-0.12, 0.2)
    corners[:, 1] *= 1 + yaw * np.sign(corners[:, 0])  # nearer side looks taller
    corners[:, 0] *= 1 + tilt * np.sign(corners[:, 1]) * -1  # looking up narrows the bottom
    corners += rng.normal(0, 0.02 * cw, corners.shape)
    roll = math.radians(rng.normal(0, 4))
    rot = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    src = corners @ rot.T + [cx, cy]
    dst = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], float)
    img = world.transform((out_w, out_h), Image.Transform.PERSPECTIVE, _perspective_coeffs(dst, src),
                          Image.Resampling.BILINEAR, fillcolor=tuple(int(v) for v in np.asarray(world)[0, 0]))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.poisson(0.8))):  # occluders: people, poles, cars, foliage in front
        c = _colour(rng, PALETTE, 40)
        x, w = rng.uniform(0, out_w), rng.uniform(0.04, 0.25) * out_w
        h = rng.uniform(0.15, 0.55) * out_h
        shape = rng.integers(3)
        if shape == 0:
            d.rectangle((x, out_h - h, x + w, out_h), fill=c)
        elif shape == 1:
            d.ellipse((x - w, out_h - h, x + w, out_h + h * 0.3), fill=c)
        else:
            d.rectangle((x, out_h - h * 1.6, x + max(3, w * 0.12), out_h), fill=c)
            d.ellipse((x - w * 0.3, out_h - h * 1.7, x + w * 0.4, out_h - h * 1.4), fill=c)
    a = np.asarray(img, np.float32)
    # Lighting and colour: exposure, contrast, cast, saturation, haze, a gradient of light.
    a = a * rng.uniform(0.65, 1.3)
    mean = a.mean()
    a = (a - mean) * rng.uniform(0.7, 1.25) + mean
    a = a * rng.uniform(0.85, 1.15, 3)
    grey = a.mean(axis=2, keepdims=True)
    a = grey + (a - grey) * rng.uniform(0.5, 1.3)
    if rng.uniform() < 0.25:
        fog = rng.uniform(0.1, 0.4)
        a = a * (1 - fog) + fog * rng.uniform(150, 235)
    ramp = np.linspace(-1, 1, out_w)[None, :, None] * rng.uniform(-0.2, 0.2)
    a = a * (1 + ramp)
    a = a + rng.normal(0, rng.uniform(0, 10), a.shape)
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if rng.uniform() < 0.35:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.8)))
    return img


def encode(img: Image.Image, rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(35, 92)))
    return buf.getvalue()


# --- the data set ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Photo:
    image_id: str
    url: str  # relative to the output directory
    scene: str
    view: int
    landmark_id: Optional[int]  # None for a distractor
    split: str  # "train", "test" or "nonlandmark"


def plan(seed: int, size: Size) -> Tuple[List[Tuple[int, str]], List[Photo]]:
    """Landmarks (id, name) and every photo to write, in a deterministic order."""
    landmarks, photos = [], []
    for lid, n_train in enumerate(size.train_counts):
        kinds = _rng(seed, "name", lid).choice(STRUCTURES)
        name = f"{kinds}_{lid:03d}"
        scene = f"landmark-{lid}"
        landmarks.append((lid, name))
        n_test = min(size.max_test_views, 1 + n_train // 8)
        for v in range(n_train + n_test):
            iid = image_id(seed, scene, v)
            split = "train" if v < n_train else "test"
            photos.append(Photo(iid, f"images/{name}/{iid}.jpg", scene, v, lid, split))
    for k in range(size.distractors):
        scene = f"distractor-{k}"
        for v in range(size.distractor_views):
            iid = image_id(seed, scene, v)
            photos.append(Photo(iid, f"images/other_{k:03d}/{iid}.jpg", scene, v, None, "test"))
    # A known non-landmark set (nonlandmark.csv) for the penalty of indexer/ranking/confidence.py: as many
    # other scenes, absent from train and test alike.
    for k in range(size.distractors):
        scene = f"nonlandmark-{k}"
        for v in range(size.distractor_views):
            iid = image_id(seed, scene, v)
            photos.append(Photo(iid, f"images/nonlandmark_{k:03d}/{iid}.jpg", scene, v, None, "nonlandmark"))
    return landmarks, photos


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_scene(args: Tuple[str, int, str, List[Tuple[int, str]]]) -> int:
    """Render one scene and write all its views; returns the number of files written."""
    out_dir, seed, scene, views = args
    world = render_scene(seed, scene)
    for folder in {os.path.dirname(url) for _, url in views}:
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
    for view, url in views:
        path = os.path.join(out_dir, url)
        rng = _rng(seed, "view", scene, view)
        _write_atomic(path, encode(photograph(world, rng), rng))
    return len(views)


def generate(out_dir: str, seed: int = 0, size: Size = parse_size("default", None), workers: int = 0) -> Dict:
    """Write the data set under `out_dir` and return its manifest (also written as `synthetic.json`)."""
    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # the set is incomplete until the manifest is rewritten
    landmarks, photos = plan(seed, size)
    by_scene: Dict[str, List[Tuple[int, str]]] = {}
    for p in photos:
        by_scene.setdefault(p.scene, []).append((p.view, p.url))
    tasks = sorted(((out_dir, seed, s, v) for s, v in by_scene.items()), key=lambda t: -len(t[3]))
    workers = min(workers or os.cpu_count() or 1, len(tasks))  # each spawned worker re-imports numpy/PIL
    if workers == 1:
        written = sum(map(_write_scene, tasks))
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            written = sum(pool.imap_unordered(_write_scene, tasks))
    by_id = sorted(photos, key=lambda p: p.image_id)
    train = [p for p in by_id if p.split == "train"]
    test = [p for p in by_id if p.split == "test"]
    files = {
        "landmarks.csv": csv_bytes(("landmark_id", "name"), landmarks),
        "train.csv": csv_bytes(("id", "url", "landmark_id"), ((p.image_id, p.url, p.landmark_id) for p in train)),
        "test.csv": csv_bytes(("id", "url"), ((p.image_id, p.url) for p in test)),
        "nonlandmark.csv": csv_bytes(("id", "url"), ((p.image_id, p.url) for p in by_id if p.split == "nonlandmark")),
        "test_solution.csv": csv_bytes(
            ("id", "landmark_id"), ((p.image_id, "" if p.landmark_id is None else p.landmark_id) for p in test)
        ),
    }
    for name, data in files.items():
        _write_atomic(os.path.join(out_dir, name), data)
    manifest = {
        "seed": seed,
        "train_counts": list(size.train_counts),
        "distractors": size.distractors,
        "distractor_views": size.distractor_views,
        "max_test_views": size.max_test_views,
        "landmarks": len(landmarks),
        "train_images": len(train),
        "test_images": len(test),
        "test_distractors": sum(p.landmark_id is None for p in test),
        "nonlandmark_images": sum(p.split == "nonlandmark" for p in photos),
        "images_written": written,
    }
    _write_atomic(manifest_path, json.dumps(manifest, indent=1).encode())
    return manifest


CONFIG_FILE = "synthetic_config.json"  # the command line's flags, beside the set


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """`python -m pipelines.synthetic`'s flags, parsed once (saved as DIR/synthetic_config.json)."""

    output_dir: str
    seed: int = 0
    size: str = "default"  # a preset of PRESETS or a comma list of train photos per landmark
    landmarks: Optional[int] = None  # overrides the preset's landmark count
    workers: int = 0  # processes (0: one per CPU)

    def parsed_size(self) -> Size:
        """The Size the flags describe; a clear error naming the flag when they cannot."""
        try:
            return parse_size(self.size, self.landmarks)
        except ValueError as e:
            raise SettingsError(str(e)) from None


def define_flags() -> None:
    """The command line (defined only when run as a program, so the module imports side-effect free)."""
    d = SyntheticConfig(output_dir="")
    flags.DEFINE_string("output_dir", None, "folder to write the CSVs and images/ into")
    flags.DEFINE_integer("seed", d.seed, "the set's seed: same seed and size, byte-identical set")
    flags.DEFINE_string("size", d.size, f"a preset ({', '.join(PRESETS)}) or a comma list of train photos per landmark")
    flags.DEFINE_integer("landmarks", d.landmarks, "number of landmarks (overrides the preset's)")
    flags.DEFINE_integer("workers", d.workers, "processes (0: one per CPU)", lower_bound=0)
    flags.mark_flag_as_required("output_dir")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    values = flags.FLAGS
    console.setup(values.verbosity)
    cfg = SyntheticConfig(values.output_dir, values.seed, values.size, values.landmarks, values.workers)
    size = cfg.parsed_size()
    preflight.check_output_dir(cfg.output_dir)  # a file, or a folder that cannot be written: one line
    os.makedirs(cfg.output_dir, exist_ok=True)
    _write_atomic(os.path.join(cfg.output_dir, CONFIG_FILE),
                  json.dumps(dataclasses.asdict(cfg), indent=1, sort_keys=True).encode())
    m = generate(cfg.output_dir, cfg.seed, size, cfg.workers)
    print(f"wrote {m['landmarks']} landmarks, {m['train_images']} train and {m['test_images']} test images "
          f"({m['test_distractors']} distractors) to {cfg.output_dir}", file=sys.stderr)


if __name__ == "__main__":
    define_flags()
    app.run(absl_main("pipelines.synthetic", main))
