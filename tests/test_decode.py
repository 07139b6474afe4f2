"""pipeline.inputs.decode on real inputs made here with PyAV and OpenCV: good videos in several
codecs and pixel formats, rotation metadata, variable frame rate, frame folders, and one
input for every failure reason."""

import json
import os
import pickle
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from pipeline.inputs.decode import DecodeError, decode_clip, natural_key, source_warnings, uniform_indices

W, H = 64, 48


def level(i: int, n: int) -> int:
    """Grey level of frame i of n: distinct per frame, so content shows which frame was kept."""
    return int(round(16 + 220 * i / max(n - 1, 1)))


def flat(value: int, h: int = H, w: int = W) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def encode(path, images, codec="libx264", pix_fmt="yuv420p", rate=25, times=None, rotation=None,
           options=None):
    """Write images (H×W×3 RGB) as a video; `times` (seconds) gives irregular pts."""
    h, w = images[0].shape[:2]
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if times is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def grey_clip(path, n, **kwargs):
    return encode(path, [flat(level(i, n)) for i in range(n)], **kwargs)


def frame_levels(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1).mean(axis=1)


# ---------------------------------------------------------------------------- good videos


def test_h264_mp4(tmp_path):
    n = 20
    clip = decode_clip(grey_clip(tmp_path / "clip.mp4", n))
    assert clip.frames.shape == (n, H, W, 3) and clip.frames.dtype == np.uint8
    assert clip.timestamps.dtype == np.float64
    np.testing.assert_allclose(clip.timestamps, np.arange(n) / 25, atol=1e-6)
    np.testing.assert_allclose(frame_levels(clip.frames), [level(i, n) for i in range(n)], atol=3)
    src = clip.source
    assert src["kind"] == "video" and src["codec"] == "h264" and src["pix_fmt"] == "yuv420p"
    assert src["fps"] == pytest.approx(25) and src["duration_s"] == pytest.approx(n / 25)
    assert (src["frames"], src["width"], src["height"], src["rotation"]) == (n, W, H, 0)
    assert not src["fps_assumed"] and not src["subsampled"]
    assert src["scale"] == 1.0 and src["skipped_frames"] == 0
    json.dumps(src)


def test_long_clip_is_subsampled_uniformly(tmp_path):
    n = 300
    clip = decode_clip(grey_clip(tmp_path / "long.mp4", n), max_frames=64)
    assert len(clip.frames) == len(clip.timestamps) == 64
    assert clip.source["frames"] == n and clip.source["subsampled"]
    assert clip.timestamps[0] == 0 and clip.timestamps[-1] == pytest.approx((n - 1) / 25)
    steps = np.diff(clip.timestamps)
    assert (steps > 0).all() and steps.max() - steps.min() <= 1 / 25 + 1e-9
    # each kept frame is the one its timestamp names
    indices = np.round(clip.timestamps * 25).astype(int)
    np.testing.assert_allclose(frame_levels(clip.frames), [level(i, n) for i in indices], atol=3)


