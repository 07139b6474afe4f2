"""`make preprocess`: a dataset's videos in, WebDataset shards of face crops, landmarks and masks out.

    python -m pipeline.preprocess mafw --data-root /data/MAFW [--out shards/mafw] [--profile full|cpu]
        [--crop official|detect] [--workers N] [--shard-size 64] [--overwrite] [--weights-dir DIR] [--ray-address ADDR]
    python -m pipeline.preprocess mafw --data-root /data/MAFW --check     # `make manifest`
    python -m pipeline.preprocess [NAME] --import-list LIST... --data-root DIR [--classes a,b,c]
        [--manifest OUT.csv]        # `make manifest FROM=…`: DFER-CLIP annotation lists -> a manifest

Plans shards from the manifest (each partition's rows in manifest order, `--shard-size` per
shard), skips shards already complete in the output folder, runs the rest through the
stages on Ray (local by default, `--ray-address`/RAY_ADDRESS for a cluster), commits each
shard as it finishes, and ends with the dataset index and a summary. docs/pipeline.md has
the details.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from pipeline.backends import (DESCRIBERS, DETECTORS, INLINE_DESCRIBERS, LANDMARKERS, PARSERS, PROFILES,
                               describer_backend, face_weights, make_describer, make_detector, make_landmarker, make_parser)
from pipeline.describers.command_line import add_describer_options, describer_from_env
from pipeline.inputs.datasets import DATASETS
from pipeline.inputs.manifest import (CROP_MODES, Manifest, ManifestError, load_manifest, partition_scheme, presence,
                                     summary)
from pipeline.interop.annotation_lists import AnnotationListError, import_lists
from pipeline.shards.folder import FolderBusyError, OutputFolder
from pipeline.run.placement import DESCRIBE_GPUS, FACE_GPUS, GpuPlacement, gpu_share
from pipeline.run.progress import ProgressBar
from pipeline.run.ray_runner import SHARD_ATTEMPTS
from pipeline.run.stages import (DescribeConfig, DescribeStage, FaceConfig, FaceStage, describe_config, describe_identity,
                             plan_shards)


def choose_profile(requested: str | None, dataset: str,
                   gpu_present: Callable[[], bool] | None = None) -> tuple[str, str]:
    """(profile, why) — `full` (the paper stack) for MAFW, DFEW and FERV39k; `cpu` (offline) for the
    sample; for a dataset of your own, `full` where a GPU is present (`gpu_present`, by default
    torch.cuda.is_available()), else `cpu`."""
    if requested:
        return requested, f"PROFILE={requested}"
    if dataset == "sample":
        return "cpu", "the default for the sample dataset"
    if dataset in DATASETS:
        return "full", f"the default for {dataset} (the paper stack); PROFILE=cpu runs the offline stack"
    if (gpu_present or local_gpu)():
        return "full", "your own dataset and a GPU is present: the paper stack; PROFILE=cpu runs the offline stack"
    return "cpu", ("your own dataset and no GPU is present (torch.cuda.is_available() is False): the offline "
                   "stack; PROFILE=full runs the paper stack, which wants a GPU")


def cluster_gpus(ray_address: str) -> float:
    from pipeline.run.ray_runner import init_ray

    return float(init_ray(ray_address).get("GPU", 0))


def local_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def choose_crop(requested: str | None, manifest: Manifest) -> tuple[str, str]:
    """(crop mode, why) — the dataset's own face crops where it has them (the papers trained on them)."""
    if requested:
        return requested, f"--crop {requested}"
    if manifest.default_crop == "official":
        return "official", (f"the default for {manifest.name}: its own face crops, as the papers used; "
                            "--crop detect re-detects the face")
    return "detect", f"the default for {'the sample dataset' if manifest.name == 'sample' else 'your own dataset'}"


def gpus_available(ray_address: str | None) -> float:
    if ray_address:
        import ray

        return float(ray.cluster_resources().get("GPU", 0))
    import torch

    return float(torch.cuda.device_count())


