"""The pipeline end to end on Ray (local, 2 CPUs) over the generated sample dataset."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.sample.landmark_error import frame_errors
from pipeline.shards.layout import source_to_crop
from pipeline.inputs.manifest import load_manifest
from pipeline.shards.folder import FolderBusyError, OutputFolder
from pipeline.preprocess import preprocess
from pipeline.shards.reader import ShardReader, read_shard

ROOT = Path(__file__).resolve().parent.parent


def statuses(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(out.glob("*.status.jsonl")) for line in p.read_text().splitlines()]


@pytest.fixture(scope="module")
def shards(sample_shards):
    return sample_shards


def test_every_row_once_and_hard_cases_fail_with_their_reason(shards, sample_data):
    out, index = shards
    manifest = load_manifest("sample", sample_data)
    rows = statuses(out)
    assert sorted(r["clip_id"] for r in rows) == sorted(r.clip_id for r in manifest.rows)
    truth = json.loads((sample_data / "ground_truth.json").read_text())["clips"]
    expected = {"truncated": "truncated", "empty_file": "empty_file", "no_face": "no_face"}
    for r in rows:
        wanted = truth[r["clip_id"]]["expected_failure"]
        if wanted is None:
            assert r["status"] == "ok", r
        else:
            assert (r["status"], r["reason"]) == ("failed", expected[wanted]), r
    assert index["complete"] and index["ok"] == 14 and index["failed"] == 3
    assert index["failures"] == {"truncated": 1, "empty_file": 1, "no_face": 1}
    assert sum(index["samples"].values()) == 14
    assert index["config"]["profile"] == "cpu" and index["models"]["landmarks"]["backend"] == "dlib"
    assert all(name.startswith(("fold1-", "fold2-", "fold3-", "fold4-", "fold5-")) for name in
               (p.name for p in out.glob("*.tar")))
    assert not list(out.glob("*.tmp")) and not any((out / ".work").rglob("*.tar"))


def test_samples_read_back_with_accurate_landmarks_and_masks(shards, sample_data):
    out, _ = shards
    truth_clips = json.loads((sample_data / "ground_truth.json").read_text())["clips"]
    errors, seen = [], 0
    for clip in ShardReader(out):
        seen += 1
        c = truth_clips[clip.meta["clip_id"]]
        assert clip.num_frames == c["num_frames"] and clip.meta["label"] == c["label"]
        frames = clip.frames([0, clip.num_frames - 1])
        assert frames.shape == (2, 224, 224, 3)
        if c["storage"] == "frames":   # a folder of images carries no frame rate: 25 fps is assumed
            assert clip.meta["source"]["fps_assumed"] and np.allclose(clip.timestamps, np.arange(c["num_frames"]) / 25)
        else:
            assert np.allclose(clip.timestamps, np.arange(c["num_frames"]) / c["fps"], atol=1e-3)
        # the face is confirmed in every frame of the animated face: nothing trimmed, confidence everywhere
        assert clip.face_detected.all() and (clip.landmarks_conf >= 0.5).all()
        assert clip.meta["quality"]["trimmed"] == {"start": 0, "end": 0, "why": ""}
        assert clip.meta["quality"]["faces_seen"] == 1
        # ground truth (source pixels) mapped into the crop through the recorded crop squares
        truth = np.load(sample_data / "truth" / f"{clip.meta['clip_id']}.npz")["landmarks"]
        errors.append(frame_errors(clip.landmarks, source_to_crop(truth, clip.boxes, 224)))
        masks = clip.masks()
        assert masks.shape == (clip.num_frames, 224, 224)
        # lip labels sit where the landmarks put the mouth
        mouth = np.round(clip.landmarks[:, [51, 57]].mean(1)).astype(int)
        at_mouth = masks[np.arange(clip.num_frames), mouth[:, 1].clip(0, 223), mouth[:, 0].clip(0, 223)]
        assert np.isin(at_mouth, [11, 12, 13]).mean() > 0.9
        assert 0 <= clip.landmarks_conf.min() and clip.landmarks_conf.mean() > 0.6
    assert seen == 14
    errors = np.concatenate(errors)
    # dlib follows the animated faces closely (the generator's own test sees ~0.02 on full frames)
    assert errors.mean() < 0.05 and np.percentile(errors, 95) < 0.1


def test_rerun_skips_complete_shards_and_a_second_run_is_refused(shards, sample_data, capsys):
    out, index = shards
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    folder = OutputFolder(out)
    folder.lock()
    try:
        with pytest.raises(FolderBusyError, match="being written by pid"):
            preprocess("sample", sample_data, out, workers=2, shard_size=2, progress=False)
    finally:
        folder.unlock()
    with pytest.raises(RuntimeError, match="different configuration .*crop_size"):
        preprocess("sample", sample_data, out, workers=2, shard_size=2, progress=False, crop_size=112)
    again = preprocess("sample", sample_data, out, workers=2, shard_size=2, progress=False)
    assert "0 to do" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == before
    assert again["ok"] == index["ok"] and again["shards"] == index["shards"]


def test_killed_run_resumes_without_duplicates_or_losses(sample_data, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "pipeline.preprocess", "sample", "--data-root", str(sample_data),
               "--out", str(out), "--workers", "2", "--shard-size", "1", "--no-progress"]
    proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.stats.json"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(list(out.glob("*.stats.json")))
    assert 3 <= partial < 17, "the run was killed mid-way"
    for tar in out.glob("*.tar"):                      # whatever is visible is a whole, readable shard
        list(read_shard(tar))
    index = preprocess("sample", sample_data, out, workers=2, shard_size=1, progress=False)
    rows = statuses(out)
    assert Counter(r["clip_id"] for r in rows) == Counter(r.clip_id for r in load_manifest("sample", sample_data).rows)
    assert index["complete"] and index["ok"] == 14
    keys = [clip.key for clip in ShardReader(out)]
    assert len(keys) == len(set(keys)) == 14


def test_every_ok_sample_has_a_geometric_description_and_au_signals(shards):
    out, index = shards
    assert index["models"]["description"]["backend"] == "geometric"
    for clip in ShardReader(out):
        assert clip.description and clip.description_record["backend"] == "geometric"
        assert clip.description_record["raw_text"] and clip.description_record["text"] == clip.description
        assert clip.au.shape == (clip.num_frames, len(clip.au_names)) and "jaw_drop" in " ".join(clip.au_names)


def test_the_geometric_describer_runs_inside_the_face_stage_and_fails_only_its_clip(sample_data, tmp_path):
    """No describe stage of its own in the cpu profile: each sample is described before it is
    written; a description that raises fails that clip (describe_error), not the shard."""
    from pipeline.run.stages import plan_shards
    from pipeline.run.stages import DescribeConfig, FaceConfig, FaceStage

    manifest = load_manifest("sample", sample_data)
    job = plan_shards(manifest, 3)[0]
    truth = json.loads((sample_data / "ground_truth.json").read_text())["clips"]
    broken = next(r["clip_id"] for r in job.rows if truth[r["clip_id"]]["expected_failure"] is None)
    stage = FaceStage(FaceConfig(dataset="sample", manifest=str(manifest.source), data_root=str(sample_data.resolve()),
                                 work_dir=str(tmp_path)), DescribeConfig("geometric", str(tmp_path)))
    stage.setup()
    describe = stage.describe_stage.describer.describe

    def fails_on_one_clip(samples):
        if samples[0].meta["clip_id"] == broken:
            raise ValueError("no words for this one")
        return describe(samples)

    stage.describe_stage.describer.describe = fails_on_one_clip
    job = stage.process(job)
    assert job.status[broken] == {"status": "failed", "reason": "describe_error",
                                  "message": "ValueError: no words for this one"}
    written = list(read_shard(job.work_tar))
    assert [s.meta["clip_id"] for s in written] == [r["clip_id"] for r in job.rows
                                                    if job.status[r["clip_id"]]["status"] == "ok"]
    assert written and all(s.description_record["backend"] == "geometric" and s.au is not None for s in written)
    assert job.seconds["face"] > 0 and job.seconds["describe"] > 0


def test_redescribing_with_videollava_keeps_the_face_stage(shards, sample_data, tmp_path, capsys):
    """Switch the descriptions to (a tiny, random) Video-LLaVA without touching crops or landmarks, keeping
    the geometric pass beside it; then finish the folder with make preprocess, which describes the shard
    still to do as the rest now are."""
    import shutil

    from test_videollava_describer import save_tiny_checkpoint

    from pipeline.describe import redescribe

    model_dir = save_tiny_checkpoint(tmp_path / "tiny-video-llava")
    out = tmp_path / "copy"
    shutil.copytree(shards[0], out)
    unfinished = next(s for s in OutputFolder(out).all_stats() if s["ok"])   # as if the first run had not done it
    not_done, ok_there = unfinished["name"], unfinished["ok"]
    for suffix in (".tar", ".stats.json", ".status.jsonl"):
        (out / f"{not_done}{suffix}").unlink()
    before = {c.key: c for c in ShardReader(out)}
    index = redescribe(out, "videollava", {"model_id": str(model_dir), "max_new_tokens": 8}, workers=2,
                       progress=False)
    assert index["ok"] == 14 - ok_there and index["models"]["description"]["backend"] == "videollava"
    run = json.loads((out / "run.json").read_text())
    assert run["describer"] == "videollava"
    assert [(p["describer"], p["by"]) for p in run["description_passes"]] == [
        ("geometric", "make preprocess"), ("videollava", "make describe")]
    for clip in ShardReader(out):
        old = before[clip.key]
        assert clip.description_record["backend"] == "videollava"
        assert [e["backend"] for e in clip.description_record["earlier"]] == ["geometric"]   # the first pass, kept
        assert clip.description_record["earlier"][0]["text"] == old.description
        assert clip.frames_mjpeg == old.frames_mjpeg and np.array_equal(clip.landmarks, old.landmarks)
        assert np.array_equal(clip.au, old.au)           # the geometric AU signals stay
    for stats in OutputFolder(out).all_stats():         # stats describe the new tars
        from pipeline.shards.files import file_sha256

        assert stats["sha256"] == file_sha256(out / f"{stats['name']}.tar")
    # make preprocess (the cpu profile, whose describer is geometric) finishes the folder with Video-LLaVA
    capsys.readouterr()
    finished = preprocess("sample", sample_data, out, workers=2, shard_size=2, progress=False)
    assert "descriptions by videollava, as `make describe` left" in capsys.readouterr().out
    assert finished["complete"] and finished["ok"] == 14
    assert finished["config"]["description_passes"] == run["description_passes"]
    redone = [c for c in ShardReader(out, partitions=[unfinished["partition"]]) if c.key in
              {json.loads(line)["clip_id"] for line in (out / f"{not_done}.status.jsonl").read_text().splitlines()}]
    assert len(redone) == ok_there and all(c.description_record["backend"] == "videollava" for c in redone)


def test_summary_and_contact_sheet(shards, tmp_path):
    from pipeline.inspect_shards import contact_sheet, find_clip, main, summary

    out, _ = shards
    text = summary(out)
    assert "14 clips ok, 3 failed" in text and "truncated 1" in text and "format v2" in text
    clip = find_clip(out, "surprise_01")
    sheet = contact_sheet(clip)
    assert sheet.shape[1] == 8 * 160 and sheet.shape[0] > 3 * 160
    assert main(["sheet", str(out), "--clip", "surprise_01", "--out", str(tmp_path / "s.png"),
                 "--gif", str(tmp_path / "s.gif")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 10_000 and (tmp_path / "s.gif").stat().st_size > 10_000
    assert main(["sheet", str(out), "--clip", "no_such_clip"]) == 1


def test_stats_record_the_face_stage_step_by_step(sample_shards):
    out, _ = sample_shards
    stats = [json.loads(p.read_text()) for p in sorted(out.glob("*.stats.json"))]
    steps = {"face.decode", "face.detect", "face.track", "face.crop", "face.landmarks", "face.masks", "face.encode",
             "face.write", "count.frames_decoded", "count.frames_searched"}
    with_clips = [s for s in stats if s["ok"]]
    assert with_clips and all(steps <= set(s["seconds"]) for s in with_clips)
    for s in with_clips:   # the steps happen inside the stage: their sum cannot exceed it
        assert sum(v for k, v in s["seconds"].items() if k.startswith("face.")) <= s["seconds"]["face"] + 0.05


def test_a_stale_record_of_a_gone_cluster_does_not_stop_a_local_run():
    """Ray records the last cluster of this machine; once that cluster is gone, a run without
    RAY_ADDRESS must still start its own local instance."""
    import tempfile

    record = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    saved = record.read_bytes() if record.exists() else None
    record.parent.mkdir(exist_ok=True)
    record.write_text("127.0.0.1:6399")   # a head that was killed: nothing listens there
    try:
        code = ("from pipeline.run.ray_runner import init_ray, shutdown_ray\n"
                "print(int(init_ray(None)['CPU'])); shutdown_ray()")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        assert int(done.stdout.strip().splitlines()[-1]) >= 1
    finally:
        if saved is None:
            record.unlink(missing_ok=True)
        else:
            record.write_bytes(saved)
