"""The geometric describer against the sample dataset's true landmark tracks, and the emotion filter.

The sample dataset is animated from FACS action units (pipeline/sample/face_animation.py), so each
class says which movements the describer must find, and when they start.
"""

import json
import re

import numpy as np
import pytest

from pipeline.describers.emotion_filter import filter_emotion, inflections, load_lexicon
from pipeline.describers.geometric import (SIGNAL_NAMES, THRESHOLDS, GeometricDescriber, au_signals, events,
                                          load_templates)
from pipeline.shards.layout import mirror_landmarks
from pipeline.shards.format import make_sample

HEAD = {"head_yaw", "head_pitch", "head_roll"}
# The movements each class is animated with (docs/sample-dataset.md) that the describer must report.
EXPECTED = {
    "happiness": {"lip_corner_pull", "cheek_raise"},
    "sadness": {"inner_brow_raise", "lip_corner_depress"},
    "surprise": {"inner_brow_raise", "outer_brow_raise", "upper_lid_raise", "jaw_drop"},
    "fear": {"inner_brow_raise", "upper_lid_raise", "lip_stretch", "jaw_drop"},
    "anger": {"brow_lower", "brows_draw_together", "lower_lid_raise"},
    "disgust": {"nose_wrinkle", "upper_lip_raise"},
    "neutral": set(),
}


def column(signals, name):
    return signals[:, SIGNAL_NAMES.index(name)]


@pytest.fixture(scope="module")
def clips(sample_data):
    """Every valid clip of the sample dataset: its ground truth, true landmarks, and Description."""
    truth = json.loads((sample_data / "ground_truth.json").read_text())["clips"]
    out, samples = {}, []
    for clip_id, info in sorted(truth.items()):
        if info["expected_failure"]:
            continue
        arrays = np.load(sample_data / "truth" / f"{clip_id}.npz")
        n = info["num_frames"]
        samples.append(make_sample(
            clip_id, {"dataset": "sample", "clip_id": clip_id, "label": info["label"], "partition": info["partition"],
                      "source": {"fps": info["fps"], "frames": n}},
            frames=np.zeros((n, 8, 8, 3), np.uint8), timestamps=arrays["timestamps"], boxes=np.zeros((n, 4)),
            face_detected=np.ones(n, bool), landmarks=arrays["landmarks"], landmarks_conf=np.ones(n)))
        out[clip_id] = {**info, **{k: arrays[k] for k in ("landmarks", "timestamps", "intensity", "blink")}}
    for sample, description in zip(samples, GeometricDescriber().describe(samples)):
        out[sample.key]["description"] = description
    return out


def of_class(clips, label):
    found = [c for c in clips.values() if c["label"] == label]
    assert found, label
    return found


def face_events(clip):
    return {e["signal"] for e in clip["description"].record["events"] if e["signal"] not in HEAD}


def test_descriptions_have_the_promised_shape(clips):
    for clip in clips.values():
        d = clip["description"]
        assert d.signals.dtype == np.float32 and d.signals.shape == (clip["num_frames"], len(SIGNAL_NAMES))
        assert d.signal_names == list(SIGNAL_NAMES) and np.isfinite(d.signals).all()
        assert d.text and d.text == d.raw_text      # our own wording never trips the filter
        record = json.loads(json.dumps(d.record))   # plain JSON, as description.json stores it
        assert record["backend"] == "geometric" and record["version"] == 2
        assert len(record["templates_sha256"]) == 64 and len(record["lexicon_sha256"]) == 64


def test_surprise_raises_the_brows_and_drops_the_jaw(clips):
    neutral_max = {name: max(column(c["description"].signals, name).max() for c in of_class(clips, "neutral"))
                   for name in ("inner_brow_raise", "outer_brow_raise", "jaw_drop")}
    for clip in of_class(clips, "surprise"):
        at_apex = clip["description"].signals[clip["apex"]]
        for name, quiet in neutral_max.items():
            value = at_apex[SIGNAL_NAMES.index(name)]
            assert value > THRESHOLDS[name][0] and value > 5 * quiet + 0.02, (clip["clip_id"], name, value, quiet)
        text = clip["description"].text
        assert re.search(r"\bbrows (quickly |slowly |suddenly )?lift", text), text
        assert "jaw" in text and "opening the mouth" in text, text


def test_happiness_pulls_the_lip_corners_up(clips):
    neutral = max(column(c["description"].signals, "lip_corner_pull").max() for c in of_class(clips, "neutral"))
    for clip in of_class(clips, "happiness"):
        pull = column(clip["description"].signals, "lip_corner_pull")[clip["apex"]]
        assert pull > 0.05 and pull > 5 * neutral + 0.02, (clip["clip_id"], pull)
        assert re.search(r"corners of the mouth are .*drawn .*up and outward", clip["description"].text)


