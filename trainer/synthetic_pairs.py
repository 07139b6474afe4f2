"""Video–caption pairs to pretrain the tiny CLIP (`make pretrain-tiny`, trainer/pretrain_tiny.py).

Each pair is a short clip of the sample generator's face (pipeline/sample/face_animation.py)
moving through a combination of action units, cut and resized the way the pipeline crops a
face (a square of 1.5 × the face box, raised by 0.08 × its side; pipeline/run/stages.py), and
a caption written like web alt-text around the `geometric` describer's own sentence for that
clip's true landmark track. Everything is drawn from `numpy.random.default_rng([TAG, seed,
index])`: a pair depends only on the seed and its index, never on the worker that made it,
and the stream is disjoint from the sample dataset's (`plan_clips(seed)`), which draws from
`default_rng(seed)`.

What varies, and how it differs from the sample dataset:
- expression: 55 % one of the seven sample prototypes (neutral included) with each action
  unit's weight jittered ×0.6–1.4 and an overall intensity 0.3–1.2 (the sample: 0.6–1.0,
  exact prototypes); 45 % a random mixture of 1–3 action units, which no class uses as such;
- timing: 0.8–4 s at 15/24/25/30 frames/s, onset anywhere in the first half, an apex held or
  released part or all of the way, 0–3 blinks;
- pose and framing (`variation` 1, each pair at its own level in pretraining): roll up to
  ±9°, zoom ±8 %, the crop shifted up to 5 % of its side, its side 1.4–1.6 × the face box
  (the pipeline uses 1.5), mirrored half of the time;
- camera: blur on half the clips and JPEG quality 70–95 (the shards store JPEG);
- light: not rendered in; `light_jitter` draws brightness ±35, contrast 0.7–1.3 and a ±6 %
  colour cast per clip each time it is used (the sample: ±25, 0.8–1.2, no cast);
- caption: one of 14 templates around either the full description (40 %) or its gist, the
  onset phrases of the movements found, strongest first (60 %: alt-text is mostly short); the
  expression's name appears in `name_rate` (default 25 %) of the captions of prototype clips,
  never for mixtures.

One identity only (`skimage.data.astronaut`, the sample's face).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.sample.face_animation import (ACTION_UNITS, EXPRESSIONS, FaceWarper, HeadPose, blink_curve,
                                            envelope, expression_field, relaxed_rest_pose, to_image_offsets)
from pipeline.shards.layout import interocular_distance, mirror_landmarks

TAG = 0x7E1C11  # the pretraining stream's own namespace in numpy's SeedSequence
RENDER_SIZE = 128  # frames are rendered at this size, then area-resized (as the loader does from 224)
FPS_CHOICES = (15, 24, 25, 30)
MIXTURE_UNITS = [name for name in ACTION_UNITS if name != "AU45_blink"]
PROTOTYPE_SHARE = 0.55

# Alt-text around the describer's sentence ({d}); {n} is the expression's name.
TEMPLATES_PLAIN = (
    "{d}",
    "close-up video of a woman's face. {d}",
    "a woman looks at the camera. {d}",
    "face of an astronaut in a portrait video: {d}",
    "clip of a face, {d}",
    "portrait footage. {d}",
    "a short video of a woman's face; {d}",
    "{d} (webcam recording)",
)
TEMPLATES_NAMED = (
    "a face showing {n}. {d}",
    "{n}: {d}",
    "a woman's expression of {n}. {d}",
    "{d} an expression of {n}.",
    "a person with an expression of {n}. {d}",
    "stock video, {n} face. {d}",
)


@dataclass(frozen=True)
class Identity:
    """The face every pair animates: a photo brought to render scale, its landmarks and rest pose."""

    warper: FaceWarper
    rest: np.ndarray      # 68×2 landmarks of the calm face, photo pixels
    box: np.ndarray       # the dlib face box of the photo (x0, y0, x1, y1), photo pixels


def load_identity(render_size: int = RENDER_SIZE) -> Identity:
    """The sample dataset's face (astronaut photo), downscaled so a crop renders at about 1:1."""
    from skimage.data import astronaut

    from pipeline.face.dlib_models import DlibFaceModels

    photo = astronaut()
    models = DlibFaceModels()
    faces = models.detect(photo, upsample=1)
    if not faces:
        raise RuntimeError("dlib found no face in skimage.data.astronaut()")
    box_rect = faces[0][0]
    points = models.landmarks(photo, box_rect).astype(np.float64)
    box = np.asarray(box_rect, np.float64).reshape(-1)[:4]
    # The crop side is 1.5 × the box side; bring the photo near render scale so that the warp
    # does not alias (the pipeline's crops are area-averaged from full resolution).
    factor = min(1.0, 1.3 * render_size / (1.5 * float(box[2] - box[0])))
    small = cv2.resize(photo, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    points, box = points * factor, box * factor
    rest = relaxed_rest_pose(points, 0.8)
    return Identity(FaceWarper(small, points), rest, box)


@dataclass(frozen=True)
class Pair:
    frames: np.ndarray    # (K, S, S, 3) uint8 RGB, K frames sampled uniformly over the clip
    caption: str
    description: str      # the describer's sentence alone
    label: str | None     # the prototype's class, None for a mixture
    weights: dict[str, float]


def _weights(rng: np.random.Generator) -> tuple[dict[str, float], str | None]:
    if rng.random() < PROTOTYPE_SHARE:
        label = str(rng.choice(sorted(EXPRESSIONS)))
        intensity = rng.uniform(0.3, 1.2)
        return {au: float(w * intensity * rng.uniform(0.6, 1.4)) for au, w in EXPRESSIONS[label].items()}, label
    count = int(rng.integers(1, 4))
    units = rng.choice(MIXTURE_UNITS, size=count, replace=False)
    return {str(au): float(rng.uniform(0.4, 1.3)) for au in units}, None


def _timeline(rng: np.random.Generator) -> tuple[int, float, np.ndarray, np.ndarray]:
    fps = int(rng.choice(FPS_CHOICES))
    n = max(12, int(round(rng.uniform(0.8, 4.0) * fps)))
    onset = int(rng.uniform(0.0, 0.5) * n)
    apex = min(n - 2, onset + max(2, int(rng.uniform(0.1, 0.4) * n)))
    offset = None
    if rng.random() < 0.5 and apex + 2 < n - 2:
        offset = int(rng.integers(apex + 1, n - 2))
    curve = envelope(n, onset, apex, offset, float(rng.uniform(0.2, 1.0)))
    blink = blink_curve(n, rng.integers(0, max(1, n - 4), size=int(rng.integers(0, 4))))
    return n, float(fps), curve, blink


def _poses(rng: np.random.Generator, identity: Identity, n: int, fps: float, size: int,
           variation: float = 1.0) -> list[HeadPose]:
    """Head motion and framing; at `variation` 1 about 1.5 × the sample dataset's ranges (its clips:
    roll 1–6°, shift 1–4 %, zoom up to 6 %, framed by the pipeline's detector)."""
    box = identity.box
    side = (1.5 + variation * rng.uniform(-0.1, 0.1)) * float(box[2] - box[0])
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2 - 0.08 * side])
    base = size / side
    roll0, roll_amp = variation * rng.uniform(-3, 3), variation * rng.uniform(0, 6)
    zoom, shift = variation * rng.uniform(0, 0.08), variation * rng.uniform(0, 0.05) * size
    offset = variation * rng.uniform(-0.04, 0.04, size=2) * size
    period, phase = rng.uniform(1.0, 4.0), rng.uniform(0, 2 * np.pi)
    poses = []
    for t in range(n):
        a = 2 * np.pi * t / (fps * period) + phase
        target = (size / 2 + offset[0] + shift * np.sin(a), size / 2 + offset[1] + 0.6 * shift * np.cos(1.3 * a))
        poses.append(HeadPose(scale=base * (1 + zoom * np.sin(0.7 * a)), roll_deg=roll0 + roll_amp * np.sin(0.9 * a),
                              centre=(float(centre[0]), float(centre[1])), target=target))
    return poses


