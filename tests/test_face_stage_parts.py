"""Face tracking and landmark-rasterised masks: the parts of the face stage that need no video."""

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from pipeline.face.dlib_models import DlibDetector, DlibLandmarks, DlibFaceModels
from pipeline.face.track import crop_affines, crop_squares, cut_crops, main_face_track, map_boxes, smooth
from pipeline.shards.layout import LEFT_EYE, RIGHT_EYE, UPPER_LIP, LOWER_LIP
from pipeline.face.landmark_masks import LABEL, LandmarkMaskParser, rasterise


def box(x, y, s):
    return np.array([x, y, x + s, y + s], float)


def test_main_track_prefers_the_large_persistent_face_and_fills_gaps():
    detections = {}
    for t in range(0, 30, 3):
        faces = [(box(100 + t, 50, 80), 1.0)]          # the subject, drifting right
        if t in (6, 9):
            faces.append((box(10, 10, 120), 2.0))      # a bigger face that appears briefly
        if t % 2 == 0:
            faces.append((box(300, 200, 30), 0.5))     # a small face in the background, often
        detections[t] = faces
    track = main_face_track(detections, 30, smooth_window=1)
    assert track is not None and track.boxes.shape == (30, 4)
    assert np.allclose(track.boxes[:, 2] - track.boxes[:, 0], 80)
    assert np.isclose(track.boxes[4, 0], 104)          # interpolated between frames 3 and 6
    assert track.boxes[29, 0] == track.boxes[27, 0]    # held after the last detection
    assert track.detected.sum() == 10 and not track.detected[4]
    assert main_face_track({}, 10) is None


def test_smoothing_removes_jitter_but_keeps_the_mean():
    rng = np.random.default_rng(0)
    values = 100 + rng.normal(0, 3, (40, 4))
    smoothed = smooth(values, 5)
    assert smoothed.shape == values.shape
    assert np.std(np.diff(smoothed, axis=0)) < 0.5 * np.std(np.diff(values, axis=0))
    assert abs(smoothed.mean() - values.mean()) < 0.5


def test_crop_maps_boxes_and_pixels_consistently():
    frame = astronaut()
    detector = DlibDetector()
    (face, _), = detector.detect([frame])[:1][0][:1]
    squares = crop_squares(face[None], margin=1.5, shift_up=0.08)
    affines = crop_affines(squares, 224)
    crop = cut_crops(frame[None], affines, 224)[0]
    in_crop = map_boxes(face[None], affines)[0]
    assert crop.shape == (224, 224, 3)
    side = in_crop[2] - in_crop[0]
    assert 224 / 1.6 < side < 224 / 1.4                # the face fills 1/margin of the crop
    # landmarks found in the crop match the landmarks found in the frame, mapped into the crop
    models = DlibFaceModels()
    full = models.landmarks(frame, face)
    mapped = full * affines[0, 0, 0] + affines[0, :, 2]
    points, conf = DlibLandmarks().predict(crop[None], in_crop[None])
    assert np.abs(points[0] - mapped).mean() < 3.0
    assert conf[0] > 0.8


def test_dlib_landmark_confidence_is_low_for_a_non_face_shape():
    landmarks = DlibLandmarks()
    points = np.random.default_rng(0).uniform(0, 224, (68, 2)).astype(np.float32)
    assert landmarks.confidence(points) < 0.2
    assert landmarks.confidence(landmarks.reference.astype(np.float32)) > 0.99


def test_masks_follow_the_landmarks():
    frame = astronaut()
    models = DlibFaceModels()
    import cv2

    # at 3× the face is ~270 px wide, as in a 224 px crop of a 1.5× margin: lips several pixels thick
    frame = cv2.resize(frame, None, fx=3, fy=3)
    points = models.landmarks(astronaut(), models.detect(astronaut(), 1)[0][0]) * 3
    labels = rasterise(points, frame.shape[:2])

    def inside(polygon, label):
        region = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillPoly(region, [np.round(points[list(polygon)]).astype(np.int32)], 1)
        hits = labels[region.astype(bool)]
        return np.mean(hits == LABEL[label])

    assert inside(UPPER_LIP, "u_lip") > 0.8 and inside(LOWER_LIP, "l_lip") > 0.8
    assert inside(RIGHT_EYE, "r_eye") > 0.8 and inside(LEFT_EYE, "l_eye") > 0.8
    # the subject's right eye is on the image's left
    ys, xs = np.nonzero(labels == LABEL["r_eye"])
    assert xs.mean() < np.nonzero(labels == LABEL["l_eye"])[1].mean()
    # skin covers the face between the eyes and the mouth, background the image corners
    nose_tip = np.round(points[33]).astype(int)
    assert labels[nose_tip[1], nose_tip[0]] == LABEL["nose"]
    cheek = np.round((points[2] + points[31]) / 2).astype(int)
    assert labels[cheek[1], cheek[0]] == LABEL["skin"]
    assert labels[0, 0] == 0 and labels[-1, -1] == 0
    masks = LandmarkMaskParser().parse(frame[None], points[None])
    assert masks.shape == (1, *frame.shape[:2]) and masks.dtype == np.uint8 and masks.max() < 19
    assert np.array_equal(masks[0], labels)


