"""`--crop official`: the dataset's own face-crop frames used as they are (FIDELITY D9).

A tiny DFEW-like DATA_ROOT is built from the sample generator's animated face: clip 00001 as
224 px face-crop frames under `Clip/clip_224x224/00001/`, clip 00002 as 160 px crops (resized
whole to 224), each beside its raw video under `Clip/original/`, and clip 00003 only as a raw
video. A manifest of our own headed `# dataset: dfew` points every row at the raw video; the
real preprocess (cpu profile, Ray) runs over it in both crop modes.
"""

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.inputs.datasets import DATASETS
from pipeline.inputs.manifest import ClipPathError, load_manifest, write_manifest
from pipeline.preprocess import choose_crop, main as preprocess_main, preprocess
from pipeline.run.stages import FaceConfig
from pipeline.shards.layout import interocular_distance
from pipeline.shards.reader import ShardReader

CROP_SIDE = {"00001": 224, "00002": 160}   # the size of each clip's official crops; 00003 has none
LABELS = {"00001": "happiness", "00002": "sadness", "00003": "surprise"}
PARTITIONS = {"00001": "fold1", "00002": "fold2", "00003": "fold1"}


def face_crop_affines(landmarks: np.ndarray, side: int) -> np.ndarray:
    """(T, 2, 3) source -> crop maps of a DFEW-like face crop: a square of 1.3× the landmarks' extent."""
    lo, hi = landmarks.min(1), landmarks.max(1)
    extent = 1.3 * (hi - lo).max(1)
    centre = (lo + hi) / 2 - np.stack([np.zeros(len(extent)), 0.05 * extent], 1)
    scale = side / extent
    out = np.zeros((len(landmarks), 2, 3))
    out[:, 0, 0] = out[:, 1, 1] = scale
    out[:, :, 2] = side / 2 - centre * scale[:, None]
    return out


@pytest.fixture(scope="module")
def dfew_root(tmp_path_factory):
    """(DATA_ROOT, manifest, truth): truth[clip] = the crop frames written (RGB) and the true landmarks
    in their pixels (None for 00003)."""
    from pipeline.sample.face_animation import FaceWarper, relaxed_rest_pose
    from pipeline.sample.generate import encode_video, load_faces, locate_face, plan_clips, render_clip

    root = tmp_path_factory.mktemp("dfew") / "DFEW"
    photo = load_faces([])[0]
    neutral = locate_face(photo)
    rest, warper = relaxed_rest_pose(neutral, 0.8), FaceWarper(photo, neutral)
    plans = {p.label: p for p in plan_clips(0, 1, 1)}
    truth = {}
    for clip_id, label in LABELS.items():
        plan = dataclasses.replace(plans[label], num_frames=14, onset=2, apex=8, offset=None, blinks=[], flip=False)
        frames, gt = render_clip(plan, rest, warper)
        (root / "Clip/original").mkdir(parents=True, exist_ok=True)
        encode_video(frames, root / f"Clip/original/{clip_id}.mp4", "h264", plan.fps)
        if clip_id not in CROP_SIDE:
            truth[clip_id] = None
            continue
        side, folder = CROP_SIDE[clip_id], root / f"Clip/clip_224x224/{clip_id}"
        folder.mkdir(parents=True)
        affines = face_crop_affines(gt["landmarks"], side)
        for t, (frame, m) in enumerate(zip(frames, affines)):
            crop = cv2.warpAffine(frame, m, (side, side), flags=cv2.INTER_LINEAR)
            cv2.imwrite(str(folder / f"{clip_id}_{t + 1:05d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
        written = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(folder.iterdir())])
        points = np.einsum("tij,tkj->tki", affines[:, :, :2], gt["landmarks"]) + affines[:, None, :, 2]
        truth[clip_id] = (written, points)
    manifest = root.parent / "dfew_mine.csv"
    write_manifest(manifest, [dict(clip_id=c, path=f"Clip/original/{c}.mp4", label=LABELS[c], partition=PARTITIONS[c],
                                   frames=14) for c in LABELS], dataset="dfew")
    return root, manifest, truth


@pytest.fixture(scope="module")
def ray_once():
    """One local Ray for the module's runs (each preprocess call would otherwise start its own)."""
    import ray

    from pipeline.run.ray_runner import init_ray, shutdown_ray

    started = not ray.is_initialized()
    init_ray(None, 2)
    yield
    if started:
        shutdown_ray()


