"""The bad-input zoo: one clip of every kind of broken or awkward input, made here, through the
whole pipeline in ONE run (cpu profile, 2 workers).

`ZOO` is the documentation (docs/pipeline.md, "Bad inputs"): each case's input and the status
row it must get. Broken inputs fail with their own reason, never the generic `error`; awkward
but sound inputs (10-bit, grey, rotated, variable frame rate, 1 frame, 4K, wrong extension,
a frame folder with a bad or missing image) become samples. The good ones are derived from a
clip of the generated sample dataset (a real face), so each must come out `ok`: none of the
transformations loses the face (the rotated clip is stored sideways and its metadata turns it
upright; the 4K clip is the face clip letterboxed and upscaled; the grey one keeps the
luminance dlib's HOG detector works on anyway).
"""

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.inputs.decode import decode_clip
from pipeline.run.stages import FaceConfig
from pipeline.shards.reader import ShardReader
from test_decode import audio_only, encode, packet_spans

IS_ROOT = os.geteuid() == 0
ROOT_SKIP = "tests run as root (CI): root reads a chmod-000 file, so 'unreadable' cannot be made here"
CLASSES = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")
FRAMES = 20   # frames of the face clip each derived video keeps
UHD = (3840, 2160)
UHD_FRAMES = 24   # 24 × 3840×2160×3 B = 597 MB: over the 512 MiB decode budget, so it is downscaled

# case -> (path under DATA_ROOT, what it is, status, reason). Order = manifest order.
ZOO = {
    # sound inputs, awkward ones: samples
    "wrong_extension": ("videos/wrong_extension.mp4", "a VP9/WebM clip named .mp4 (FFmpeg probes the content)",
                        "ok", ""),
    "ten_bit": ("videos/ten_bit.mp4", "H.264 High 10, yuv420p10le", "ok", ""),
    "gray": ("videos/gray.mkv", "FFV1, pix_fmt gray (one channel)", "ok", ""),
    "rotated": ("videos/rotated.mp4", "stored sideways, display matrix turns it upright (phone video)", "ok", ""),
    "vfr": ("videos/vfr.mkv", "variable frame rate: irregular gaps of 20-90 ms between frames", "ok", ""),
    "one_frame": ("videos/one_frame.mp4", "a video of a single frame", "ok", ""),
    "uhd_4k": ("videos/uhd_4k.mp4", f"3840×2160, {UHD_FRAMES} frames (597 MB decoded > 512 MiB budget)",
               "ok", ""),
    "frames_one_corrupt": ("frames/frames_one_corrupt", "frame folder, 1 of 12 JPEGs is garbage",
                           "ok", ""),   # kept; its status message names the skipped image
    "frames_gap": ("frames/frames_gap", "frame folder numbered 0-11 with 000004, 000005 absent",
                   "ok", ""),           # kept; its status message counts the missing frames
    # broken inputs: a failure with its own reason
    "truncated": ("videos/truncated.mp4", "an mp4 cut at 70 % of its bytes", "failed", "truncated"),
    "zero_byte": ("videos/zero_byte.mp4", "an empty file", "failed", "empty_file"),
    "text_as_mp4": ("videos/text_as_mp4.mp4", "a text file named .mp4", "failed", "not_a_video"),
    "audio_only": ("videos/audio_only.mp4", "an AAC-only mp4 (no video stream)", "failed", "no_video_stream"),
    "noise_packets": ("videos/noise_packets.mp4", "a well-formed mp4 whose packets are random bytes",
                      "failed", "decode_error"),
    "missing": ("videos/missing.mp4", "a manifest row with no file", "failed", "missing_file"),
    "unreadable": ("videos/unreadable.mp4", "a good video with mode 000 (skipped as root)", "failed", "unreadable"),
    "symlink_outside": ("videos/symlink_outside.mp4", "a symbolic link to a good video outside DATA_ROOT",
                        "failed", "path_outside_root"),
    "frames_link_outside": ("frames/frames_link_outside", "frame folder, one image a link to outside DATA_ROOT",
                            "failed", "path_outside_root"),
    "frames_mostly_corrupt": ("frames/frames_mostly_corrupt", "frame folder, 4 of 6 JPEGs are garbage",
                              "failed", "corrupt_frames"),
    "frames_all_corrupt": ("frames/frames_all_corrupt", "frame folder, every JPEG is garbage",
                           "failed", "no_readable_frames"),
    "empty_folder": ("frames/empty_folder", "a folder with no image in it", "failed", "empty_folder"),
    "no_face": ("videos/no_face.mp4", "a sound video without a face (the sample's hard_no_face)",
                "failed", "no_face"),
}
WARNINGS = {"frames_one_corrupt": "1 frame image(s) do not decode and were skipped (000003.jpg)",
            "frames_gap": "2 frame(s) missing from the numbering"}