def _camera(frames: list[np.ndarray], rng: np.random.Generator, out_size: int, variation: float = 1.0) -> np.ndarray:
    """What the camera and the codec do to the rendered frames: blur (half the clips) and JPEG
    quality 95 down to 70 at `variation` 1, then the area resize to `out_size`. Light (brightness,
    contrast, colour cast) is not baked in here: `light_jitter` draws it anew every time a
    clip is used (trainer/pretrain_tiny.py)."""
    sigma = variation * rng.uniform(0.0, 0.8) if rng.random() < 0.5 else 0.0
    quality = int(round(95 - variation * rng.uniform(0, 25)))
    out = []
    for frame in frames:
        x = frame
        if sigma > 0.05:
            x = cv2.GaussianBlur(x, (0, 0), sigma)
        _, jpeg = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, quality])
        x = cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)
        out.append(cv2.resize(x, (out_size, out_size), interpolation=cv2.INTER_AREA))
    return np.stack(out)


# Light drawn per clip at strength 1: about 1.4 × the sample dataset's ranges (brightness ±25,
# contrast 0.8–1.2), plus a small colour cast the sample does not have.
LIGHT = dict(brightness=35.0, contrast=0.3, cast=0.06)


def light_jitter(clips, generator, strength: float = 1.0):
    """(B, K, 3, H, W) uint8 or float pixel tensors -> float32 pixels in [0, 255] with one brightness
    shift, contrast gain and colour cast per clip (the same for its frames), drawn from the torch
    `generator` with ranges `strength` × LIGHT (one number, or one per clip)."""
    import torch

    b = clips.shape[0]
    u = torch.rand(b, 5, generator=generator) * 2 - 1
    per_clip = not isinstance(strength, (int, float))
    if per_clip:
        strength = torch.as_tensor(strength, dtype=torch.float32).expand(b)
    brightness = strength * LIGHT["brightness"] * u[:, 0]
    contrast = 1 + strength * LIGHT["contrast"] * u[:, 1]
    cast = 1 + (strength[:, None] if per_clip else strength) * LIGHT["cast"] * u[:, 2:]
    cast = cast / cast.mean(1, keepdim=True)
    gain = (contrast[:, None] * cast).view(b, 1, 3, 1, 1)
    return (clips.float() * gain + brightness.view(b, 1, 1, 1, 1) * cast.view(b, 1, 3, 1, 1)).clamp_(0, 255)