@pytest.fixture(scope="module")
def official(dfew_root, ray_once, tmp_path_factory):
    root, manifest, _ = dfew_root
    out = tmp_path_factory.mktemp("official") / "dfew"
    return out, preprocess(str(manifest), root, out, profile="cpu", workers=1, progress=False)


@pytest.fixture(scope="module")
def detected(dfew_root, ray_once, tmp_path_factory):
    root, manifest, _ = dfew_root
    out = tmp_path_factory.mktemp("detect") / "dfew"
    return out, preprocess(str(manifest), root, out, profile="cpu", workers=1, progress=False, crop="detect")


def status_rows(out: Path) -> dict[str, dict]:
    return {r["clip_id"]: r for p in out.glob("*.status.jsonl") for r in map(json.loads, p.read_text().splitlines())}


def test_official_is_the_default_for_the_papers_datasets_only(tmp_path):
    assert all(DATASETS[name].official_crops for name in ("dfew", "ferv39k", "mafw"))
    assert not DATASETS["sample"].official_crops
    mine = tmp_path / "mine.csv"
    write_manifest(mine, [dict(clip_id="a", path="a.mp4", label="calm", partition="train", frames=None)],
                   classes=["calm", "excited"])
    assert load_manifest(mine).default_crop == "detect" and choose_crop("official", load_manifest(mine))[0] == "official"
    with pytest.raises(ValueError, match="unknown crop mode"):
        FaceConfig(dataset="x", manifest="", data_root="/", work_dir="/tmp", crop="recrop")


def test_official_mode_looks_only_for_the_datasets_own_crops(tmp_path, capsys):
    root = tmp_path / "MAFW"
    (root / "data/clips").mkdir(parents=True)
    (root / "data/faces/00020").mkdir(parents=True)
    for clip_id in ("00019", "00020"):
        (root / f"data/clips/{clip_id}.mp4").write_bytes(b"\0")
    subset = tmp_path / "mafw_subset.csv"     # headed `# dataset: mafw`: MAFW's layouts and its default
    write_manifest(subset, [dict(clip_id=c, path=f"data/clips/{c}.mp4", label="anger", partition="fold1", frames=9)
                            for c in ("00019", "00020", "00022")], dataset="mafw")
    m = load_manifest(subset)
    row19, row20, row22 = m.rows
    assert m.default_crop == "official" and choose_crop(None, m)[0] == "official"
    assert m.locate(row20, root).name == "00020.mp4"            # detect: the manifest's path first
    assert m.locate(row20, root, "official") == (root / "data/faces/00020").resolve()
    with pytest.raises(ClipPathError) as err:
        m.locate(row19, root, "official")
    assert err.value.reason == "no_official_crop"
    assert "data/faces/00019" in str(err.value) and "found only data/clips/00019.mp4" in str(err.value)
    with pytest.raises(ClipPathError) as err:
        m.locate(row22, root, "official")
    assert err.value.reason == "missing_file" and "data/faces/00022" in str(err.value)
    assert preprocess_main([str(subset), "--data-root", str(root), "--check"]) == 0
    out = capsys.readouterr().out
    assert "2 of 3 clips found" in out and "crop official" in out
    assert "1 of 3 clips found as the dataset's own face crops" in out and "1  no_official_crop" in out


def test_whole_frame_box_maps_crop_pixels_onto_the_frame():
    """A spot in a 200×150 frame, resized whole to 224²: the recorded box maps it back (docs/shard-format.md)."""
    from pipeline.face.whole_frame import whole_frame_boxes, whole_frame_crops

    frame = np.zeros((150, 200, 3), np.uint8)
    yy, xx = np.mgrid[:150, :200]
    spot = (61.0, 47.0)
    frame[..., 0] = (255 * np.exp(-((xx - spot[0]) ** 2 + (yy - spot[1]) ** 2) / 50)).astype(np.uint8)
    crop = whole_frame_crops(frame[None], 224)[0].astype(np.float64)[..., 0]
    v, u = np.mgrid[:224, :224]
    centre = np.array([(u * crop).sum(), (v * crop).sum()]) / crop.sum()
    x0, y0, x1, y1 = whole_frame_boxes(1, 200, 150, 224)[0]
    back = (x0 + centre[0] * (x1 - x0) / 224, y0 + centre[1] * (y1 - y0) / 224)
    assert np.allclose(back, spot, atol=0.1)
    same = np.zeros((1, 224, 224, 3), np.uint8)
    assert whole_frame_crops(same, 224) is same and tuple(whole_frame_boxes(1, 224, 224, 224)[0]) == (0, 0, 224, 224)


