"""`make predict`: class probabilities for one video from a trained checkpoint.

    python -m trainer.predict --video clip.mp4 --checkpoint runs/sample-tiny-fold1/best.pt
    python -m trainer.predict --manifest data/sample/manifest.csv --partition fold1 --checkpoint ... [--out P.json]
    python -m trainer.predict --manifest path/to/mine.csv --dataset path/to/mine.csv   # the run make train wrote

    from trainer.predict import predict
    result = predict("clip.mp4", "runs/sample-tiny-fold1/best.pt")
    result["probabilities"]   # {class: probability}, highest first

The video goes through the same face stage and describer as the shards the model was trained
on (their profile and settings are read from that dataset's index.json), then through the
evaluation transform (16 centre-of-segment frames) and the model. With `--manifest` and
`--partition`, every clip of that partition is predicted from its raw file and the report says
for how many the true class came first (a clip that cannot be read or has no face counts as not).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import torch

from pipeline.backends import PROFILES, make_describer
from pipeline.inputs.decode import DecodeError
from pipeline.run.stages import FaceConfig, FaceStage, NoFaceError, attach_description
from trainer.config import from_dict, parse_overrides
from trainer.data import ClipTransform, collate, read_index, split_partitions, to_model_inputs
from trainer.run_dir import add_run_options, trained_runs
from trainer.checkpoint import load_checkpoint

_FACE_KEYS = ("crop_size", "max_frames", "detect_every", "crop_margin", "crop_shift_up", "smooth_window",
              "folder_fps", "max_frame_bytes")


def pipeline_settings(shards: Path) -> dict:
    """The face-stage settings and describer of the shards a model was trained on (cpu profile if unknown)."""
    try:
        config = read_index(shards)["config"]
    except FileNotFoundError:
        profile = PROFILES["cpu"]
        return {"detector": profile.detector, "landmarker": profile.landmarker, "parser": profile.parser,
                "describer": profile.describer, "describer_options": {}}
    return config


class Predictor:
    """Loads the checkpoint and the pipeline models once; `__call__(video)` predicts one video."""

    def __init__(self, checkpoint: str | Path, device: str | None = None):
        state = load_checkpoint(Path(checkpoint))
        self.config = from_dict(state["config"])
        self.classes = list(state["classes"])
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = self.config.build_model(self.classes)
        self.model.load_state_dict(state["model"], strict=False)
        self.model.to(self.device).eval()
        settings = pipeline_settings(self.config.shard_dir)
        self._work = tempfile.TemporaryDirectory()
        self.face = FaceStage(FaceConfig(
            dataset="predict", manifest="", data_root="/", work_dir=self._work.name,
            detector=settings["detector"], landmarker=settings["landmarker"], parser=settings["parser"],
            **{k: settings[k] for k in _FACE_KEYS if k in settings}))
        self.face.setup()
        describer = settings.get("describer")
        self.describer = make_describer(describer, **(settings.get("describer_options") or {})) if describer else None
        self.transform = ClipTransform(self.config.data_config(self.model), self.classes, train=False)

    @torch.no_grad()
    def __call__(self, video: str | Path) -> dict:
        video = Path(video)
        sample = self.face.sample_from_file(video, "predict", {
            "dataset": "predict", "clip_id": video.stem, "label": self.classes[0], "partition": "predict"},
            str(video))
        if self.describer is not None:
            attach_description(sample, self.describer.describe([sample])[0])
        batch = collate([self.transform(sample, random.Random(0))])
        batch = to_model_inputs({k: v for k, v in batch.items() if k != "labels"}, self.device,
                                normalise=self.config.normalise)
        probabilities = torch.softmax(self.model(batch)["logits"].float(), dim=-1)[0].cpu()
        ranked = sorted(zip(self.classes, probabilities.tolist()), key=lambda item: -item[1])
        return {"video": str(video), "probabilities": dict(ranked), "description": sample.description,
                "frames": sample.num_frames, "face_frames": int(sample.face_detected.sum())}


def predict(video: str | Path, checkpoint: str | Path) -> dict:
    return Predictor(checkpoint)(video)


def predict_partition(predictor: Predictor, manifest_path: Path, partition: str, data_root: Path | None = None,
                      log=print) -> dict:
    """Predict every clip of `partition` in a manifest from its raw file: how often the true class is first."""
    from pipeline.inputs.manifest import ClipPathError, load_manifest

    manifest = load_manifest(manifest_path, data_root)
    root = data_root or manifest.source.parent
    rows = [r for r in manifest.rows if r.partition == partition]
    if not rows:
        raise ValueError(f"{manifest_path}: no clips in partition {partition!r}; partitions: {', '.join(manifest.partitions)}")
    clips = []
    for row in rows:
        entry = {"clip_id": row.clip_id, "label": row.label}
        try:
            result = predictor(manifest.locate(row, root))
            ranked = list(result["probabilities"])
            entry.update(predicted=ranked[0], rank=ranked.index(row.label) + 1 if row.label in ranked else None,
                         probability=result["probabilities"].get(row.label))
        except (DecodeError, NoFaceError, FileNotFoundError, ClipPathError) as err:
            entry.update(predicted=None, rank=None, error=f"{type(err).__name__}: {err}")
        clips.append(entry)
        mark = "ok " if entry["predicted"] == row.label else "-- "
        log(f"  {mark}{row.clip_id:22s} true {row.label:10s} predicted {entry['predicted'] or entry.get('error', '')}")
    first = sum(c["predicted"] == c["label"] for c in clips)
    return {"manifest": str(manifest_path), "partition": partition, "clips": len(clips), "true_class_first": first,
            "unreadable": sum(c["predicted"] is None for c in clips), "per_clip": clips}


def test_partition(checkpoint: Path) -> str:
    """The test partition of the fold a checkpoint was trained for (from its shards' index)."""
    config = from_dict(load_checkpoint(checkpoint)["config"])
    return split_partitions(read_index(config.shard_dir), config.fold)["test"][0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, nargs="+", default=[])
    parser.add_argument("--checkpoint", type=Path,
                        help="a checkpoint; default: the best.pt of the run make train wrote with the same "
                             "--dataset, --model, --fold, --name and --set options")
    parser.add_argument("--dataset", default="sample", help="the run's dataset, to find it without --checkpoint")
    parser.add_argument("--shards", default="", help="the run's shard folder (default shards/<dataset>)")
    parser.add_argument("--fold", help="the run's fold, or all (every fold's run), to find it without --checkpoint")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--manifest", type=Path, help="predict the clips of --partition in this manifest "
                                                      "(a path, or a built-in dataset's name with --data-root)")
    parser.add_argument("--partition", help="e.g. fold1 (with --manifest; default: the run's test partition)")
    parser.add_argument("--data-root", type=Path, help="where the manifest's paths are (default: its folder)")
    parser.add_argument("--out", type=Path, help="write the --manifest report as JSON here "
                                                 "(default: predict-<partition>.json in the run folder)")
    add_run_options(parser)
    args = parser.parse_args(argv)
    if not (args.video or args.manifest):
        parser.error("give --video, or --manifest [--partition]")
    try:
        if args.checkpoint:
            checkpoints = [args.checkpoint]
        else:
            overrides = parse_overrides(args.set, args.shards)
            checkpoints = [f / "best.pt" for f in trained_runs(args.dataset, args.model, args.fold, overrides,
                                                               args.name)]
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    status = 0
    for checkpoint in checkpoints:
        status = max(status, predict_command(args, checkpoint))
    return status


def predict_command(args: argparse.Namespace, checkpoint: Path) -> int:
    """`--video` and/or `--manifest` with one checkpoint; the exit status."""
    try:
        predictor = Predictor(checkpoint)
        if args.manifest:
            partition = args.partition or test_partition(checkpoint)
            report = predict_partition(predictor, args.manifest, partition, args.data_root)
            print(f"{report['partition']}: true class first for {report['true_class_first']} of {report['clips']} "
                  f"clips ({report['unreadable']} unreadable or without a face)")
            out = args.out or checkpoint.parent / f"predict-{partition}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=1) + "\n")
            print(f"-> {out}")
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    status = 0
    for video in args.video:
        try:
            result = predictor(video)
        except (DecodeError, NoFaceError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps(result))
            continue
        print(f"{video}  ({result['frames']} frames, face detected in {result['face_frames']})")
        for name, p in result["probabilities"].items():
            print(f"  {name:16s} {p:6.3f}  {'#' * int(round(40 * p))}")
        if result["description"]:
            print(f"  description: {result['description']}")
    return status


if __name__ == "__main__":
    sys.exit(main())
