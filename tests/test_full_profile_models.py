"""The `full` profile's model backends (S3FD, FAN, BiSeNet) and the weight-file resolver, offline on CPU.

No real weights can be downloaded here, so the real network classes are saved with random
weights under the real file names; the backends then go through their real loading code.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.shards.files import file_sha256
from pipeline.weights import (BISENET, FAN_2D, FULL_PROFILE_WEIGHTS, S3FD, MissingWeightsError, check_weights,
                              resolve_weight)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DFER_OFFLINE", "1")
    monkeypatch.delenv("WEIGHTS_DIR", raising=False)
    # An empty torch hub (torch.hub.get_dir() is $TORCH_HOME/hub), so weights cached on this
    # machine never stand in for the test's.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    from tiny_models import save_face_weights

    return save_face_weights(tmp_path_factory.mktemp("weights"))


def test_fan_landmarks(weights_dir):
    from pipeline.face.fan_landmarks import FanLandmarks

    model = FanLandmarks(device="cpu", weights_dir=weights_dir, batch_size=2)
    crops = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    boxes = np.array([[32, 32, 96, 96], [20, 30, 110, 120]], np.float64)
    points, confidences = model.predict(crops, boxes)
    assert points.shape == (2, 68, 2) and points.dtype == np.float32
    assert confidences.shape == (2,) and confidences.dtype == np.float32
    assert np.isfinite(points).all() and ((confidences >= 0) & (confidences <= 1)).all()
    # FAN sees a square of ~2× the box around it, so every point lies within that square.
    assert (points > -128).all() and (points < 256).all()
    identity = model.identity()
    assert identity["weights"] == FAN_2D.name and identity["sha256"] == file_sha256(weights_dir / FAN_2D.name)

    empty_points, empty_confidences = model.predict(np.zeros((0, 128, 128, 3), np.uint8), np.zeros((0, 4)))
    assert empty_points.shape == (0, 68, 2) and empty_confidences.shape == (0,)
    with pytest.raises(ValueError, match="empty"):
        model.predict(crops[:1], np.array([[50, 50, 50, 50.0]]))


def test_fan_decoding_matches_face_alignment():
    """Heatmap points map back to crop pixels as face_alignment.utils.transform(invert=True) maps them,
    except that the library truncates to whole pixels where we keep floats. (FaceAlignment's own
    get_landmarks_from_image agrees too, but compiling its numba decoder takes ~10 s.)"""
    from face_alignment.utils import transform

    from pipeline.face.fan_landmarks import centers_and_scales, heatmap_to_image

    boxes = np.array([[20.0, 24.0, 76.0, 84.0], [10.0, 10.0, 90.0, 90.0]])
    hm_points = np.random.default_rng(1).uniform(0, 64, (2, 68, 2)).astype(np.float32)
    centers, scales = centers_and_scales(boxes)
    ours = heatmap_to_image(hm_points, centers, scales)
    for i in range(2):
        expected = np.array([transform(point.tolist(), centers[i], scales[i], 64, invert=True).numpy()
                             for point in hm_points[i]])
        # Truncation toward zero; float32 vs float64 may differ by one pixel right at an integer.
        np.testing.assert_allclose(ours[i], expected, rtol=0, atol=1.0 + 1e-3)
        assert (np.trunc(ours[i]) == expected).mean() > 0.95

    # The crop center/scale of api.get_landmarks_from_image: box center moved up 12% of the height,
    # scale (width + height) / 195.
    np.testing.assert_allclose(centers[0], [48.0, 54.0 - 60.0 * 0.12])
    np.testing.assert_allclose(scales[0], (56.0 + 60.0) / 195.0)


def test_sfd_detector(weights_dir):
    from pipeline.face.sfd_detector import SfdDetector

    detector = SfdDetector(device="cpu", weights_dir=weights_dir, batch_size=2)
    frames = list(np.random.default_rng(0).integers(0, 256, (2, 96, 128, 3), dtype=np.uint8))
    found = detector.detect(frames)
    assert isinstance(found, list) and len(found) == 2
    for faces in found:
        assert isinstance(faces, list)
        scores = [score for _, score in faces]
        assert scores == sorted(scores, reverse=True)
        for box, score in faces:
            assert box.shape == (4,) and box.dtype == np.float64 and isinstance(score, float)
    assert detector.identity()["sha256"] == file_sha256(weights_dir / S3FD.name)


def test_sfd_batches_by_size_and_maps_shrunk_boxes_back():
    from pipeline.face.sfd_detector import SfdDetector

    class FakeLibraryDetector:
        def __init__(self):
            self.batch_shapes = []

        def detect_from_batch(self, batch):
            self.batch_shapes.append(tuple(batch.shape))
            return [[np.array([10, 20, 30, 40, 0.6]), np.array([0, 0, 8, 8, 0.9])] for _ in batch]

    detector = SfdDetector(device="cpu", batch_size=2, max_side=64)
    detector.detector = fake = FakeLibraryDetector()  # stands in for the lazily loaded library detector
    frames = [np.zeros((96, 128, 3), np.uint8)] * 3 + [np.zeros((32, 48, 3), np.uint8)]
    found = detector.detect(frames)
    # Same-size frames share batches (of at most 2); 96×128 is shrunk to 48×64, 32×48 is kept.
    assert sorted(fake.batch_shapes) == [(1, 3, 32, 48), (1, 3, 48, 64), (2, 3, 48, 64)]
    (best, best_score), (other, other_score) = found[0]
    assert best_score == 0.9 and other_score == 0.6
    np.testing.assert_allclose(best, [0, 0, 16, 16])
    np.testing.assert_allclose(other, [20, 40, 60, 80])
    np.testing.assert_allclose(found[3][1][0], [10, 20, 30, 40])


def test_bisenet_parser(weights_dir):
    from pipeline.face.bisenet_parser import BisenetParser

    parser = BisenetParser(device="cpu", weights_dir=weights_dir, batch_size=2)
    crops = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    labels = parser.parse(crops, np.zeros((2, 68, 2), np.float32))
    assert labels.shape == (2, 64, 64) and labels.dtype == np.uint8 and labels.max() < 19
    assert parser.identity()["weights"] == BISENET.name


def test_missing_weights_names_every_file(tmp_path):
    with pytest.raises(MissingWeightsError) as raised:
        check_weights(FULL_PROFILE_WEIGHTS, weights_dir=tmp_path)
    message = str(raised.value)
    for file in FULL_PROFILE_WEIGHTS:
        assert file.name in message and file.url in message
    assert "WEIGHTS_DIR" in message and str(tmp_path) in message
    assert raised.value.missing == list(FULL_PROFILE_WEIGHTS)


def test_backend_reports_missing_weights(tmp_path):
    from pipeline.face.bisenet_parser import BisenetParser

    with pytest.raises(MissingWeightsError, match=BISENET.name):
        BisenetParser(device="cpu", weights_dir=tmp_path).identity()


def test_resolve_weight_finds_library_caches(tmp_path, monkeypatch):
    hub = tmp_path / "torch" / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    (hub / "checkpoints" / S3FD.name).write_bytes(b"weights")
    assert Path(torch.hub.get_dir()) == hub
    assert resolve_weight(S3FD) == hub / "checkpoints" / S3FD.name

    # The user's folder comes first, named by argument or by WEIGHTS_DIR.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / S3FD.name).write_bytes(b"other weights")
    assert resolve_weight(S3FD, weights_dir=mine) == mine / S3FD.name
    monkeypatch.setenv("WEIGHTS_DIR", str(mine))
    assert resolve_weight(S3FD) == mine / S3FD.name
    assert file_sha256(mine / S3FD.name) == hashlib.sha256(b"other weights").hexdigest()


def test_backends_never_let_the_libraries_download(weights_dir, monkeypatch):
    """The networks are built from the files our resolver found; the libraries' own downloads
    (face-alignment's and facexlib's, both through torch.hub) are never reached."""
    from pipeline.face.bisenet_parser import BisenetParser
    from pipeline.face.fan_landmarks import FanLandmarks
    from pipeline.face.sfd_detector import SfdDetector

    def no_network(*args, **kwargs):
        raise AssertionError(f"a library tried to download {args[:1]}")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    assert isinstance(FanLandmarks(device="cpu", weights_dir=weights_dir).net, torch.nn.Module)
    assert SfdDetector(device="cpu", weights_dir=weights_dir).detector.face_detector is not None
    assert isinstance(BisenetParser(device="cpu", weights_dir=weights_dir).net, torch.nn.Module)
    assert not (Path(torch.hub.get_dir()) / "checkpoints").exists()