def test_official_mode_keeps_the_crops_and_computes_landmarks_and_masks(official, dfew_root):
    out, index = official
    _, _, truth = dfew_root
    assert index["config"]["crop"] == "official" and index["models"]["detector"] is None
    assert index["ok"] == 2 and index["failures"] == {"no_official_crop": 1}
    rows = status_rows(out)
    assert rows["00003"]["reason"] == "no_official_crop"
    assert "Clip/clip_224x224/00003" in rows["00003"]["message"]
    assert "found only Clip/original/00003.mp4" in rows["00003"]["message"]
    clips = {clip.meta["clip_id"]: clip for clip in ShardReader(out)}
    assert sorted(clips) == ["00001", "00002"]
    for clip_id, clip in clips.items():
        written, points = truth[clip_id]
        side, n = CROP_SIDE[clip_id], clip.num_frames
        assert n == len(written) == 14
        assert clip.meta["crop"] == {"mode": "official"}
        assert clip.meta["source"]["path"] == f"Clip/clip_224x224/{clip_id}"
        assert clip.meta["quality"]["frames_searched"] == 0 and "mean_detector_score" not in clip.meta["quality"]
        assert clip.face_detected.all()
        # no detection, no re-crop: the stored frames are the input frames (resized whole if not 224)
        x0 = 0.5 * side / 224 - 0.5
        assert np.allclose(clip.boxes, [x0, x0, x0 + side, x0 + side], atol=1e-4)
        expected = written if side == 224 else np.stack([cv2.resize(f, (224, 224)) for f in written])
        assert np.abs(clip.frames().astype(int) - expected).mean() < 2.5
        # landmarks found on the crops, near the truth (in crop pixels), and masks from them
        in_crop = points * 224 / side
        error = np.linalg.norm(clip.landmarks - in_crop, axis=2).mean(1) / interocular_distance(in_crop)
        assert clip.landmarks.shape == (n, 68, 2) and error.mean() < 0.1, error
        assert clip.landmarks_conf.mean() > 0.5
        masks = clip.masks()
        mouth = np.round(clip.landmarks[:, [51, 57]].mean(1)).astype(int).clip(0, 223)
        assert masks.shape == (n, 224, 224) and np.isin(masks[np.arange(n), mouth[:, 1], mouth[:, 0]], [11, 12, 13]).mean() > 0.9
        assert clip.description and clip.au.shape[0] == n


def test_detect_mode_on_the_same_input_is_unchanged(detected, official, dfew_root):
    out, index = detected
    root, manifest, _ = dfew_root
    assert index["config"]["crop"] == "detect" and index["models"]["detector"]["backend"] == "dlib"
    assert index["ok"] == 3 and index["failed"] == 0        # the raw videos, as before
    clips = {clip.meta["clip_id"]: clip for clip in ShardReader(out)}
    for clip_id, clip in clips.items():
        assert clip.meta["crop"] == {"mode": "detect"} and clip.meta["source"]["path"] == f"Clip/original/{clip_id}.mp4"
        assert clip.meta["quality"]["frames_searched"] > 0 and "mean_detector_score" in clip.meta["quality"]
        width = clip.boxes[:, 2] - clip.boxes[:, 0]
        assert np.allclose(width, clip.boxes[:, 3] - clip.boxes[:, 1], rtol=1e-3)   # squares around the face
        assert (width < clip.meta["source"]["width"]).all()
    # the face stage without a crop setting (as trainer/predict.py builds it) detects
    assert FaceConfig(dataset="dfew", manifest="", data_root="/", work_dir="/tmp").crop == "detect"
    # one folder, one crop mode: a rerun with the other is refused
    with pytest.raises(RuntimeError, match=r"different configuration \(crop\)"):
        preprocess(str(manifest), root, official[0], profile="cpu", workers=1, progress=False, crop="detect")


def test_a_folder_made_before_the_crop_setting_resumes_as_detect(detected, dfew_root, capsys):
    out, index = detected
    root, manifest, _ = dfew_root
    run = json.loads((out / "run.json").read_text())
    del run["crop"]
    (out / "run.json").write_text(json.dumps(run))
    again = preprocess(str(manifest), root, out, profile="cpu", workers=1, progress=False, crop="detect")
    assert "0 to do" in capsys.readouterr().out and again["ok"] == index["ok"]
    with pytest.raises(RuntimeError, match=r"different configuration \(crop\)"):
        preprocess(str(manifest), root, out, profile="cpu", workers=1, progress=False)   # dfew: official by default