def model_identities(config: FaceConfig, describe: DescribeConfig | None) -> dict:
    """Each model's identity; no detector runs on official crops (null)."""
    return {
        "detector": make_detector(config.detector, config.weights_dir).identity() if config.crop == "detect" else None,
        "landmarks": make_landmarker(config.landmarker, config.weights_dir).identity(),
        "masks": make_parser(config.parser, config.weights_dir).identity(),
        "description": describe_identity(describe),
    }


def read_manifest(dataset: str, data_root: Path):
    """The manifest, refusing a generated dataset (the sample) that has not been generated yet."""
    spec = DATASETS.get(dataset)
    if spec is not None and spec.generated and not spec.manifest_path(data_root).is_file():
        raise FileNotFoundError(f"{spec.manifest_path(data_root)} not found: generate the {dataset} dataset "
                                f"first (make sample, or python -m pipeline.sample generate --out {data_root})")
    return load_manifest(dataset, data_root)


def describer_hub_models(describer: str | None, options: dict | None) -> list:
    """The Hugging Face models the describer loads (Video-LLaVA's), checked with the weight files."""
    if not describer or describer == "none":
        return []
    made = make_describer(describer, **{k: v for k, v in (options or {}).items() if v is not None})
    return [made.hub_model()] if hasattr(made, "hub_model") else []


def check_resources(chosen, profile: str, ray_address: str | None, weights_dir: str | None,
                    crop: str = "detect", allow_cpu: bool = False,
                    describer_options: dict | None = None) -> tuple[dict, float]:
    """Stop before any work when the profile's GPU (unless `allow_cpu`) or weights are missing (the
    detector's only when it runs; the describer's Hugging Face model too), downloading what may be;
    then start (or join) Ray. Returns Ray's resources and the GPUs seen."""
    from pipeline.run.ray_runner import init_ray
    from pipeline.weights import check_weights

    resources = init_ray(ray_address) if ray_address else None  # a local run counts its GPUs without Ray
    # Only a run with something to put on a GPU counts them: counting imports torch, ~0.5 GB in the
    # driver that the cpu profile never uses.
    wants_gpu = chosen.needs_gpu or (chosen.describer not in (None, "none") and describer_backend(chosen.describer).gpu)
    gpus = gpus_available(ray_address) if wants_gpu else 0.0
    if chosen.needs_gpu and gpus == 0 and not allow_cpu:
        raise RuntimeError(f"PROFILE={profile} runs S3FD, FAN and BiSeNet on a GPU and none was found; "
                           "use PROFILE=cpu for the offline stack (dlib and landmark masks), or --allow-cpu "
                           "(DFER_ALLOW_CPU=1) to run these models on the CPU, slowly")
    if chosen.needs_gpu and gpus == 0:
        print(f"no GPU: PROFILE={profile}'s models run on the CPU (--allow-cpu), slowly")
    detector = chosen.detector if crop == "detect" else None
    check_weights(face_weights(detector, chosen.landmarker, chosen.parser), weights_dir,  # names every missing file
                  hub_models=describer_hub_models(chosen.describer, describer_options))
    return (resources if resources is not None else init_ray(None)), gpus


def run_configuration(profile: str, shard_size: int, manifest_digest: str, config: FaceConfig,
                      describe: DescribeConfig | None) -> dict:
    """What decides the shards' content, recorded in run.json: a rerun with another one must not mix in."""
    recorded = {k: v for k, v in asdict(config).items() if k not in ("work_dir", "data_root", "weights_dir",
                                                                      "manifest", "gpus_per_worker", "decode_threads")}
    recorded["describer"] = None if describe is None else describe.describer
    recorded["describer_options"] = None if describe is None else dict(describe.options)
    return {"profile": profile, "shard_size": shard_size, "manifest_sha256": manifest_digest, **recorded}


