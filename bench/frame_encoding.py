"""Measure candidate encodings for a clip's face crops and parsing masks inside a shard.

    python bench/frame_encoding.py [--frames 85] [--size 224] [--out bench/results/frame_encoding.json]

For one clip of moving face crops (the astronaut portrait under a slow similarity warp,
85 frames = MAFW's median length), it reports bytes per clip and the time to decode a
16-frame TSN sample (one random frame per segment) for: every frame a JPEG tar member;
one MJPEG stream with a byte-offset index (the shard format's choice since v1); H.264 in MP4 at two
keyframe intervals. Masks: one compressed .npz of the whole clip, and per-frame PNGs with
an offset index. docs/shard-format.md quotes the result.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
from skimage.data import astronaut

from common import machine_info


def face_clip(frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A T×S×S×3 uint8 clip of a real face in slow motion, and T×S×S label masks."""
    image = astronaut()[20:220, 140:340]  # the face, RGB
    clips, masks = [], []
    for t in range(frames):
        phase = 2 * np.pi * t / frames
        m = cv2.getRotationMatrix2D((100, 100), 4 * np.sin(phase), 1.0 + 0.04 * np.cos(phase))
        m[:, 2] += (3 * np.sin(2 * phase), 2 * np.cos(phase))
        warped = cv2.warpAffine(image, m, (200, 200), borderMode=cv2.BORDER_REFLECT)
        clips.append(cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA))
        mask = np.zeros((size, size), np.uint8)
        cx, cy = size // 2 + int(3 * np.sin(2 * phase)), size // 2
        cv2.ellipse(mask, (cx, cy), (size // 3, size // 2 - 10), 0, 0, 360, 1, -1)  # skin
        for dx in (-1, 1):
            cv2.ellipse(mask, (cx + dx * size // 7, cy - size // 10), (size // 14, size // 30), 0, 0, 360, 4 + (dx > 0), -1)
            cv2.line(mask, (cx + dx * size // 10, cy - size // 5), (cx + dx * size // 5, cy - size // 5), 6 + (dx > 0), 5)
        cv2.ellipse(mask, (cx, cy + size // 5), (size // 8, size // 30 + int(4 * (1 + np.sin(phase)))), 0, 0, 360, 11, -1)
        masks.append(mask)
    return np.stack(clips), np.stack(masks)


def tsn_indices(n: int, rng: np.random.Generator, segments: int = 16) -> np.ndarray:
    edges = np.linspace(0, n, segments + 1)
    return np.minimum(n - 1, (edges[:-1] + rng.random(segments) * np.diff(edges)).astype(int))


def timed(fn, repeats: int) -> float:
    """Median wall milliseconds of fn() over `repeats` calls."""
    fn()  # warm-up: first-call allocations and library initialisation
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
    return float(np.median(samples))


def tar_bytes(members: dict[str, bytes]) -> int:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return len(buf.getvalue()) - 1024  # without the end-of-archive blocks


def jpeg_frames(clip: np.ndarray, quality: int, optimize: bool = False) -> list[bytes]:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] + ([cv2.IMWRITE_JPEG_OPTIMIZE, 1] if optimize else [])
    return [cv2.imencode(".jpg", f[..., ::-1], params)[1].tobytes() for f in clip]


def h264(clip: np.ndarray, gop: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = clip.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        stream.options = {"crf": "18", "preset": "medium", "keyint_min": str(gop), "sc_threshold": "0"}
        for f in clip:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def decode_h264(data: bytes, wanted: np.ndarray) -> list[np.ndarray]:
    """Decode forward until the last wanted frame (seeking by keyframe costs more on short clips)."""
    want, last, out = set(wanted.tolist()), int(wanted.max()), []
    with av.open(io.BytesIO(data)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in want:
                out.append(frame.to_ndarray(format="rgb24"))
            if i >= last:
                break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=85)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench/results/frame_encoding.json"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    clip, masks = face_clip(args.frames, args.size)
    rng = np.random.default_rng(0)
    samples = [tsn_indices(args.frames, rng) for _ in range(args.repeats)]
    it = iter(samples * 3)
    results = {}

    def psnr(decoded: np.ndarray, index: int) -> float:
        err = np.mean((decoded.astype(np.float64) - clip[index]) ** 2)
        return float(10 * np.log10(255**2 / max(err, 1e-9)))

    warm = jpeg_frames(clip, 90)
    timed(lambda: [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in warm], 20)  # CPU warm-up
    for q, optimize in ((85, False), (90, False), (95, False), (90, True)):
        jpgs = jpeg_frames(clip, q, optimize)
        name = f"q{q}" + ("_optimized" if optimize else "")
        offsets = np.cumsum([0] + [len(j) for j in jpgs])
        stream = b"".join(jpgs)

        def decode_mjpeg():
            idx = next(it)
            return [cv2.imdecode(np.frombuffer(stream[offsets[i]:offsets[i + 1]], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
                    for i in idx]

        index_npy = io.BytesIO()
        np.save(index_npy, offsets.astype(np.int64))
        it = iter(samples * 3)
        results[f"jpeg_{name}_per_frame_members"] = dict(
            bytes_per_clip=tar_bytes({f"k.f{i:04d}.jpg": j for i, j in enumerate(jpgs)}),
            decode16_ms=timed(decode_mjpeg, args.repeats),
            psnr_db=psnr(cv2.imdecode(np.frombuffer(jpgs[7], np.uint8), cv2.IMREAD_COLOR)[..., ::-1], 7))
        it = iter(samples * 3)
        results[f"mjpeg_{name}_with_offsets"] = dict(
            bytes_per_clip=tar_bytes({"k.frames.mjpeg": stream, "k.frames_offsets.npy": index_npy.getvalue()}),
            decode16_ms=timed(decode_mjpeg, args.repeats),
            psnr_db=psnr(cv2.imdecode(np.frombuffer(jpgs[7], np.uint8), cv2.IMREAD_COLOR)[..., ::-1], 7))
    for gop in (1, 16):
        data = h264(clip, gop)
        it = iter(samples * 3)
        results[f"h264_crf18_gop{gop}"] = dict(
            bytes_per_clip=tar_bytes({"k.frames.mp4": data}),
            decode16_ms=timed(lambda: decode_h264(data, next(it)), args.repeats),
            psnr_db=psnr(decode_h264(data, np.array([7]))[0], 7))

    npz = io.BytesIO()
    np.savez_compressed(npz, masks=masks)
    pngs = [cv2.imencode(".png", m)[1].tobytes() for m in masks]
    png_offsets = np.cumsum([0] + [len(p) for p in pngs])
    png_stream = b"".join(pngs)
    png_index = io.BytesIO()
    np.save(png_index, png_offsets.astype(np.int64))
    it = iter(samples * 3)
    results["masks_npz_whole_clip"] = dict(
        bytes_per_clip=tar_bytes({"k.masks.npz": npz.getvalue()}),
        decode16_ms=timed(lambda: np.load(io.BytesIO(npz.getvalue()))["masks"][next(it)], args.repeats))
    it = iter(samples * 3)
    results["masks_png_with_offsets"] = dict(
        bytes_per_clip=tar_bytes({"k.masks.png": png_stream, "k.masks_offsets.npy": png_index.getvalue()}),
        decode16_ms=timed(lambda: [cv2.imdecode(np.frombuffer(png_stream[png_offsets[i]:png_offsets[i + 1]], np.uint8),
                                                cv2.IMREAD_UNCHANGED) for i in next(it)], args.repeats))

    report = dict(
        benchmark="frame_encoding", frames=args.frames, size=args.size, repeats=args.repeats,
        machine=machine_info(),
        single_thread_decoders=True, results=results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'encoding':34s} {'KB/clip':>9s} {'decode16 ms':>12s} {'PSNR dB':>8s}")
    for name, r in results.items():
        print(f"{name:34s} {r['bytes_per_clip'] / 1024:9.1f} {r['decode16_ms']:12.2f} {r.get('psnr_db', float('inf')):8.1f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