def face_clip(sample_data: Path) -> tuple[np.ndarray, Path]:
    """Frames of the smallest sound video clip of the sample dataset, and its path."""
    truth = json.loads((sample_data / "ground_truth.json").read_text())["clips"]
    sound = [c for c in truth.values() if c["expected_failure"] is None and c["storage"] == "video"]
    best = min(sound, key=lambda c: (c["width"] * c["height"], c["clip_id"]))
    path = sample_data / best["path"]
    return decode_clip(path).frames[:FRAMES], path


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    scale = min(width / image.shape[1], height / image.shape[0])
    w, h = round(image.shape[1] * scale), round(image.shape[0] * scale)
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)
    left, top = (width - w) // 2, (height - h) // 2
    return cv2.copyMakeBorder(resized, top, height - h - top, left, width - w - left, cv2.BORDER_CONSTANT)


def write_uhd(path: Path, frames: np.ndarray) -> None:
    """The face clip letterboxed to 3840×2160, one frame at a time (never all 4K frames at once).
    4:4:4, so that the face stage decodes it to RGB (3 bytes per pixel, over the budget); a 4:2:0
    clip is kept as planes, 1.5 bytes per pixel (tests/test_decode.py checks that budget)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = *UHD, "yuv444p"
        big = None
        for i in range(UHD_FRAMES):
            if i < len(frames):
                big = letterbox(frames[i], *UHD)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(big, format="rgb24")))
        out.mux(stream.encode())


def write_frames(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{t:06d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def garbage(path: Path, seed: int) -> None:
    path.write_bytes(b"\xff\xd8\xff" + np.random.default_rng(seed).bytes(1500))  # a JPEG start, then noise


VFR_TIMES = np.round(np.cumsum([0.0] + list(np.random.default_rng(1).uniform(0.02, 0.09, FRAMES - 1))), 3)


def build_zoo(sample_data: Path, base: Path) -> tuple[Path, Path]:
    """DATA_ROOT with every case of ZOO, and the manifest; returns (data_root, manifest)."""
    root, outside = base / "DATA_ROOT", base / "outside"
    (root / "videos").mkdir(parents=True)
    (root / "frames").mkdir()
    outside.mkdir()
    frames, source = face_clip(sample_data)
    v = root / "videos"

    webm = next(p for p in sorted((sample_data / "videos").glob("*.webm")) if not p.stem.startswith("hard_"))
    shutil.copy(webm, v / "wrong_extension.mp4")
    encode(v / "ten_bit.mp4", list(frames), pix_fmt="yuv420p10le")
    gray = [np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2) for f in frames]
    encode(v / "gray.mkv", gray, codec="ffv1", pix_fmt="gray")
    # Stored turned a quarter clockwise; the display matrix (+90, counter-clockwise) puts it upright.
    encode(v / "rotated.mp4", [np.ascontiguousarray(np.rot90(f, -1)) for f in frames], rotation=90)
    encode(v / "vfr.mkv", list(frames), times=list(VFR_TIMES))
    encode(v / "one_frame.mp4", [frames[0]])
    write_uhd(v / "uhd_4k.mp4", frames)

    folder = write_frames(root / "frames/frames_one_corrupt", frames[:12])
    garbage(folder / "000003.jpg", 0)
    folder = write_frames(root / "frames/frames_gap", frames[:12])
    (folder / "000004.jpg").unlink()
    (folder / "000005.jpg").unlink()

    full = encode(v / "full.mp4", list(frames), options={"movflags": "+faststart"})
    data = full.read_bytes()
    (v / "truncated.mp4").write_bytes(data[: int(len(data) * 0.7)])
    noisy = bytearray(data)
    rng = np.random.default_rng(0)
    for pos, size in packet_spans(full):
        noisy[pos: pos + size] = rng.bytes(size)
    (v / "noise_packets.mp4").write_bytes(bytes(noisy))
    full.unlink()
    (v / "zero_byte.mp4").touch()
    (v / "text_as_mp4.mp4").write_text("this is a text file, not a video\n" * 40)
    audio_only(v / "audio_only.mp4")
    if not IS_ROOT:
        shutil.copy(source, v / "unreadable.mp4")
        (v / "unreadable.mp4").chmod(0)
    shutil.copy(source, outside / "elsewhere.mp4")
    os.symlink(outside / "elsewhere.mp4", v / "symlink_outside.mp4")
    folder = write_frames(root / "frames/frames_link_outside", frames[:6])
    write_frames(outside / "frames", frames[:1])
    (folder / "000002.jpg").unlink()
    os.symlink(outside / "frames/000000.jpg", folder / "000002.jpg")
    folder = write_frames(root / "frames/frames_mostly_corrupt", frames[:6])
    for i in (0, 2, 3, 5):
        garbage(folder / f"{i:06d}.jpg", i)
    folder = root / "frames/frames_all_corrupt"
    folder.mkdir()
    for i in range(3):
        garbage(folder / f"{i:06d}.jpg", i)
    (root / "frames/empty_folder").mkdir()
    (root / "frames/empty_folder/readme.txt").write_text("no frames here")
    shutil.copy(sample_data / "videos/hard_no_face.mp4", v / "no_face.mp4")

    manifest = base / "zoo.csv"
    lines = ["# The bad-input zoo (tests/test_bad_input_zoo.py)", f"# classes: {', '.join(CLASSES)}",
             "# partitions: fold1, fold2", "clip_id,path,label,partition,frames"]
    for i, (case, (rel, *_)) in enumerate(cases().items()):
        lines.append(f"{case},{rel},{CLASSES[i % len(CLASSES)]},fold{1 + i % 2},")
    manifest.write_text("\n".join(lines) + "\n")
    return root, manifest


def cases() -> dict:
    return {k: v for k, v in ZOO.items() if not (k == "unreadable" and IS_ROOT)}


@pytest.fixture(scope="module")
def zoo(sample_data, tmp_path_factory):
    """The zoo preprocessed once: (output folder, index, status rows by clip id, samples by clip id, stdout)."""
    from pipeline.preprocess import preprocess

    base = tmp_path_factory.mktemp("zoo")
    root, manifest = build_zoo(sample_data, base)
    out = base / "shards"
    try:
        index = preprocess(str(manifest), root, out, profile="cpu", workers=2, shard_size=8, progress=False)
    finally:
        if not IS_ROOT:
            (root / "videos/unreadable.mp4").chmod(0o644)  # lets tmp_path clean-up remove it
    rows = [json.loads(line) for p in sorted(out.glob("*.status.jsonl")) for line in p.read_text().splitlines()]
    samples = {clip.meta["clip_id"]: clip for clip in ShardReader(out)}
    return out, index, rows, samples, manifest


def test_every_row_gets_exactly_one_status_row(zoo):
    out, index, rows, _, _ = zoo
    assert Counter(r["clip_id"] for r in rows) == Counter(cases().keys())
    assert index["complete"] and not index["crashed_shards"]
    assert len(index["shards"]) == 4  # fold1 and fold2, 8 rows per shard


@pytest.mark.parametrize("case", [
    pytest.param(case, marks=pytest.mark.skipif(IS_ROOT, reason=ROOT_SKIP)) if case == "unreadable" else case
    for case in ZOO])
def test_each_case_gets_its_status_and_reason(zoo, case):
    _, _, rows, samples, _ = zoo
    row = next(r for r in rows if r["clip_id"] == case)
    _, what, status, reason = ZOO[case]
    assert (row["status"], row["reason"]) == (status, reason), f"{case} ({what}): {row}"
    if status == "failed":
        assert row["message"] and case not in samples
        if reason not in ("missing_file", "no_face"):   # those name the clip id / what was searched
            assert ZOO[case][0].split("/")[-1] in row["message"], row["message"]
    else:
        assert case in samples and row["message"] == WARNINGS.get(case, ""), row


def test_failures_are_counted_in_the_index_and_summary(zoo):
    from pipeline.inspect_shards import main, summary

    out, index, rows, samples, _ = zoo
    expected = Counter(reason for _, _, status, reason in cases().values() if status == "failed")
    assert index["failures"] == dict(expected)
    assert "error" not in index["failures"]
    assert index["failed"] == sum(expected.values()) and index["ok"] == len(samples) == len(cases()) - index["failed"]
    text = summary(out)
    assert f"{index['ok']} clips ok, {index['failed']} failed" in text
    failures = next(line for line in text.splitlines() if line.startswith("failures: "))
    for reason, n in expected.items():
        assert f"{reason} {n}" in failures
    assert main(["summary", str(out)]) == 0


def test_sound_variants_keep_their_facts(zoo):
    _, _, _, samples, _ = zoo
    src = {case: clip.meta["source"] for case, clip in samples.items()}
    assert src["wrong_extension"]["codec"] == "vp9"
    assert src["ten_bit"]["pix_fmt"] == "yuv420p10le" and src["gray"]["pix_fmt"] == "gray"
    ten_bit = samples["ten_bit"]
    detect_every = FaceConfig.detect_every  # the detector runs on every k-th frame; the tracker carries the box between
    assert ten_bit.num_frames == FRAMES and ten_bit.face_detected[::detect_every].mean() > 0.5
    rotated = src["rotated"]
    # stored sideways, recorded upright: width and height are those of the frames the boxes refer to
    assert rotated["rotation"] == 90 and (rotated["width"], rotated["height"]) == (src["ten_bit"]["width"],
                                                                                   src["ten_bit"]["height"])
    assert samples["rotated"].face_detected[::detect_every].mean() > 0.5
    np.testing.assert_allclose(samples["vfr"].timestamps, VFR_TIMES, atol=1e-6)
    assert samples["one_frame"].num_frames == 1 and samples["one_frame"].face_detected.all()


def test_4k_clip_is_downscaled_into_the_frame_budget(zoo):
    """The decoder holds at most max_frame_bytes (512 MiB) of frames per worker: the 4K clip is
    decoded at one smaller scale, recorded in source.scale, and the crop boxes are in 4K pixels."""
    _, index, _, samples, _ = zoo
    clip = samples["uhd_4k"]
    src = clip.meta["source"]
    budget = index["config"]["max_frame_bytes"]
    assert budget == 512 * 2**20
    assert (src["width"], src["height"], src["frames"]) == (*UHD, UHD_FRAMES)
    scale = src["scale"]
    stored = UHD_FRAMES * int(UHD[0] * scale) * int(UHD[1] * scale) * 3   # decode floors each side
    assert scale < 1 and stored <= budget < UHD_FRAMES * UHD[0] * UHD[1] * 3
    assert clip.num_frames == UHD_FRAMES and clip.face_detected[::FaceConfig.detect_every].mean() > 0.5
    side = clip.boxes[:, 2] - clip.boxes[:, 0]
    assert side.mean() > 500  # source pixels of the 4K frame, not of the downscaled copy


def test_frame_folder_damage_keeps_true_times(zoo):
    _, _, _, samples, _ = zoo
    gap = samples["frames_gap"]
    np.testing.assert_allclose(gap.timestamps, np.array([0, 1, 2, 3, 6, 7, 8, 9, 10, 11]) / 25)
    assert gap.meta["source"]["missing_frames"] == 2
    bad = samples["frames_one_corrupt"]
    assert bad.num_frames == 11 and bad.meta["source"]["skipped_frames"] == 1
    assert 3 / 25 not in bad.timestamps.tolist()


def test_verify_accepts_the_zoo_output(zoo):
    from pipeline.verify import verify_folder

    out, _, _, _, manifest = zoo
    report = verify_folder(out, manifest)
    assert report.ok, report.render()