def _whole_frame_first(frame, m, size):
    """The previous cut_crops for a strong downscale: area-average the whole frame, then warp."""
    import cv2

    pre = m[0, 0] / 0.8
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (round(w * pre), round(h * pre)), interpolation=cv2.INTER_AREA)
    sx, sy = small.shape[1] / w, small.shape[0] / h
    m = np.array([[m[0, 0] / sx, 0, m[0, 2] + m[0, 0] * (0.5 / sx - 0.5)],
                  [0, m[1, 1] / sy, m[1, 2] + m[1, 1] * (0.5 / sy - 0.5)]])
    return cv2.warpAffine(small, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def test_strong_downscale_crops_match_shrinking_the_whole_frame_first():
    import cv2

    frame = cv2.resize(astronaut(), (1280, 1280), interpolation=cv2.INTER_CUBIC)[280:1000]   # 720p
    for scale, (x0, y0) in [(0.2, (300.0, 100.0)), (0.35, (410.5, 60.25)), (0.5, (700.0, -80.0)),
                            (0.59, (-30.0, 400.0)), (0.3, (1500.0, 100.0))]:   # the last: outside the frame
        m = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
        crop = cut_crops(frame[None], m[None], 224)[0]
        diff = np.abs(crop.astype(int) - _whole_frame_first(frame, m, 224))
        # the same crop up to where the area filter's grid falls: under a grey level on average
        assert crop.shape == (224, 224, 3) and diff.mean() < 1 and np.percentile(diff, 99) < 10, scale


def test_crops_put_each_pixel_where_the_affine_maps_it():
    """Landmarks and boxes are mapped into the crop by its affine: the pixels must follow it, also
    through the pre-shrink (which, resizing the whole frame from its corner, was 0.15-0.3 px off)."""
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[300:309, 700:709] = 255                                          # a white square, centre (704, 304)
    for scale in (0.25, 0.5, 0.9):                                         # with and without the pre-shrink
        squares = np.array([[704 - 100 / scale, 304 - 90 / scale, 704 + 124 / scale, 304 + 134 / scale]])
        affines = crop_affines(squares, 224)
        grey = cut_crops(frame[None], affines, 224)[0, :, :, 0].astype(float)
        ys, xs = np.mgrid[:224, :224]
        centroid = np.array([(grey * xs).sum(), (grey * ys).sum()]) / grey.sum()
        np.testing.assert_allclose(centroid, map_boxes(np.array([[704, 304, 704, 304]]), affines)[0, :2], atol=0.1)


def _i420(frames: np.ndarray):
    """RGB frames -> I420Planes through swscale (as a decoder would hand them over), and the RGB the
    planes convert back to (the frames a decoder's RGB conversion gives)."""
    import av

    from pipeline.inputs.decode import I420Planes

    ys, us, vs, back = [], [], [], []
    for frame in frames:
        yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p").to_ndarray()
        h, w = frame.shape[:2]
        ys.append(yuv[:h])
        us.append(yuv[h:h + h // 4].reshape(h // 2, w // 2))
        vs.append(yuv[h + h // 4:].reshape(h // 2, w // 2))
        back.append(av.VideoFrame.from_ndarray(yuv, format="yuv420p").to_ndarray(format="rgb24"))
    return I420Planes(np.stack(ys), np.stack(us), np.stack(vs)), np.stack(back)


def test_crops_from_planes_match_crops_from_rgb_frames():
    """The face stage cuts crops straight from a video's 4:2:0 planes, converting only the region each
    crop reads: at mild scales the very pixels of cutting from RGB frames; at strong downscales
    (where swscale also shrinks the region) within a level or two."""
    from pipeline.face.track import cut_crops_from_planes

    frame = cv2.resize(astronaut(), (1280, 1280), interpolation=cv2.INTER_CUBIC)[280:1000]   # 720p
    planes, rgb = _i420(np.stack([frame, frame[:, ::-1].copy()]))
    for side, (x0, y0) in [(150, (500.0, 200.0)), (300, (410.5, 60.25)), (600, (900.0, -100.0)),
                           (900, (-200.0, 300.0)), (400, (1500.0, 100.0))]:   # the last: outside the frame
        squares = np.array([[x0, y0, x0 + side, y0 + side]] * 2)
        affines = crop_affines(squares, 224)
        ours, reference = cut_crops_from_planes(planes, affines, 224), cut_crops(rgb, affines, 224)
        diff = np.abs(ours.astype(int) - reference)
        if affines[0, 0, 0] >= 0.6:
            assert diff.max() == 0, side
        else:
            assert diff.mean() < 1.5 and np.percentile(diff, 99) < 8, (side, diff.mean())
    assert cut_crops_from_planes(planes, crop_affines(np.array([[1500.0, 100, 1900, 500]] * 2), 224), 224).max() == 0


def test_detector_searches_around_the_last_face_and_falls_back_to_the_whole_frame():
    """DlibDetector on one clip's searched frames: after a face is found, only the region around it is
    searched (at the same scale and upsampling); a face that jumped away is still found (the whole frame
    is searched when the region finds nothing), and so is one on a frame after a miss."""
    from pipeline.face.track import iou

    canvas = np.zeros((720, 1280), np.uint8)
    portrait = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    full = 480 * 270
    # side of the portrait, its x positions (drifting, a jump, gone, back), HOG's upsampling at this size,
    # the least overlap with a whole-frame search (HOG's boxes move in steps of its 8-px cells at the
    # scale searched: ~11 frame pixels for the upsampled small face)
    for side, xs, upsampled, min_iou in ((640, (0, 30, 60, 600, 600, None, 620), True, 0.7),
                                         (900, (0, 30, 60, 300, 300, None, 330), False, 0.95)):
        frames = []
        for x in xs:
            frame = canvas.copy()
            if x is not None:
                face = cv2.resize(portrait, (side, side))[:680]
                frame[40:40 + len(face), x:x + side] = face
            frames.append(frame)
        detector = DlibDetector(full_search_every=8)
        searched = []   # the size of every image HOG ran on
        run = detector.models.detect
        detector.models.detect = lambda image, **kw: (searched.append(image.size), run(image, **kw))[1]
        tracked = detector.detect(frames)
        whole = DlibDetector(full_search_every=1).detect(frames)   # every frame searched whole
        assert [len(f) for f in tracked] == [len(f) for f in whole] == [1, 1, 1, 1, 1, 0, 1]
        for ours, reference in zip(tracked, whole):
            for (a, _), (b, _) in zip(ours, reference):
                assert iou(a, b) > min_iou, side
        # frames 1, 2 and 4 are searched in a region only; 3 (the face jumped away) and 5 (no face) in a
        # region, then whole; 0, 6 (nothing to search around) whole. Upsampled: each whole search twice.
        regions = [i for i, size in enumerate(searched) if size < full / 3]
        assert regions == ([2, 3, 4, 7, 8] if upsampled else [1, 2, 3, 5, 6]), (side, searched)
        # a whole-frame search that finds nothing at 0 is repeated with upsampling
        assert len(searched) == (13 if upsampled else 10), (side, searched)


def test_the_stored_plausibility_reference_is_what_the_models_find():
    landmarks = DlibLandmarks()
    np.testing.assert_array_equal(landmarks.reference, landmarks.reference_landmarks())


def test_backends_declare_their_weights_and_profiles_derive_them():
    from pipeline.backends import PROFILES, describer_backend, face_weights, make_detector
    from pipeline.weights import BISENET, FAN_2D, S3FD

    full, cpu = PROFILES["full"], PROFILES["cpu"]
    assert face_weights(full.detector, full.landmarker, full.parser) == [S3FD, FAN_2D, BISENET]
    assert face_weights(cpu.detector, cpu.landmarker, cpu.parser) == []
    assert describer_backend(cpu.describer).inline and describer_backend(full.describer).gpu
    # a weights folder reaches only the backends that read weight files
    assert make_detector(cpu.detector, "/nonexistent/weights").name == cpu.detector
    assert make_detector(full.detector, "/nonexistent/weights").weights_dir == "/nonexistent/weights"
    with pytest.raises(ValueError, match="unknown detector backend 'nope'; choose from dlib, dlib-cnn, sfd"):
        make_detector("nope")
