"""Follow the clip's main face through time and cut a steady square crop of it from every frame.

Detections (on every k-th frame) are linked into tracks: a detection joins the track whose
predicted box (its last box, moved on at the track's recent speed) it overlaps most, among tracks
of a similar face size, the best-overlapping pairs first, so two faces that cross keep their own
tracks. The subject is the track with the largest total area over the whole clip — large and
persistent wins over a brief big face or a small face in the background — and only its boxes
are used: the crop never moves to another person. Its boxes are interpolated over frames
without a detection, smoothed with a centred moving average, and turned into squares with a
margin that keeps the forehead and chin in view. The other tracks are counted as the faces seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class FaceTrack:
    boxes: np.ndarray      # (T, 4) face boxes (x0, y0, x1, y1) in source pixels, interpolated and smoothed
    detected: np.ndarray   # (T,) bool: the detector found this face in this frame
    scores: np.ndarray     # (T,) detector score where detected, else 0
    faces_seen: int = 1    # distinct faces the detector followed over the clip (`count_faces`)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def side(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


def predicted_box(track: dict[int, tuple[np.ndarray, float]], t: int) -> np.ndarray:
    """The track's box at frame t: its last box, its centre moved on at the speed between the track's last
    two detections (the size is kept: detector boxes jitter in size more than they move)."""
    frames = sorted(track)
    last = track[frames[-1]][0]
    if len(frames) < 2:
        return last
    before = track[frames[-2]][0]
    centre_speed = ((last[:2] + last[2:]) - (before[:2] + before[2:])) / 2 / (frames[-1] - frames[-2])
    return last + np.tile(centre_speed * (t - frames[-1]), 2)


def link_tracks(detections: dict[int, list[tuple[np.ndarray, float]]], min_iou: float = 0.3,
                max_gap: int = 30, max_size_ratio: float = 1.5) -> list[dict[int, tuple[np.ndarray, float]]]:
    """Tracks (frame -> (box, score)) from each frame's detections: a detection joins the live track
    (seen within `max_gap` frames, face side within `max_size_ratio` of its own) whose predicted box
    it overlaps most (IoU at least `min_iou`), best pairs first; the rest start tracks."""
    tracks: list[dict[int, tuple[np.ndarray, float]]] = []
    for t in sorted(detections):
        found = detections[t]
        pairs = []
        for k, track in enumerate(tracks):
            if t - max(track) > max_gap:
                continue
            guess = predicted_box(track, t)
            for j, (box, _) in enumerate(found):
                ratio = side(box) / max(side(guess), 1e-6)
                overlap = iou(guess, box)
                if overlap >= min_iou and 1 / max_size_ratio <= ratio <= max_size_ratio:
                    pairs.append((overlap, k, j))
        taken_tracks: set[int] = set()
        taken_faces: set[int] = set()
        for _, k, j in sorted(pairs, reverse=True):
            if k not in taken_tracks and j not in taken_faces:
                tracks[k][t] = found[j]
                taken_tracks.add(k)
                taken_faces.add(j)
        for j, face in enumerate(found):
            if j not in taken_faces:
                tracks.append({t: face})
    return tracks


def count_faces(tracks: list[dict[int, tuple[np.ndarray, float]]], min_detections: int = 2,
                min_iou: float = 0.3) -> int:
    """Distinct faces among the tracks: those with at least `min_detections` detections (a single hit
    may be a false detection), where a track that starts after another ended, about where it ended
    (IoU of the two boxes at least `min_iou`), is the same face found again."""
    kept = sorted((tr for tr in tracks if len(tr) >= min_detections), key=min)
    faces: list[dict[int, tuple[np.ndarray, float]]] = []   # the latest track of each face
    for track in kept:
        start = min(track)
        again = [k for k, face in enumerate(faces)
                 if max(face) < start and iou(face[max(face)][0], track[start][0]) >= min_iou]
        if again:
            faces[again[0]] = track
        else:
            faces.append(track)
    return len(faces)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0, edges padded by repetition."""
    if window <= 1 or len(values) < 3:
        return values
    window = min(window, len(values) - (1 - len(values) % 2))
    half = window // 2
    padded = np.concatenate([np.repeat(values[:1], half, 0), values, np.repeat(values[-1:], half, 0)])
    kernel = np.ones(window) / window
    return np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(values.shape[1])], axis=1)


def main_face_track(detections: dict[int, list[tuple[np.ndarray, float]]], num_frames: int,
                    smooth_window: int = 5) -> FaceTrack | None:
    """The subject's track over all `num_frames` frames, or None when no face was detected."""
    tracks = link_tracks(detections)
    if not tracks:
        return None
    track = max(tracks, key=lambda tr: sum((b[2] - b[0]) * (b[3] - b[1]) for b, _ in tr.values()))
    faces_seen = max(1, count_faces(tracks, min_detections=min(2, len(detections))))
    frames = np.array(sorted(track))
    known = np.stack([track[t][0] for t in frames])
    everywhere = np.arange(num_frames)
    boxes = np.stack([np.interp(everywhere, frames, known[:, j]) for j in range(4)], axis=1)
    # Smooth centre and size rather than corners, so the box does not breathe when it shifts.
    centre_size = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)
    centre_size = smooth(centre_size, smooth_window)
    boxes = np.concatenate([centre_size[:, :2] - centre_size[:, 2:] / 2,
                            centre_size[:, :2] + centre_size[:, 2:] / 2], axis=1)
    detected = np.zeros(num_frames, bool)
    detected[frames] = True
    scores = np.zeros(num_frames)
    scores[frames] = [track[t][1] for t in frames]
    return FaceTrack(boxes=boxes, detected=detected, scores=scores, faces_seen=faces_seen)