def stage_pools(config: FaceConfig, describe: DescribeConfig | None, workers: int, gpus: float,
                face_stage: type = FaceStage, placement: GpuPlacement | None = None) -> list:
    """(stage, actors) in order: the face stage (with an inline describer inside it), then a describer of its own
    (on GPUs, `placement.describe_actors`: one per GPU unless set)."""
    inline = describe is not None and describe.describer in INLINE_DESCRIBERS
    stages = [(face_stage(config, describe if inline else None), workers)]
    if describe is not None and not inline:
        stages.append((DescribeStage(describe), (placement or GpuPlacement()).describe_actors(gpus)
                       if describe.gpus_per_worker else workers))
    return stages


def run_jobs(folder: OutputFolder, todo: list, stages: list, progress: bool) -> list[str]:
    """Run the shards still to do, committing each as it returns; the names of those that never did."""
    from pipeline.run.ray_runner import run_stages

    bar = ProgressBar(sum(len(j.rows) for j in todo), enabled=progress, shards=len(todo))
    returned = set()
    for job in run_stages(todo, stages):
        stats = folder.commit(job.name, job.partition, job.rows, job.status, Path(job.work_tar), job.seconds)
        returned.add(job.name)
        bar.update(stats["ok"], stats["failed"])
    bar.close()
    return [job.name for job in todo if job.name not in returned]