def test_neutral_clips_show_no_facial_action(clips):
    for clip in of_class(clips, "neutral"):
        assert face_events(clip) == set(), (clip["clip_id"], clip["description"].record["events"])
        assert clip["description"].text.startswith("The face stays mostly still")


def test_each_class_shows_its_action_units(clips):
    for clip in clips.values():
        missing = EXPECTED[clip["label"]] - face_events(clip)
        assert not missing, (clip["clip_id"], missing, clip["description"].text)
    for clip in of_class(clips, "anger"):
        assert "brows are" in clip["description"].text and "drawn down" in clip["description"].text
    for clip in of_class(clips, "sadness"):
        assert "corners of the mouth" in clip["description"].text and "turn down" in clip["description"].text
        assert "lip_corner_pull" not in face_events(clip)
    for clip in of_class(clips, "happiness"):
        assert "lip_corner_depress" not in face_events(clip) and "jaw_drop" not in face_events(clip)


def test_onset_and_apex_are_found_where_the_animation_put_them(clips):
    checked = 0
    for clip in clips.values():
        for event in clip["description"].record["events"]:
            if event["signal"] in EXPECTED[clip["label"]]:
                checked += 1
                # a few frames: 3, or a fifth of a slow rise (a blink during it hides its start)
                tolerance = max(3, 0.2 * (clip["apex"] - clip["onset"]))
                assert abs(event["onset"] - clip["onset"]) <= tolerance, (clip["clip_id"], event)
                assert clip["onset"] < event["apex"] <= clip["apex"] + 2, (clip["clip_id"], event)
                # The animation holds its apex, or releases part of it from `offset` to the end.
                if clip["offset"] is None:
                    assert event["ending"] == "hold" and event["offset"] is None, (clip["clip_id"], event)
                else:
                    left = np.median(clip["intensity"][-3:]) / clip["intensity"].max()
                    expected = {"partial"} if left > 0.35 else {"return"} if left < 0.25 else {"partial", "return"}
                    assert event["ending"] in expected, (clip["clip_id"], left, event)
                    assert clip["apex"] - 2 <= event["offset"] <= clip["offset"] + 0.25 * (clip["num_frames"] - clip["offset"])
    assert checked >= 20


def test_blinks_are_counted(clips):
    for clip in clips.values():
        # True blinks: runs of fully closed frames. Two runs with only half-open frames between
        # them may be seen as one blink or two; with an open frame between, they are two.
        closed = np.flatnonzero(clip["blink"] >= 0.75)
        gaps = [clip["blink"][a + 1:b] for a, b in zip(closed, closed[1:]) if b > a + 1]
        most = len(closed[:1]) + len(gaps)
        fewest = len(closed[:1]) + sum(1 for g in gaps if g.min() < 0.5)
        found = clip["description"].record["blinks"]
        assert fewest <= len(found) <= most, (clip["clip_id"], clip["blinks"], found)


def test_head_pose_and_mirroring_leave_the_action_signals_alone(clips):
    clip = of_class(clips, "surprise")[0]
    points = clip["landmarks"].astype(np.float64)
    base, names = au_signals(points, clip["timestamps"])
    t = np.arange(len(points))[:, None]
    angle = np.radians(12 * np.sin(t / 7))[..., None]
    centre = points.mean(axis=(0, 1))
    rotated = np.concatenate([np.cos(angle) * (points[..., :1] - centre[0]) - np.sin(angle) * (points[..., 1:] - centre[1]),
                              np.sin(angle) * (points[..., :1] - centre[0]) + np.cos(angle) * (points[..., 1:] - centre[1])],
                             axis=-1)
    moved = rotated * (1.6 + 0.3 * np.sin(t / 5))[..., None] + np.array([300.0, -40.0]) + 20 * np.sin(t / 3)[..., None]
    posed, _ = au_signals(moved, clip["timestamps"])
    face = [k for k, n in enumerate(names) if n not in HEAD]
    assert np.abs(posed[:, face] - base[:, face]).max() < 0.005
    # roll is measured from the rest frames, so it follows the added rotation up to a constant
    added_roll = column(posed, "head_roll") - column(base, "head_roll") - np.degrees(angle[:, 0, 0])
    assert np.ptp(added_roll) < 0.5
    mirrored, _ = au_signals(mirror_landmarks(points, clip["width"]), clip["timestamps"])
    assert np.abs(mirrored[:, face] - base[:, face]).max() < 1e-3
    assert np.allclose(column(mirrored, "head_roll"), -column(base, "head_roll"), atol=1e-3)


