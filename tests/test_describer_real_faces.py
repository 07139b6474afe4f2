"""The geometric describer on a real face: a still photograph moved by the camera shows no movement.

The photograph is scikit-image's astronaut portrait (public domain), panned and zoomed as a
camera would, encoded as a real H.264 video and put through the `cpu` face stage (dlib HOG and
68-point landmarks): whatever the landmarks do, the face does not move, so the description
must name no facial action and no head movement. A head that tips back moves the nose and
the upper lip toward the eyes in the picture; that is the head's movement, not the face's.
"""

import av
import cv2
import numpy as np
import pytest

from pipeline.describers.geometric import SIGNAL_NAMES, GeometricDescriber, events


def camera_clip(path, frames=36, size=320):
    """The portrait cropped by a camera that pans 40 px and zooms in by 30 %, at 25 fps."""
    from skimage.data import astronaut

    photo = astronaut()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("h264", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20"}
        for t in range(frames):
            k = t / (frames - 1)
            zoom = 1.0 + 0.3 * k
            side = 300 / zoom
            cx, cy = 200 + 40 * k, 150
            m = np.array([[size / side, 0, -(cx - side / 2) * size / side],
                          [0, size / side, -(cy - side / 2) * size / side]])
            frame = cv2.warpAffine(photo, m, (size, size), flags=cv2.INTER_AREA)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def photo_landmarks(tmp_path_factory):
    from pipeline.run.stages import FaceConfig, FaceStage

    path = tmp_path_factory.mktemp("photo") / "astronaut_pan_zoom.mp4"
    camera_clip(path)
    stage = FaceStage(FaceConfig(dataset="photo", manifest="", data_root=str(path.parent),
                                 work_dir=str(path.parent)))
    stage.setup()
    sample = stage.sample_from_file(path, "astronaut", {"dataset": "photo", "clip_id": "astronaut", "label": "photo",
                                                         "partition": "test"}, path.name)
    return sample


def test_a_still_photograph_moved_by_the_camera_shows_no_movement(photo_landmarks):
    s = photo_landmarks
    assert s.face_detected.any() and len(s.landmarks) == 36
    d = GeometricDescriber().describe_tracks(s.landmarks, s.timestamps, s.landmarks_conf)
    assert d.record["events"] == [], d.record["events"]
    assert d.text.startswith("The face stays mostly still"), d.text


def test_a_head_tipping_back_is_not_a_raised_lip_but_a_smile_is_a_smile():
    """Signals as a real head tipping back makes them (the upper lip and nose wings rising in the
    picture with the pitch proxy, issue 30's carphone clip) name the head's movement only; the
    same rise with the head still is the face's."""
    t = np.arange(50) / 25.0
    rise = np.clip((t - 0.4) / 0.4, 0, 1)
    signals = np.zeros((50, len(SIGNAL_NAMES)))
    column = {n: k for k, n in enumerate(SIGNAL_NAMES)}
    signals[:, column["upper_lip_raise"]] = 0.12 * rise
    signals[:, column["nose_wrinkle"]] = 0.08 * rise
    still = {e.action for e in events(signals, SIGNAL_NAMES, t)}
    assert {"upper_lip_raise", "nose_wrinkle"} <= still
    signals[:, column["head_pitch"]] = -0.3 * rise
    tipped = {e.action for e in events(signals, SIGNAL_NAMES, t)}
    assert tipped == {"head_up"}, tipped
    signals[:, column["lip_corner_pull"]] = 0.1 * np.clip((t - 1.2) / 0.3, 0, 1)   # a smile after the head settles
    assert "lip_corner_pull" in {e.action for e in events(signals, SIGNAL_NAMES, t)}


def test_a_movement_needs_measured_frames():
    """Two far-apart fits with every frame between them filled in are a step, not a movement."""
    t = np.arange(40) / 25.0
    signals = np.zeros((40, len(SIGNAL_NAMES)))
    signals[20:, SIGNAL_NAMES.index("cheek_raise")] = 0.05
    assert {e.action for e in events(signals, SIGNAL_NAMES, t)} == {"cheek_raise"}
    measured = np.zeros(40, bool)
    measured[[5, 30]] = True
    assert events(signals, SIGNAL_NAMES, t, measured) == []