def preprocess(dataset: str, data_root: Path, out: Path, profile: str | None = None, workers: int | None = None,
               shard_size: int | None = None, overwrite: bool = False, weights_dir: str | None = None,
               ray_address: str | None = None, progress: bool = True, backends: dict[str, str] | None = None,
               describer_options: dict | None = None, face_stage: type = FaceStage, crop: str | None = None,
               placement: GpuPlacement | None = None, allow_cpu: bool = False,
               describe_batch_size: int | None = None, **face_options) -> dict:
    """Run the pipeline; returns the dataset index. Raises on problems found before any work.

    `backends` may override the profile's choice of backend by kind ("detector", "landmarker", "parser",
    "describer": a name in pipeline/backends.py's registries, or "none" for the describer);
    `describer_options` go to the describer (e.g. {"model_id": …, "revision": …}); `describe_batch_size`: the
    clips a batched describer (Video-LLaVA, Qwen2.5-VL) decodes together (None: its default); `crop` is "official"
    (the dataset's own face crops, used whole) or "detect" (None: official where the dataset has
    its own crops, DFEW, FERV39k and MAFW, else detect); `allow_cpu` runs a GPU profile's models on
    the CPU where there is no GPU (instead of stopping); `face_stage` is
    the face stage's class (a subclass may add instrumentation, as the benchmark's does); `placement`: the GPU share
    of each face and describer actor, and the describer's actor count (pipeline/run/placement.py). Ray is
    shut down at the end only when this call started it.
    """
    import ray

    from pipeline.run.ray_runner import shutdown_ray

    started = time.perf_counter()
    ray_was_running = ray.is_initialized()
    manifest = read_manifest(dataset, data_root)
    profile, why = choose_profile(profile, manifest.name,
                                  (lambda: cluster_gpus(ray_address) > 0) if ray_address else None)
    chosen = dataclasses.replace(PROFILES[profile], **{k: v for k, v in (backends or {}).items() if v})
    recorded = None if overwrite else OutputFolder(out).recorded_run()
    passes = (recorded or {}).get("description_passes")
    if passes and not (backends or {}).get("describer"):
        # re-described by `make describe`: the shards still to do get the folder's current descriptions
        chosen = dataclasses.replace(chosen, describer=recorded.get("describer") or "none")
        describer_options = dict(recorded.get("describer_options") or {})
        print(f"descriptions by {chosen.describer}, as `make describe` left {out} (pass {len(passes)} in run.json)")
    crop, crop_why = choose_crop(crop, manifest)
    print(f"profile {profile} ({why}): detector {chosen.detector if crop == 'detect' else 'none'}, "
          f"landmarks {chosen.landmarker}, masks {chosen.parser}, description {chosen.describer}")
    print(f"crop {crop} ({crop_why})")
    note_partition_scheme(manifest)
    if not data_root.is_dir():
        raise FileNotFoundError(f"DATA_ROOT {data_root} does not exist (set DATA_ROOT=/path/to/{manifest.name})")
    resources, gpus = check_resources(chosen, profile, ray_address, weights_dir, crop, allow_cpu, describer_options)
    cpus = int(resources.get("CPU", os.cpu_count() or 1))
    on_gpu = chosen.needs_gpu and gpus > 0
    placement = placement or GpuPlacement()
    shard_size = shard_size or (8 if manifest.name == "sample" else 64)

    folder = OutputFolder(out)
    folder.lock()
    try:
        config = FaceConfig(dataset=manifest.name, manifest=str(manifest.source), data_root=str(data_root.resolve()),
                            work_dir=str(folder.work_dir(uuid.uuid4().hex[:8])), detector=chosen.detector,
                            landmarker=chosen.landmarker, parser=chosen.parser, weights_dir=weights_dir,
                            gpus_per_worker=(placement.face_gpus if on_gpu else 0.0), crop=crop, **face_options)
        describe = describe_config(chosen.describer, Path(config.work_dir), describer_options or {}, gpus,
                                   describe_batch_size)
        if describe is not None and describe.gpus_per_worker:  # a video LLM on the GPUs
            describe = dataclasses.replace(describe, gpus_per_worker=placement.describe_gpus)
        if not workers:  # face actors: every CPU, or on GPUs as many as their share fits beside the describer
            workers = (placement.face_actors(gpus, bool(describe and describe.gpus_per_worker))
                       if config.gpus_per_worker else cpus)
        if not config.gpus_per_worker and workers >= cpus:   # a face actor on every core: one decoder thread each
            config = dataclasses.replace(config, decode_threads=1)
        manifest_digest = hashlib.sha256(manifest.source.read_bytes()).hexdigest()
        run_config = run_configuration(profile, shard_size, manifest_digest, config, describe)
        if passes:
            run_config["description_passes"] = passes
        folder.check_run_config(run_config, overwrite)
        jobs = plan_shards(manifest, shard_size)
        done = folder.complete()
        todo = [job for job in jobs if job.name not in done]
        print(f"{len(manifest)} clips in {len(jobs)} shards; {len(jobs) - len(todo)} already complete, "
              f"{len(todo)} to do with {min(workers, max(1, len(todo)))} workers")
        crashed = run_jobs(folder, todo, stage_pools(config, describe, workers, gpus, face_stage, placement), progress)
        folder.finish_work()
        index = folder.write_index(
            dataset=manifest.name, classes=list(manifest.classes), partitions=list(manifest.partitions),
            manifest={"path": str(manifest.source), "sha256": manifest_digest, "rows": len(manifest)},
            config=run_config, models=model_identities(config, describe), planned=[j.name for j in jobs],
            crashed=crashed)
    finally:
        folder.unlock()
        if not ray_was_running:
            shutdown_ray()
    _summary(index, out, time.perf_counter() - started, sum(len(j.rows) for j in todo))
    return index


def _summary(index: dict, out: Path, seconds: float, processed: int) -> None:
    failures = ", ".join(f"{reason} {n}" for reason, n in index["failures"].items()) or "none"
    print(f"done in {seconds:.1f} s ({processed / max(seconds, 1e-9):.2f} clips/s over {processed} clips this run)")
    print(f"  clips ok {index['ok']}, failed {index['failed']} ({failures})")
    print(f"  shards {len(index['shards'])} in {out}, {index['bytes'] / 2**20:.1f} MiB"
          + ("" if index["complete"] else f"; NOT complete, missing {len(index['missing_shards'])}: rerun to finish"))
    if index["crashed_shards"]:
        print(f"  shards {', '.join(index['crashed_shards'])}: failed on all {SHARD_ATTEMPTS} attempts (a worker "
              "killed or out of memory, a clip that crashes the decoder, or a write error such as a full disk: "
              "see the errors above); their clips are not in the output yet: rerun to retry them, or remove "
              "the offending rows from the manifest")