def test_max_bytes_downscales_every_frame(tmp_path):
    n, w, h = 10, 160, 120
    path = encode(tmp_path / "big.mp4", [flat(level(i, n), h, w) for i in range(n)])
    budget = n * h * w * 3 // 4
    clip = decode_clip(path, max_bytes=budget)
    assert clip.frames.nbytes <= budget
    assert clip.frames.shape == (n, h // 2, w // 2, 3)
    assert clip.source["scale"] == pytest.approx(0.5)
    assert (clip.source["width"], clip.source["height"]) == (w, h)  # the source's own size
    np.testing.assert_allclose(frame_levels(clip.frames), [level(i, n) for i in range(n)], atol=3)


def test_planes_keep_a_420_clip_unconverted_and_convert_regions_to_the_same_pixels(tmp_path):
    """decode_clip(planes=True): a yuv420p clip keeps its Y, U, V planes (1.5 bytes per pixel); any region
    converted from them has the very pixels of the whole frame converted; other clips come as RGB."""
    rng = np.random.default_rng(1)
    n, w, h = 6, 96, 64
    images = [cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (9, 9), 0) for _ in range(n)]
    path = encode(tmp_path / "colour.mp4", images)
    rgb, planes = decode_clip(path), decode_clip(path, planes=True)
    assert planes.frames is None and planes.shape == (n, h, w) == rgb.frames.shape[:3]
    assert planes.planes.y.shape == (n, h, w) and planes.planes.u.shape == planes.planes.v.shape == (n, h // 2, w // 2)
    np.testing.assert_array_equal(planes.timestamps, rgb.timestamps)
    assert planes.source == rgb.source
    for t in (0, n - 1):
        np.testing.assert_array_equal(planes.planes.rgb_region(t, 0, 0, w, h), rgb.frames[t])
        np.testing.assert_array_equal(planes.planes.rgb_region(t, 10, 4, 50, 40), rgb.frames[t, 4:40, 10:50])
    shrunk = planes.planes.rgb_region(2, 0, 0, w, h, size=(w // 2, h // 2))
    expected = cv2.resize(rgb.frames[2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    # swscale averages the (half-resolution) chroma on its own grid: close to OpenCV, not the same
    assert shrunk.shape == (h // 2, w // 2, 3) and np.abs(shrunk.astype(int) - expected).mean() < 3
    # the planes' memory budget: 1.5 bytes per pixel, even sides
    small = decode_clip(path, planes=True, max_bytes=n * h * w * 3 // 8)
    assert small.shape == (n, h // 2, w // 2) and small.source["scale"] == pytest.approx(0.5)
    assert small.planes.y.nbytes + small.planes.u.nbytes + small.planes.v.nbytes <= n * h * w * 3 // 8
    # not 4:2:0: RGB as usual
    deep = decode_clip(grey_clip(tmp_path / "deep.mp4", 3, pix_fmt="yuv420p10le"), planes=True)
    assert deep.planes is None and deep.frames.shape == (3, H, W, 3)


def test_grayscale_video_gives_equal_rgb_channels(tmp_path):
    rng = np.random.default_rng(0)
    images = [np.repeat(rng.integers(0, 256, (H, W, 1), dtype=np.uint8), 3, axis=2) for _ in range(5)]
    clip = decode_clip(encode(tmp_path / "gray.mkv", images, codec="ffv1", pix_fmt="gray"))
    assert clip.source["pix_fmt"] == "gray" and clip.source["codec"] == "ffv1"
    assert clip.frames.shape == (5, H, W, 3)
    red, green, blue = clip.frames[..., 0], clip.frames[..., 1], clip.frames[..., 2]
    assert (red == green).all() and (green == blue).all()
    np.testing.assert_array_equal(clip.frames, np.stack(images))  # ffv1 is lossless


def test_10bit_video(tmp_path):
    n = 6
    clip = decode_clip(grey_clip(tmp_path / "deep.mp4", n, pix_fmt="yuv420p10le"))
    assert clip.source["pix_fmt"] == "yuv420p10le"
    assert clip.frames.shape == (n, H, W, 3) and clip.frames.dtype == np.uint8
    np.testing.assert_allclose(frame_levels(clip.frames), [level(i, n) for i in range(n)], atol=3)


def test_variable_frame_rate_keeps_true_times(tmp_path):
    times = [0.0, 0.04, 0.05, 0.2, 0.21, 0.5, 0.9]
    path = encode(tmp_path / "vfr.mkv", [flat(level(i, 7)) for i in range(7)], times=times)
    clip = decode_clip(path)
    np.testing.assert_allclose(clip.timestamps, times, atol=1e-6)
    assert clip.source["fps"] == pytest.approx(6 / 0.9)
    assert clip.source["timestamps_repaired"] == 0


def test_raw_stream_without_timestamps_gets_nominal_times(tmp_path):
    """A bare H.264 elementary stream carries no pts: times are spaced by the guessed rate."""
    n = 8
    with av.open(str(tmp_path / "raw.h264"), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(n):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(flat(level(i, n)), format="rgb24")))
        out.mux(stream.encode())
    clip = decode_clip(tmp_path / "raw.h264")
    np.testing.assert_allclose(clip.timestamps, np.arange(n) / 25, atol=1e-9)
    assert clip.source["timestamps_repaired"] == n - 1
    np.testing.assert_allclose(frame_levels(clip.frames), [level(i, n) for i in range(n)], atol=3)


def test_single_frame_video(tmp_path):
    clip = decode_clip(grey_clip(tmp_path / "one.mp4", 1))
    assert clip.frames.shape == (1, H, W, 3)
    assert clip.timestamps.tolist() == [0.0]
    assert clip.source["frames"] == 1 and clip.source["fps"] == pytest.approx(25)


# The stored picture has its top half white. FFmpeg's display matrix (PyAV's
# set_display_rotation / VideoFrame.rotation) rotates counter-clockwise to show it upright,
# so the white half ends up on the side the top edge turns to.
@pytest.mark.parametrize("degrees, white_side", [(90, "left"), (180, "bottom"), (-90, "right")])
def test_rotation_metadata_is_applied(tmp_path, degrees, white_side):
    top_white = np.zeros((H, W, 3), np.uint8)
    top_white[: H // 2] = 255
    path = encode(tmp_path / "rot.mp4", [top_white] * 3, rotation=degrees)
    clip = decode_clip(path)
    upright_hw = (H, W) if degrees == 180 else (W, H)
    assert clip.frames.shape == (3, *upright_hw, 3)
    assert clip.source["rotation"] == degrees % 360
    assert (clip.source["height"], clip.source["width"]) == upright_hw
    assert white_side == bright_side(clip.frames[0])
    # OpenCV's FFmpeg reader auto-orients independently of our code: it must agree.
    capture = cv2.VideoCapture(str(path))
    ok, bgr = capture.read()
    capture.release()
    assert ok and bgr.shape[:2] == upright_hw and bright_side(bgr) == white_side


def bright_side(image: np.ndarray) -> str:
    h, w = image.shape[:2]
    halves = {"top": image[: h // 2], "bottom": image[h - h // 2:], "left": image[:, : w // 2],
              "right": image[:, w - w // 2:]}
    return max(halves, key=lambda side: halves[side].mean())


# ---------------------------------------------------------------------------- frame folders


def test_frame_folder(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    n = 12
    for i in range(1, n + 1):
        image = flat(level(i - 1, n))
        if i == 9:  # a bigger image is resized to the first one's size
            image = flat(level(i - 1, n), 2 * H, 2 * W)
        name = f"f{i}.PNG" if i == 3 else f"f{i}.png"
        cv2.imwrite(str(folder / name), image[..., 0] if i == 5 else image)  # f5: single-channel
    (folder / "f7.png").unlink()
    (folder / "f7.jpg").write_bytes(np.random.default_rng(0).bytes(2000))  # corrupt
    (folder / "notes.txt").write_text("not a frame")

    clip = decode_clip(folder)
    kept = [i for i in range(n) if i != 6]  # indices in natural order; f7 is index 6
    assert clip.frames.shape == (n - 1, H, W, 3)
    np.testing.assert_allclose(clip.timestamps, np.array(kept) / 25)
    np.testing.assert_allclose(frame_levels(clip.frames), [level(i, n) for i in kept], atol=1)
    grey = clip.frames[kept.index(4)]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    src = clip.source
    assert src["kind"] == "frames" and src["fps_assumed"] and src["fps"] == 25
    assert (src["frames"], src["skipped_frames"], src["width"], src["height"]) == (n, 1, W, H)
    assert not src["subsampled"] and src["scale"] == 1.0
    json.dumps(src)


def test_frame_folder_reads_only_the_kept_images(tmp_path):
    n, keep = 30, 10
    chosen = set(uniform_indices(n, keep).tolist())
    for i in range(n):
        path = tmp_path / f"img_{i}.jpg"
        if i in chosen:
            cv2.imwrite(str(path), flat(level(i, n)))
        else:  # never read, so never counted as skipped
            path.write_bytes(b"garbage")
    budget = keep * H * W * 3 // 4
    clip = decode_clip(tmp_path, max_frames=keep, folder_fps=10.0, max_bytes=budget)
    assert clip.source["skipped_frames"] == 0 and clip.source["subsampled"]
    assert clip.frames.shape == (keep, H // 2, W // 2, 3) and clip.source["scale"] == pytest.approx(0.5)
    np.testing.assert_allclose(clip.timestamps, sorted(i / 10 for i in chosen))


def test_natural_sort_and_uniform_indices():
    names = ["f10.png", "f2.png", "F1.png", "f1b.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f1b.png", "f2.png", "f10.png"]
    assert uniform_indices(5, 8).tolist() == [0, 1, 2, 3, 4]
    picked = uniform_indices(300, 64)
    assert len(picked) == 64 and picked[0] == 0 and picked[-1] == 299


# ---------------------------------------------------------------------------- failures


def audio_only(path):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        t = np.arange(16000) / 16000
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                           format="fltp", layout="mono")
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def packet_spans(path):
    with av.open(str(path)) as container:
        return [(p.pos, p.size) for p in container.demux(video=0) if p.size]


def faststart_clip(tmp_path):
    """30 textured frames with the index (moov) first, so a cut keeps the header and loses frames."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(30)]
    return encode(tmp_path / "full.mp4", images, options={"movflags": "+faststart"})


def cut_copy(path, size):
    cut = path.with_name("cut.mp4")
    cut.write_bytes(path.read_bytes()[:size])
    return cut


def expect_failure(path, reason, **kwargs):
    with pytest.raises(DecodeError) as info:
        decode_clip(path, **kwargs)
    assert info.value.reason == reason, info.value
    assert str(path) in str(info.value)
    return info.value


def test_missing_file(tmp_path):
    expect_failure(tmp_path / "nope.mp4", "missing_file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    expect_failure(path, "empty_file")


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "text.mp4"
    path.write_text("this is not a video\n" * 20)
    expect_failure(path, "not_a_video")


def test_audio_only_file(tmp_path):
    err = expect_failure(audio_only(tmp_path / "sine.m4a"), "no_video_stream")
    assert "audio" in err.message


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.95])
def test_truncated_mp4(tmp_path, fraction):
    full = faststart_clip(tmp_path)
    expect_failure(cut_copy(full, int(full.stat().st_size * fraction)), "truncated")


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.95])
def test_recording_cut_short_before_its_index(tmp_path, fraction):
    """An MP4 with its index (moov) at the end, as recorders write it, cut short: FFmpeg refuses it
    outright, but it is a truncated video, not a file of another kind."""
    full = grey_clip(tmp_path / "index_last.mp4", 30)
    data = full.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat"), "the muxer's default puts the index last"
    err = expect_failure(cut_copy(full, int(len(data) * fraction)), "truncated")
    assert "moov" in err.message


@pytest.mark.parametrize("packet", [0, 20])
def test_truncated_exactly_between_packets(tmp_path, packet):
    """No partial packet to notice: only the header, which lists more packets, tells."""
    full = faststart_clip(tmp_path)
    assert decode_clip(full).source["frames"] == 30
    start, _ = packet_spans(full)[packet]
    expect_failure(cut_copy(full, start), "truncated")


def test_stream_that_does_not_decode(tmp_path):
    """A well-formed mp4 whose packets are noise: the stream exists, no frame decodes."""
    path = grey_clip(tmp_path / "noise.mp4", 10, options={"movflags": "+faststart"})
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for pos, size in packet_spans(path):
        data[pos: pos + size] = rng.bytes(size)
    path.write_bytes(bytes(data))
    expect_failure(path, "decode_error")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = grey_clip(tmp_path / "locked.mp4", 3)
    path.chmod(0)
    try:
        expect_failure(path, "unreadable")
    finally:
        path.chmod(0o644)


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no frames here")
    expect_failure(tmp_path, "empty_folder")


def test_folder_of_corrupt_images(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(np.random.default_rng(i).bytes(500))
    expect_failure(tmp_path, "no_readable_frames")


def test_decode_error_survives_pickling():
    err = pickle.loads(pickle.dumps(DecodeError("truncated", "clip.mp4: cut short")))
    assert (err.reason, err.message, str(err)) == ("truncated", "clip.mp4: cut short", "clip.mp4: cut short")


# ---------------------------------------------------------------------------- frame folder damage


def numbered_folder(folder, numbers, n=None, name="{:05d}.jpg"):
    folder.mkdir(exist_ok=True)
    n = n or max(numbers) + 1
    for i in numbers:
        cv2.imwrite(str(folder / name.format(i)), flat(level(i, n)))
    return folder


def test_gap_in_frame_numbering_is_counted_and_keeps_true_times(tmp_path):
    folder = numbered_folder(tmp_path / "gap", [1, 2, 4, 5, 6, 9])
    clip = decode_clip(folder)
    np.testing.assert_allclose(clip.timestamps, np.array([0, 1, 3, 4, 5, 8]) / 25)
    assert clip.source["missing_frames"] == 3 and clip.source["skipped_frames"] == 0  # 3, 7, 8
    assert clip.source["frames"] == 6 and clip.source["duration_s"] == pytest.approx(9 / 25)
    assert source_warnings(clip.source) == ["3 frame(s) missing from the numbering"]


def test_folder_numbered_in_steps_is_a_sampled_clip_without_gaps(tmp_path):
    clip = decode_clip(numbered_folder(tmp_path / "every4th", [3, 7, 11, 15], name="frame_{}.png"))
    np.testing.assert_allclose(clip.timestamps, np.arange(4) / 25)
    assert clip.source["missing_frames"] == 0 and source_warnings(clip.source) == []


def test_unnumbered_names_are_timed_by_position(tmp_path):
    folder = tmp_path / "named"
    folder.mkdir()
    for i, name in enumerate(["a.jpg", "b.jpg", "c7.jpg"]):
        cv2.imwrite(str(folder / name), flat(level(i, 3)))
    clip = decode_clip(folder)
    np.testing.assert_allclose(clip.timestamps, np.arange(3) / 25)
    assert clip.source["missing_frames"] == 0


def test_one_corrupt_image_is_skipped_and_named(tmp_path):
    folder = numbered_folder(tmp_path / "one_bad", range(8))
    (folder / "00003.jpg").write_bytes(np.random.default_rng(0).bytes(800))
    clip = decode_clip(folder)
    assert len(clip.frames) == 7 and 3 / 25 not in clip.timestamps.tolist()
    assert clip.source["skipped_frames"] == 1 and clip.source["skipped_images"] == ["00003.jpg"]
    assert source_warnings(clip.source) == ["1 frame image(s) do not decode and were skipped (00003.jpg)"]


def test_mostly_corrupt_folder_fails(tmp_path):
    folder = numbered_folder(tmp_path / "mostly_bad", range(5))
    for i in (0, 2, 4):
        (folder / f"{i:05d}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    err = expect_failure(folder, "corrupt_frames")
    assert "3 of the 5 images" in err.message and "00000.jpg" in err.message


def test_image_linked_from_outside_root_fails_the_folder(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    folder = numbered_folder(root / "clip", range(3))
    outside = numbered_folder(tmp_path / "elsewhere", [9])
    os.symlink(outside / "00009.jpg", folder / "00003.jpg")
    os.symlink(folder / "00000.jpg", folder / "00004.jpg")  # a link that stays inside is fine
    err = expect_failure(folder, "path_outside_root", root=root)
    assert "00003.jpg" in err.message and str(outside / "00009.jpg") in err.message
    assert len(decode_clip(folder).frames) == 5  # without a root nothing is checked


def test_4k_clip_is_downscaled_into_the_default_budget(tmp_path):
    """24 frames of 3840×2160 RGB are 597 MB: over the 512 MiB budget, so every frame shrinks."""
    n, w, h = 24, 3840, 2160
    path = tmp_path / "uhd.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(flat(level(i, n), h, w), format="rgb24")))
        out.mux(stream.encode())
    clip = decode_clip(path)
    assert clip.frames.nbytes <= 512 * 2**20 < n * h * w * 3
    scale = clip.source["scale"]
    assert scale == pytest.approx(np.sqrt(512 * 2**20 / (n * h * w * 3)), rel=1e-9) and scale < 1
    assert clip.frames.shape == (n, int(h * scale), int(w * scale), 3)
    assert (clip.source["width"], clip.source["height"]) == (w, h)  # the source's own size
    np.testing.assert_allclose(frame_levels(clip.frames), [level(i, n) for i in range(n)], atol=3)


def test_a_mild_downscale_keeps_the_detail_of_area_averaging(tmp_path):
    """The cap shrinks a 720p clip of 256 frames by 0.85: bilinear there, as sharp as area averaging."""
    from skimage.data import astronaut

    n = 4
    path = encode(tmp_path / "face.mp4", [astronaut()] * n)
    full = decode_clip(path).frames
    clip = decode_clip(path, max_bytes=int(full.nbytes * 0.85**2))
    assert 0.84 < clip.source["scale"] < 0.86
    h, w = clip.frames.shape[1:3]
    area = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in full])
    mse = ((clip.frames.astype(float) - area) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 40   # dB