def test_missing_frames_and_degenerate_clips(clips):
    clip = of_class(clips, "surprise")[0]
    points = clip["landmarks"].copy()
    points[[0, 5, 6, 7, clip["apex"]]] = np.nan
    conf = np.ones(len(points), np.float32)
    conf[10:13] = 0.0
    d = GeometricDescriber().describe_tracks(points, clip["timestamps"], conf)
    assert np.isfinite(d.signals).all() and d.record["valid_frames"] == len(points) - 8
    assert {"jaw_drop", "inner_brow_raise"} <= {e["signal"] for e in d.record["events"]}

    single = GeometricDescriber().describe_tracks(clip["landmarks"][:1], np.zeros(1))
    assert single.signals.shape == (1, len(SIGNAL_NAMES)) and not single.signals.any()
    assert single.text.startswith("There is only one frame")
    blank = GeometricDescriber().describe_tracks(np.full((20, 68, 2), np.nan), None)
    assert not blank.signals.any() and "cannot be followed" in blank.text and blank.record["events"] == []
    collapsed = GeometricDescriber().describe_tracks(np.zeros((20, 68, 2)), np.arange(20) / 25)
    assert not collapsed.signals.any() and "cannot be followed" in collapsed.text
    still = GeometricDescriber().describe_tracks(np.repeat(clip["landmarks"][:1], 30, axis=0), None)
    assert not still.signals.any() and still.text.startswith("The face stays mostly still")
    assert events(np.zeros((0, len(SIGNAL_NAMES))), SIGNAL_NAMES) == []


def test_movements_count_only_where_the_detector_saw_the_face_clearly(clips):
    """With the detector's confirmation as confidence (`crop` `detect`), a movement seen only on frames
    below MEASURE_CONFIDENCE is not reported; the same track with the landmark model's plausibility
    (official crops, older shards) or with the rule turned off is described as before."""
    from pipeline.describers.geometric import MEASURE_CONFIDENCE, has_detector_confidence

    clip = of_class(clips, "surprise")[0]
    points, times = clip["landmarks"], clip["timestamps"]
    clear = GeometricDescriber().describe_tracks(points, times, np.ones(len(points)), detector_confidence=True)
    assert {"jaw_drop", "inner_brow_raise"} <= {e["signal"] for e in clear.record["events"]}
    faint = np.full(len(points), MEASURE_CONFIDENCE - 0.05)
    faint[:clip["onset"]] = 1.0        # only the rest before the expression is seen clearly
    gated = GeometricDescriber().describe_tracks(points, times, faint, detector_confidence=True)
    assert gated.record["events"] == [] and gated.text.startswith("The face stays mostly still")
    assert gated.record["measure_confidence"] == MEASURE_CONFIDENCE
    for d in (GeometricDescriber().describe_tracks(points, times, faint),
              GeometricDescriber(measure_confidence=0).describe_tracks(points, times, faint, detector_confidence=True)):
        assert d.record["events"] == clear.record["events"]
    assert has_detector_confidence({"crop": {"mode": "detect"}, "quality": {"trimmed": {"start": 0, "end": 0}}})
    assert not has_detector_confidence({"crop": {"mode": "official"}, "quality": {}})
    assert not has_detector_confidence({"crop": {"mode": "detect"}, "quality": {}})    # written before confirmation
    assert not has_detector_confidence(None)


def test_descriptions_are_deterministic(clips):
    describer = GeometricDescriber()
    for clip in list(clips.values())[:6]:
        again = describer.describe_tracks(clip["landmarks"], clip["timestamps"], np.ones(clip["num_frames"]))
        assert again.text == clip["description"].text and again.raw_text == clip["description"].raw_text
        assert np.array_equal(again.signals, clip["description"].signals)
        assert again.record == clip["description"].record


def test_every_template_survives_the_filter():
    templates = load_templates().data
    texts = [templates["still"], templates["single_frame"], templates["no_face"],
             *templates["blinks"].values(), *templates["head_sway"].values()]
    for wording in [*templates["actions"].values(), *templates["groups"].values()]:
        for speed in templates["speed"].values():
            for degree in wording["degree"].values():
                onset = wording["onset"].format(speed=f"{speed} " if speed else "", degree=degree)
                for ending, pattern in templates["sentence"].items():
                    texts.append(pattern.format(when=templates["when"]["early"], onset=onset, hold=wording["hold"],
                                                partial=wording["partial"], **{"return": wording["return"]},
                                                repeat=wording["repeat"]))
    for text in texts:
        text = text.format(count=3)
        assert filter_emotion(text).text == " ".join(text.split()), text