def crop_squares(boxes: np.ndarray, margin: float, shift_up: float) -> np.ndarray:
    """Square crop regions (x0, y0, x1, y1): side = margin × the box's longer side, raised by
    `shift_up` × side so the forehead is kept."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = margin * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    centre[:, 1] -= shift_up * side
    return np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], axis=1)


def crop_affines(squares: np.ndarray, size: int) -> np.ndarray:
    """(T, 2, 3) affine maps from source pixels to crop pixels for each square."""
    scale = size / (squares[:, 2] - squares[:, 0])
    out = np.zeros((len(squares), 2, 3))
    out[:, 0, 0] = out[:, 1, 1] = scale
    out[:, :, 2] = -squares[:, :2] * scale[:, None]
    return out


def cut_crops(frames: np.ndarray, affines: np.ndarray, size: int) -> np.ndarray:
    """T×size×size×3 crops of RGB frames (T×H×W×3) through the affines (`cut_crop`)."""
    return np.stack([cut_crop(frame, m, size) for frame, m in zip(frames, affines)])


def cut_crop(frame: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The size×size crop of one frame through the affine `m`; regions outside the frame are black.
    For a strong downscale the crop square's own region of the frame (with a small margin) is first
    area-averaged to 1.25× the crop's scale, so the crop does not alias; the rest of the frame is
    never resized."""
    height, width = frame.shape[:2]
    scale = m[0, 0]
    if scale < STRONG_DOWNSCALE:
        margin = 2 / (scale / PRE_SHRINK)   # source pixels the bilinear warp may reach beyond the square
        x0, y0 = np.maximum(np.floor(-m[:, 2] / scale - margin), 0).astype(int)
        x1, y1 = np.minimum(np.ceil((size - m[:, 2]) / scale + margin), (width, height)).astype(int)
        if x1 > x0 and y1 > y0:   # otherwise the square lies outside the frame: the crop is black
            w, h = shrunk_size(x1 - x0, y1 - y0, scale, 1)
            frame = cv2.resize(frame[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_AREA)
            m = shrunk_affine(m, x0, y0, w / (x1 - x0), h / (y1 - y0))
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


STRONG_DOWNSCALE = 0.6   # crop scales below this are area-averaged before the warp
PRE_SHRINK = 0.8         # ... to the crop's scale / PRE_SHRINK (1.25×)


def shrunk_size(width: int, height: int, scale: float, least: int) -> tuple[int, int]:
    """(w, h) a width×height region is area-averaged to before a warp at `scale` (at least `least`)."""
    pre = scale / PRE_SHRINK
    return max(least, round(width * pre)), max(least, round(height * pre))


def shrunk_affine(m: np.ndarray, x0: int, y0: int, sx: float, sy: float) -> np.ndarray:
    """`m` (source pixels -> crop) for the region from (x0, y0) shrunk by (sx, sy): source pixel x lies
    at (x - x0 + 0.5) * sx - 0.5 in the shrunk region (pixel centres, as area averaging places them)."""
    scale = m[0, 0]
    return np.array([[scale / sx, 0, m[0, 2] + scale * (x0 + 0.5 / sx - 0.5)],
                     [0, scale / sy, m[1, 2] + scale * (y0 + 0.5 / sy - 0.5)]])


def crop_region(m: np.ndarray, size: int, height: int, width: int) -> tuple[int, int, int, int] | None:
    """The part of a height×width frame that the crop through `m` reads, with a margin for the
    interpolation, its corners on even pixels (whole 4:2:0 chroma samples); None when it reads none."""
    scale = m[0, 0]
    margin = 4 + 3 / scale
    x0, y0 = np.floor(-m[:, 2] / scale - margin)
    x1, y1 = np.ceil((size - m[:, 2]) / scale + margin)
    x0, y0 = max(0, int(x0) // 2 * 2), max(0, int(y0) // 2 * 2)
    x1, y1 = min(width, -(-int(x1) // 2) * 2), min(height, -(-int(y1) // 2) * 2)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def cut_crops_from_planes(planes, affines: np.ndarray, size: int) -> np.ndarray:
    """The crops `cut_crops` makes, from a clip kept as 4:2:0 planes (`pipeline.inputs.decode.I420Planes`):
    only the region each crop reads is converted to RGB, by the same swscale conversion as a whole
    frame (so a mild scale gives the very pixels of `cut_crops`). For a strong downscale the same
    call also area-averages the region to 1.25× the crop's scale, as `cut_crop` does with OpenCV
    (pixels within a level or two of it)."""
    height, width = planes.y.shape[1:3]
    crops = np.zeros((len(affines), size, size, 3), np.uint8)
    for t, m in enumerate(affines):
        region = crop_region(m, size, height, width)
        if region is None:
            continue   # the square lies outside the frame: the crop stays black
        x0, y0, x1, y1 = region
        scale = m[0, 0]
        if scale < STRONG_DOWNSCALE:
            w, h = shrunk_size(x1 - x0, y1 - y0, scale, 2)
            image = planes.rgb_region(t, x0, y0, x1, y1, size=(w, h))
            warp = shrunk_affine(m, x0, y0, w / (x1 - x0), h / (y1 - y0))
        else:
            image = planes.rgb_region(t, x0, y0, x1, y1)
            warp = m.copy()
            warp[:, 2] += scale * np.array([x0, y0])
        crops[t] = cv2.warpAffine(image, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return crops


def map_boxes(boxes: np.ndarray, affines: np.ndarray) -> np.ndarray:
    """Boxes (T, 4) in source pixels -> the same boxes in crop pixels."""
    scale = affines[:, 0, 0][:, None]
    return boxes * scale + np.tile(affines[:, :, 2], 2)
