"""Shard format: samples with real encoded frames round-trip through our reader,
plain webdataset and plain tarfile, field for field; JSON members keep fixed keys and types;
version 1 shards still read; the writer is atomic."""

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
import webdataset as wds
from skimage.data import astronaut

from pipeline.shards.format import (DETAILS, FORMAT_VERSION, META_FIELDS, ShardFormatError, decode_sample,
                                   encode_sample, make_sample)
from pipeline.shards.reader import ShardReader, ShardWriter, list_shards, read_shard, shard_name

SIZE = 64

ROOT = Path(__file__).resolve().parent.parent


def video_frames(tmp_path, n, seed):
    """Encode a short H.264 clip of a moving real face with PyAV and decode it back."""
    face = cv2.resize(astronaut()[20:220, 140:340], (SIZE, SIZE))
    path = tmp_path / f"clip{seed}.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for t in range(n):
            frame = np.roll(face, shift=t + seed, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def clip(tmp_path, key, n, seed=0, with_masks=True, with_description=True):
    frames = video_frames(tmp_path, n, seed)
    rng = np.random.default_rng(seed)
    masks = rng.integers(0, 19, (n, SIZE, SIZE), dtype=np.uint8) if with_masks else None
    sample = make_sample(
        key=key,
        meta=dict(dataset="mafw", clip_id=key, label="anger", partition="fold1",
                  source=dict(path=f"data/clips/{key}.mp4", fps=25.0, frames=n, width=320, height=240),
                  quality=dict(face_frames=n)),
        frames=frames, timestamps=np.arange(n) / 25.0,
        boxes=np.tile([10.0, 20.0, 110.0, 120.0], (n, 1)),
        face_detected=np.arange(n) % 5 != 0,
        landmarks=rng.uniform(0, SIZE, (n, 68, 2)),
        landmarks_conf=rng.uniform(0, 1, n),
        masks=masks,
        description="The brows rise and the jaw drops." if with_description else None,
        description_record=dict(backend="geometric", version=1, raw_text="raw") if with_description else None)
    if with_description:
        sample.au, sample.au_names = rng.uniform(0, 1, (n, 3)).astype(np.float32), ["jaw_drop", "brow_raise", "blink"]
    return sample


def assert_same(a, b):
    assert a.key == b.key
    assert {k: v for k, v in a.meta.items() if k not in ("format_version", "num_frames")} == \
        {k: v for k, v in b.meta.items() if k not in ("format_version", "num_frames")}
    assert a.frames_mjpeg == b.frames_mjpeg
    for name in ("frame_offsets", "timestamps", "boxes", "face_detected", "landmarks", "landmarks_conf"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (a.masks() is None and b.masks() is None) or np.array_equal(a.masks(), b.masks())
    assert a.description == b.description and a.description_record == b.description_record
    assert (a.au is None and b.au is None) or (np.array_equal(a.au, b.au) and a.au_names == b.au_names)


@pytest.fixture
def shard(tmp_path):
    samples = [clip(tmp_path, "00001", 12, 0), clip(tmp_path, "00002", 5, 1, with_masks=False),
               clip(tmp_path, "Action_Happy_0267", 20, 2, with_description=False)]
    path = tmp_path / "shards" / shard_name("fold1", 0)
    with ShardWriter(path) as writer:
        for s in samples:
            writer.write(s)
    return path, samples


def test_round_trip_with_our_reader(shard):
    path, samples = shard
    read = list(read_shard(path))
    assert len(read) == len(samples)
    for a, b in zip(samples, read):
        assert_same(a, b)
        assert b.meta["format_version"] == FORMAT_VERSION and b.meta["num_frames"] == a.num_frames
    # lossy but faithful frames: JPEG q90 of the decoded video
    original = video_frames(path.parent.parent, 12, 0)
    decoded = read[0].frames()
    assert decoded.shape == (12, SIZE, SIZE, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - original).mean() < 4
    assert np.array_equal(read[0].frames([3, 7]), decoded[[3, 7]])
    assert np.array_equal(read[0].masks([1, 2]), read[0].masks()[[1, 2]])
    assert read[1].masks() is None and read[2].description is None


def test_round_trip_with_plain_webdataset(shard):
    path, samples = shard
    raw = list(wds.WebDataset(str(path), shardshuffle=False))
    assert [r["__key__"] for r in raw] == [s.key for s in samples]
    for a, r in zip(samples, raw):
        assert_same(a, decode_sample(r))
    decoded = list(wds.WebDataset(str(path), shardshuffle=False).decode())  # webdataset's own decoders
    first = decoded[0]
    assert np.array_equal(first["landmarks.npy"], samples[0].landmarks)
    assert first["meta.json"]["label"] == "anger"
    assert first["description.txt"] == samples[0].description


def test_round_trip_with_plain_tarfile(shard):
    path, samples = shard
    with tarfile.open(path) as tar:
        names = tar.getnames()
        member = {n: tar.extractfile(n).read() for n in names}
    assert {n.split(".", 1)[0] for n in names} == {x.key for x in samples}
    assert "00001.frames.mjpeg" in names and not any(n.endswith((".pkl", ".pickle", ".pyd")) for n in names)
    s = samples[0]
    meta = json.loads(member["00001.meta.json"])
    assert meta["clip_id"] == "00001" and meta["source"]["fps"] == 25.0
    offsets = np.load(io.BytesIO(member["00001.frames_offsets.npy"]), allow_pickle=False)
    stream = member["00001.frames.mjpeg"]
    frame5 = cv2.imdecode(np.frombuffer(stream[offsets[5]:offsets[6]], np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(frame5[..., ::-1], s.frames([5])[0])
    for field in ("timestamps", "boxes", "face_detected", "landmarks", "landmarks_conf"):
        array = np.load(io.BytesIO(member[f"00001.{field}.npy"]), allow_pickle=False)
        assert np.array_equal(array, getattr(s, field))
    masks = np.load(io.BytesIO(member["00001.masks.npz"]), allow_pickle=False)["masks"]
    assert masks.shape == (12, SIZE, SIZE) and np.array_equal(masks, s.masks())
    assert member["00001.description.txt"].decode() == s.description
    au = np.load(io.BytesIO(member["00001.au.npz"]), allow_pickle=False)
    assert au["signals"].shape == (12, 3) and list(au["names"]) == s.au_names
    # the MJPEG stream is a video file ffmpeg reads on its own
    with av.open(io.BytesIO(stream), format="mjpeg") as container:
        assert sum(1 for _ in container.decode(video=0)) == 12


def test_writer_is_atomic_and_rejects_duplicates(tmp_path):
    s = clip(tmp_path, "00001", 4)
    path = tmp_path / "fold1-000000.tar"
    with pytest.raises(ShardFormatError, match="written twice"):
        with ShardWriter(path) as writer:
            writer.write(s)
            assert writer.tmp_path.exists() and not path.exists()
            writer.write(s)
    assert not path.exists() and not list(tmp_path.glob("*.tmp"))


def test_bad_samples_are_named(tmp_path, shard):
    s = clip(tmp_path, "00001", 4)
    s.key = "has.dot"
    with pytest.raises(ShardFormatError, match="no dots"):
        encode_sample(s)
    s = clip(tmp_path, "00001", 4)
    s.landmarks = s.landmarks[:3]
    with pytest.raises(ShardFormatError, match=r"landmarks.npy has shape \(3, 68, 2\), expected \(4, 68, 2\)"):
        encode_sample(s)
    members = encode_sample(clip(tmp_path, "00001", 4))
    newer = dict(members, **{"meta.json": json.dumps({"format_version": 99}).encode()})
    with pytest.raises(ShardFormatError, match="format_version 99"):
        decode_sample(newer)
    del members["landmarks.npy"]
    with pytest.raises(ShardFormatError, match="'00001': missing landmarks.npy"):
        decode_sample(members)
    broken = tmp_path / "broken.tar"
    broken.write_bytes(shard[0].read_bytes()[:700])
    with pytest.raises(ShardFormatError, match="broken.tar"):
        list(read_shard(broken))


def test_json_members_keep_fixed_keys_and_types(tmp_path):
    """meta.json and description.json: the same keys with the same types in every sample, the
    rest of each record as one JSON string (docs/shard-format.md, "JSON members")."""
    members = encode_sample(clip(tmp_path, "00001", 4))
    meta = json.loads(members["meta.json"])
    assert set(meta) == set(META_FIELDS) | {DETAILS}
    assert meta["source"] == {"path": "data/clips/00001.mp4", "fps": 25.0, "frames": 4}
    assert json.loads(meta[DETAILS]) == {"source": {"width": 320, "height": 240}, "quality": {"face_frames": 4}}
    record = json.loads(members["description.json"])
    assert record == {"backend": "geometric", DETAILS: '{"raw_text": "raw", "version": 1}'}
    s = clip(tmp_path, "00001", 4)
    s.meta["source"]["fps"] = "25"
    with pytest.raises(ShardFormatError, match=r"'00001' meta.json: source.fps must be float, got '25'"):
        encode_sample(s)
    s = clip(tmp_path, "00001", 4)
    s.meta[DETAILS] = "{}"
    with pytest.raises(ShardFormatError, match="details_json is a reserved key"):
        encode_sample(s)
    s = clip(tmp_path, "00001", 4)
    s.description_record["backend"] = None
    with pytest.raises(ShardFormatError, match="description.json: backend must be str"):
        encode_sample(s)
    s = clip(tmp_path, "00001", 4)
    del s.meta["crop_size"]
    with pytest.raises(ShardFormatError, match="meta.json: lacks crop_size"):
        encode_sample(s)


def test_version_1_shards_read_as_before(tmp_path):
    """Version 1 stored meta.json and description.json as the plain records: read them the same,
    and a v1 sample written again comes out in the current version."""
    samples = [clip(tmp_path, "00001", 6, 0), clip(tmp_path, "00002", 4, 1, with_description=False)]
    path = tmp_path / "v1" / shard_name("fold1", 0)
    path.parent.mkdir()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for sample in samples:
            members = encode_sample(sample)
            key = members.pop("__key__")
            members["meta.json"] = json.dumps({**sample.meta, "format_version": 1,
                                               "num_frames": sample.num_frames}).encode()
            if sample.description is not None:
                members["description.json"] = json.dumps(sample.description_record).encode()
            for name, data in members.items():
                info = tarfile.TarInfo(f"{key}.{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    read = list(read_shard(path))
    for a, b in zip(samples, read, strict=True):
        assert_same(a, b)
        assert b.meta["format_version"] == 1
    again = tmp_path / "v2" / shard_name("fold1", 0)
    with ShardWriter(again) as writer:
        for sample in read:
            writer.write(sample)
    for a, b in zip(samples, read_shard(again), strict=True):
        assert_same(a, b)
        assert b.meta["format_version"] == FORMAT_VERSION == 2


def test_unknown_fields_survive_a_round_trip(tmp_path):
    s = clip(tmp_path, "00001", 4)
    s.extras["au.npy"] = b"later pass"
    back = decode_sample(encode_sample(s))
    assert back.extras == {"au.npy": b"later pass"}


def keys_of(batch):
    return [s.key for s in batch]


def test_reader_splits_shards_across_dataloader_workers(tmp_path):
    keys = []
    for k, partition in enumerate(["fold1", "fold1", "fold2", "fold3"]):
        with ShardWriter(tmp_path / "ds" / shard_name(partition, k)) as writer:
            for j in range(2):
                key = f"c{k}{j}"
                writer.write(clip(tmp_path, key, 3, seed=k))
                keys.append(key)
    assert len(list_shards(tmp_path / "ds", ["fold1", "fold3"])) == 3
    reader = ShardReader(tmp_path / "ds", shuffle_shards=True, seed=1)

    class Clips(torch.utils.data.IterableDataset):  # the torch-free reader, as a DataLoader wants it
        def __iter__(self):
            return iter(reader)

    loader = torch.utils.data.DataLoader(Clips(), batch_size=None, num_workers=2, collate_fn=lambda s: s.key)
    seen = list(loader)
    assert sorted(seen) == sorted(keys)
    reader.set_epoch(1)
    assert sorted(s.key for s in reader) == sorted(keys)
    with pytest.raises(FileNotFoundError, match="no shards"):
        ShardReader(tmp_path / "ds", partitions=["fold5"])


def test_a_full_disk_leaves_no_partial_shard_and_a_clear_error(tmp_path):
    """Writes past a file-size limit fail like a full disk (EFBIG instead of ENOSPC)."""
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    script = f"""
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from test_shard_format import clip
from pipeline.shards.reader import ShardWriteError, ShardWriter
samples = [clip(Path({str(work)!r}), f"clip{{i}}", 16, seed=i) for i in range(6)]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
try:
    with ShardWriter({str(out / 'full.tar')!r}) as writer:
        for sample in samples:
            writer.write(sample)
except ShardWriteError as error:
    print("ERROR", error)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "ERROR" in done.stdout, done.stdout + done.stderr
    assert "full.tar: the shard could not be written (File too large)" in done.stdout
    assert "no partial shard was left" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == []


@pytest.mark.parametrize("array", [
    np.zeros((57, 68, 2), np.float32), np.arange(5, dtype=np.int64), np.array(3.5), np.zeros((0, 4), np.float32),
    np.ones(3, bool), np.zeros((2, 3), ">f8"), np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    np.array(["a", "bc"]), np.zeros((1, 1, 1), np.uint8)], ids=repr)
def test_npy_members_read_as_numpy_reads_them(array):
    """The fast header parser for .npy members agrees with np.load, falls back to it for other
    headers, returns writable arrays, and a truncated member is still an error."""
    from pipeline.shards.format import _load_npy

    buffer = io.BytesIO()
    np.save(buffer, array)
    data = buffer.getvalue()
    out = _load_npy(data)
    assert out.dtype == array.dtype and out.shape == array.shape and np.array_equal(out, array)
    assert out.flags.writeable
    with pytest.raises(ValueError):
        _load_npy(data[:-1] if array.size else data[:20])


def test_tar_reader_groups_members_as_webdataset_and_hands_other_headers_to_tarfile(tmp_path):
    """iter_tar_members parses our writer's plain ustar headers itself; a PAX long name, a GNU tar or a
    directory entry in the middle are read by tarfile from there on; a tar cut short is a
    ShardFormatError naming the file."""
    from pipeline.shards.tar import iter_tar_members

    long_key = "clip_" + "x" * 120   # over ustar's 100-byte name field: a PAX header

    def write(path, members, fmt):
        with tarfile.open(path, "w", format=fmt) as tar:
            for name, data in members:
                if data is None:
                    info = tarfile.TarInfo(name)
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                    continue
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    members = [("a.meta.json", b"{}"), ("a.frames.mjpeg", bytes(range(256)) * 3), ("b.meta.json", b"[1]"),
               ("sub/", None), (f"{long_key}.meta.json", b"{\"k\": 1}"), (f"{long_key}.txt", b""),
               ("c.meta.json", b"{}")]
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
        entries = members if fmt != tarfile.USTAR_FORMAT else [m for m in members if long_key not in m[0]]
        path = tmp_path / f"shard-{fmt}.tar"
        write(path, entries, fmt)
        expected = list(wds.WebDataset(str(path), shardshuffle=False, empty_check=False))
        got = list(iter_tar_members(path))
        assert [s["__key__"] for s in got] == [s["__key__"] for s in expected]
        for ours, theirs in zip(got, expected):
            assert {k: v for k, v in ours.items() if not k.startswith("__")} == \
                   {k: v for k, v in theirs.items() if not k.startswith("__")}
    data = path.read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:1100])   # inside the second member's data
    with pytest.raises(ShardFormatError, match="cut.tar"):
        list(iter_tar_members(tmp_path / "cut.tar"))