# --- the emotion filter -----------------------------------------------------------------------

def leftovers(text):
    return [m.surface for m in load_lexicon().find(text)]


@pytest.mark.parametrize("text, expected", [
    ("She looks HAPPY.", ""),
    ("a happily smiling face", ""),
    ("The man, clearly terrified, opens his mouth wide.", "The man opens his mouth wide."),
    ("Fear-stricken eyes widen; the brows rise.", "The brows rise."),
    ("anger's mark", ""),
    ("The unhappiness shows", ""),
    ("He seems to be in a good mood", ""),
    ("She looks happy.He raises his brows.The jaw drops!", "He raises his brows. The jaw drops!"),
    ("The mouth opens and she looks surprised. The brows lift, showing fear, then fall.",
     "The mouth opens. The brows lift, then fall."),
    ("Her eyebrows are raised and her eyes widen, suggesting surprise.", "Her eyebrows are raised and her eyes widen."),
    ("The lips part while smiling broadly. Tears roll down; the chin trembles.", "The lips part. The chin trembles."),
    ("The woman appears disgusted,wrinkling her nose.", ""),
    ("SHE IS FURIOUS!!! The brows come down.", "The brows come down."),
    ("The eyes show a hint of sadness… The head turns.", "The head turns."),
    ("Her ex\u00adpression is one of joy. The jaw drops.", "The jaw drops."),
    ("The face is ha\u200bppy and the lids close.", "The lids close."),
    ("He was fed up with it. The head tilts.", "The head tilts."),
    ("Heavy-hearted, she lowers her gaze.", "She lowers her gaze."),
    ("The brows lower, and the eyes narrow.", "The brows lower, and the eyes narrow."),
])
def test_filter_removes_emotion_and_keeps_the_rest(text, expected):
    result = filter_emotion(text)
    assert result.text == expected
    assert not leftovers(result.text)
    assert result.removed or result.text == " ".join(text.split())


def test_filter_leaves_neutral_action_text_unchanged():
    text = ("The inner ends of the brows lift within the first second and stay raised. The jaw drops, "
            "opening the mouth wide, then closes partway. The head turns 0.5 s later; the lids close.")
    result = filter_emotion(text)
    assert result.text == text and result.removed == [] and result.matched == []


def test_action_words_follow_the_documented_policy():
    text = "The lips curve into a smile. She looks happy. The brows lift."
    assert filter_emotion(text).text == "The brows lift."
    assert filter_emotion(text, action_words=False).text == "The lips curve into a smile. The brows lift."
    for word in ("frowning", "grimaces", "scowled", "pouts", "sneering", "grinned", "laughter", "cries", "tears"):
        assert filter_emotion(f"The face {word}. The jaw drops.").text == "The jaw drops.", word


def test_inflections_cover_the_usual_forms():
    assert {"happier", "happiest", "happily", "happiness"} <= inflections("happy")
    assert {"fears", "feared", "fearing", "fearful", "fearfully"} <= inflections("fear")
    assert {"sadder", "saddest", "sadly", "sadness", "saddened"} <= inflections("sad")
    assert {"scared", "scary", "scares"} <= inflections("scare")
    assert {"worried", "worries", "worrying"} <= inflections("worry")
    tense = inflections("tense", "adj")      # the feeling, not the muscle: no verb forms
    assert {"tense", "tenser", "tensest", "tensely", "tenseness"} <= tense and not {"tenses", "tensed"} & tense
    assert inflections("felt", "exact") == {"felt"}


def test_no_lexicon_form_survives_in_any_position():
    """Property: every entry, in every derived form, case and attachment, inside neutral sentences."""
    lexicon = load_lexicon()
    forms = []
    for entry in lexicon.entries:
        if len(entry.words) == 1:
            forms += sorted(inflections(entry.words[0], entry.kind))
        else:
            forms += [" ".join(entry.words), "-".join(entry.words)]
    styles = (str, str.upper, str.title, lambda f: f + "-like", lambda f: f + "'s")
    batch = 60
    for first in range(0, len(forms), batch):
        chunk = forms[first:first + batch]
        sentences = []
        for i, form in enumerate(chunk):
            shown = styles[(first + i) % len(styles)](form)
            sentences += [f"The jaw drops {i}.", f"The {shown} brows rise, and the lids close."]
        text = " ".join(sentences)
        result = filter_emotion(text)
        assert not leftovers(result.text), leftovers(result.text)
        kept = result.text
        assert all(f"The jaw drops {i}." in kept for i in range(len(chunk))), kept
        assert kept.count("The lids close.") == len(chunk)   # the clause with its own subject stays