def note_partition_scheme(manifest: Manifest) -> None:
    """One line when `make train` will not read the manifest's partitions (the shards are written all the same)."""
    try:
        partition_scheme(manifest.partitions)
    except ValueError as err:
        print(f"note: {err}")


def default_data_root(dataset: str) -> Path:
    """DATA_ROOT when none is given: a manifest file's own folder, else data/<dataset>."""
    if dataset.endswith(".csv"):
        return Path(dataset).parent
    return Path("data") / dataset


def check_manifest(dataset: str, data_root: Path | None, crop: str | None = None) -> int:
    """Print the manifest's clips per class and partition and, given DATA_ROOT, how many are there
    (and, where the run would read the dataset's own face crops, how many of those)."""
    try:
        manifest = load_manifest(dataset, data_root)
    except (ManifestError, KeyError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 1
    print(summary(manifest))
    note_partition_scheme(manifest)
    if data_root is not None:
        print(presence(manifest, data_root))
        crop, why = choose_crop(crop, manifest)
        if crop == "official" and data_root.is_dir():
            print(f"crop {crop} ({why}):")
            print(presence(manifest, data_root, crop))
    return 0


def import_manifest(args: argparse.Namespace) -> int:
    """--import-list: write the manifest of DFER-CLIP annotation lists and show its summary."""
    if args.data_root is None:
        print("error: --import-list needs --data-root (DATA_ROOT=), the folder the lists' frame folders lie under",
              file=sys.stderr)
        return 1
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else None
    try:
        written = import_lists(args.import_list, args.data_root, args.manifest, args.dataset, classes, args.id_parts,
                               args.overwrite)
        print(f"wrote {written}")
        return check_manifest(str(written), args.data_root, args.crop)
    except (AnnotationListError, ManifestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.preprocess", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", nargs="?", help="mafw | dfew | ferv39k | sample | path/to/manifest.csv; "
                        "with --import-list, the name of the dataset the lists hold (default: their prefix)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="default: the manifest's folder for a manifest file, else data/<dataset>")
    parser.add_argument("--out", type=Path, default=None, help="default: shards/<dataset>")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None,
                        help="full (GPU paper stack) or cpu (offline); default: full for mafw, dfew, ferv39k; "
                             "cpu for sample; for your own manifest full where a GPU is present, else cpu")
    parser.add_argument("--workers", type=int, default=None,
                        help="face-stage actors (default: all CPUs; on GPUs, as many as --face-gpus fits "
                             "beside the describer: 2 per GPU by default)")
    parser.add_argument("--shard-size", type=int, default=None, help="clips per shard (default 64; sample 8)")
    parser.add_argument("--overwrite", action="store_true", help="delete the output folder's shards and start over")
    parser.add_argument("--weights-dir", default=os.environ.get("WEIGHTS_DIR") or None)
    parser.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS") or None)
    parser.add_argument("--crop", choices=CROP_MODES[::-1], default=None,
                        help="official: the dataset's own face-crop frames as they are (no detection, the whole "
                             "frame is the crop); detect: find and crop the face; default: official for dfew, "
                             "ferv39k and mafw, detect otherwise")
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument("--max-frames", type=int, default=256)
    parser.add_argument("--detect-every", type=int, default=FaceConfig.detect_every,
                        help=f"run the face detector on every k-th frame (default {FaceConfig.detect_every})")
    parser.add_argument("--min-face-share", type=float, default=FaceConfig.min_face_share,
                        help="a clip whose face is confirmed in fewer than this share of its frames fails with "
                             f"few_face_frames (default {FaceConfig.min_face_share}; 0 keeps every clip in which a "
                             "face was detected)")
    parser.add_argument("--detector", choices=sorted(DETECTORS), help="override the profile's face detector")
    parser.add_argument("--landmarker", choices=sorted(LANDMARKERS), help="override the profile's landmark model")
    parser.add_argument("--parser", choices=sorted(PARSERS), help="override the profile's face parser")
    parser.add_argument("--describer", choices=sorted(DESCRIBERS) + ["none"], default=describer_from_env(parser),
                        help="override the profile's describer (none: no descriptions); default: DESCRIBER, else the "
                             "profile's, or in a folder re-described by make describe, the describer it used")
    add_describer_options(parser)
    parser.add_argument("--face-gpus", type=gpu_share, default=FACE_GPUS,
                        help=f"GPU share of each face-stage actor on GPUs (default {FACE_GPUS}: two per GPU)")
    parser.add_argument("--describe-gpus", type=gpu_share, default=DESCRIBE_GPUS,
                        help=f"GPU share of each video-LLM describer actor (default {DESCRIBE_GPUS:g}: a GPU each; 0.5 with "
                             "--face-gpus 0.25 runs it beside two face actors on every GPU)")
    parser.add_argument("--describe-workers", type=int, default=None,
                        help="video-LLM describer actors on GPUs (default: one per GPU)")
    parser.add_argument("--allow-cpu", action="store_true",
                        default=os.environ.get("DFER_ALLOW_CPU", "").strip().lower() in ("1", "true", "yes", "on"),
                        help="PROFILE=full without a GPU: run its models on the CPU, slowly, instead of stopping "
                             "(default from DFER_ALLOW_CPU=1)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--check", action="store_true",
                        help="only check the manifest and count the clips found under DATA_ROOT (make manifest)")
    lists = parser.add_argument_group("import DFER-CLIP annotation lists as a manifest (make manifest FROM=…)")
    lists.add_argument("--import-list", nargs="+", type=Path, metavar="LIST",
                       help="<DATASET>_set_<k>_{train,test}.txt or <DATASET>_<partition>.txt lists "
                            "('<frame folder> <frames> <0-based label>' lines) whose folders lie under --data-root")
    lists.add_argument("--classes", help="class names in label-index order, comma-separated (default: the built-in "
                                         "dataset's order, or classes.txt beside the lists)")
    lists.add_argument("--id-parts", type=int, help="the clip id is the folder path's last N parts (default: dfew, "
                                                    "mafw 1; ferv39k 3; else the whole path under --data-root)")
    lists.add_argument("--manifest", type=Path, help="the manifest to write (default: DATA_ROOT/manifest.csv)")
    args = parser.parse_args(argv)
    if args.import_list:
        return import_manifest(args)
    if args.dataset is None:
        parser.error("name a dataset (or a manifest), or give --import-list")
    name = Path(args.dataset).stem if args.dataset.endswith(".csv") else args.dataset
    data_root = args.data_root or default_data_root(args.dataset)
    out = args.out or Path("shards") / name
    if args.check:
        return check_manifest(args.dataset, data_root if args.data_root else None, args.crop)
    try:
        index = preprocess(args.dataset, data_root, out, args.profile, args.workers, args.shard_size, args.overwrite,
                   args.weights_dir, args.ray_address, progress=not args.no_progress,
                   backends={"detector": args.detector, "landmarker": args.landmarker, "parser": args.parser,
                             "describer": args.describer},
                   describer_options={"model_id": args.describer_model, "revision": args.describer_revision,
                                      "setting": args.describer_setting},
                   describe_batch_size=args.describe_batch_size,
                   placement=GpuPlacement(args.face_gpus, args.describe_gpus, args.describe_workers),
                   crop=args.crop, allow_cpu=args.allow_cpu, crop_size=args.crop_size, max_frames=args.max_frames, detect_every=args.detect_every,
                   min_face_share=args.min_face_share)
    except (ManifestError, FolderBusyError, FileNotFoundError, RuntimeError, KeyError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 1
    return 0 if index["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