def short_description(events: list[dict]) -> str:
    """The gist of a description, as short alt-text has it: what moves, strongest first, without
    timing, speed, degree, head motion or blinks (the describer's own onset phrases)."""
    from pipeline.describers.geometric import load_templates

    templates = load_templates().data
    face = [e for e in events if e["action"] in templates["actions"] and not e["action"].startswith("head_")]
    face.sort(key=lambda e: -e["peak"])
    phrases = list(dict.fromkeys(templates["actions"][e["action"]]["onset"].format(speed="", degree="")
                                 for e in face))
    if not phrases:
        return "the face stays still"
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption_for(description: str, short: str, label: str | None, rng: np.random.Generator, name_rate: float,
                short_rate: float = 0.6) -> str:
    """Alt-text: a template around the full description or its gist; the class name only in some captions."""
    text = short if rng.random() < short_rate else description.strip()
    if label is not None and rng.random() < name_rate:
        template = TEMPLATES_NAMED[int(rng.integers(len(TEMPLATES_NAMED)))]
    else:
        template = TEMPLATES_PLAIN[int(rng.integers(len(TEMPLATES_PLAIN)))]
    return " ".join(template.format(d=text, n=label or "").split())


def make_pair(identity: Identity, describer, seed: int, index: int, frames_per_clip: int = 8,
              image_size: int = 64, name_rate: float = 0.25, variation: float = 1.0,
              short_rate: float = 0.6, drawing: bool = False) -> Pair:
    """The `index`-th pair of the stream `seed` (see the module docstring). `variation` scales the
    nuisances baked into the frames (pose, crop, blur, JPEG) from none (0) to the full ranges (1);
    light is drawn per use by `light_jitter`. With `drawing`, the frames are the clip's 68 landmarks
    drawn on black the way the trainer draws them for FineCLIPER's landmark branch
    (`trainer.data.draw_landmarks`) instead of the face: the same motion, the same caption."""
    rng = np.random.default_rng([TAG, seed, index])
    weights, label = _weights(rng)
    n, fps, curve, blink = _timeline(rng)
    poses = _poses(rng, identity, n, fps, RENDER_SIZE, variation)
    flip = bool(rng.random() < 0.5)
    neutral = identity.warper.neutral
    expression = to_image_offsets(expression_field(weights), neutral)
    blink_field = to_image_offsets(ACTION_UNITS["AU45_blink"], neutral)
    rest, iod = identity.rest, float(interocular_distance(neutral))
    points = rest[None] + curve[:, None, None] * expression[None] + blink[:, None, None] * blink_field[None]
    # The describer reads the track in output pixels, as the pipeline's landmarks are.
    track = np.stack([p @ pose.matrix()[:, :2].T + pose.matrix()[:, 2] for p, pose in zip(points, poses)])
    if flip:
        track = np.stack([mirror_landmarks(p, RENDER_SIZE) for p in track])
    described = describer.describe_tracks(track, np.arange(n) / fps)
    description, short = described.text, short_description(described.record["events"])
    # Frames at the centres of K equal segments (the loader's test-time sampling).
    picks = np.minimum(((np.arange(frames_per_clip) + 0.5) * n / frames_per_clip).astype(int), n - 1)
    if drawing:
        from trainer.data import draw_landmarks

        scale = image_size / RENDER_SIZE   # pixel centres at integers, as cv2.resize maps them
        frames = draw_landmarks((track[picks] + 0.5) * scale - 0.5, image_size)
    else:
        rendered = []
        for t in picks:
            mouth_open = float(np.linalg.norm(points[t, 66] - points[t, 62])
                               - np.linalg.norm(rest[66] - rest[62])) / iod
            frame, _ = identity.warper.render(points[t], poses[t], (RENDER_SIZE, RENDER_SIZE), mouth_open)
            rendered.append(np.ascontiguousarray(frame[:, ::-1]) if flip else frame)
        frames = _camera(rendered, rng, image_size, variation)
    return Pair(frames, caption_for(description, short, label, rng, name_rate, short_rate), description, label, weights)
