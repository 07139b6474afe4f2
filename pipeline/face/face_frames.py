"""Which frames of a clip show its subject's face, which frames to keep, and whether enough remain.

Between the frames the detector searches, the subject's box is only interpolated: after a cut to
a shot with no face it would still be cropped, and the landmark model would fit a face to the sky.
So every frame is confirmed on its own. A frame is a **face frame** when

1. the detector, run again on the frame's crop around the subject's box, finds a face there: its
   face confidence (`FaceDetector.confirm`, in [0, 1]) reaches the detector's `confirm_threshold`;
2. and the frame lies in a shot (pipeline/face/shots.py) in which the detector found the subject
   on a searched frame: a face-like patch in a shot where the subject was never found is not
   taken for the subject.

Frames before the first and after the last face frame are cut from the stored clip (`trim`); the
faceless frames between them stay, marked. A clip whose face frames are fewer than
`min_face_share` of its decoded frames fails with `few_face_frames`: with 16 equal segments, as
the trainers sample, a quarter of the frames is four segments' worth of face (docs/real-footage.md
gives the shares measured on real clips).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_FACE_SHARE = 0.25


class NoFaceError(Exception):
    """No face was found in any frame of the clip."""


class FewFaceFramesError(NoFaceError):
    """The face is confirmed in too few of the clip's frames (a kind of NoFaceError, so callers that
    handle a clip without a face handle this one too)."""


@dataclass
class FaceFrames:
    confirmed: np.ndarray   # (T,) bool over the decoded frames
    confidence: np.ndarray  # (T,) float32: the face confidence where confirmed, else 0
    start: int              # the stored clip is decoded frames [start, stop)
    stop: int

    @property
    def trimmed(self) -> dict:
        """What was cut and why (meta `quality.trimmed`)."""
        return {"start": self.start, "end": len(self.confirmed) - self.stop,
                "why": "no confirmed face" if self.start or self.stop < len(self.confirmed) else ""}


def confirm_frames(confidence: np.ndarray, threshold: float, shots: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """(T,) bool: the face is confirmed in the frame (its confidence reaches `threshold`) and the
    subject was detected somewhere in the frame's shot."""
    shots = np.asarray(shots)
    found_in = np.unique(shots[np.asarray(detected, bool)])
    return (np.asarray(confidence) >= threshold) & np.isin(shots, found_in)


def face_frames(confidence: np.ndarray, threshold: float, shots: np.ndarray, detected: np.ndarray,
                trim: bool = True) -> FaceFrames:
    confirmed = confirm_frames(confidence, threshold, shots, detected)
    where = np.flatnonzero(confirmed)
    start, stop = (int(where[0]), int(where[-1]) + 1) if trim and len(where) else (0, len(confirmed))
    return FaceFrames(confirmed=confirmed, confidence=np.where(confirmed, confidence, 0).astype(np.float32),
                      start=start, stop=stop)


def check_face_share(frames: FaceFrames, min_share: float, path) -> None:
    """Raise FewFaceFramesError when the face frames are fewer than `min_share` of the decoded frames
    (`min_share` 0: never; a clip with no face frame at all is then kept whole, every frame marked)."""
    count, total = int(frames.confirmed.sum()), len(frames.confirmed)
    if min_share > 0 and (count == 0 or count < min_share * total):
        raise FewFaceFramesError(f"{path}: the face is confirmed in {count} of {total} frames "
                                 f"(at least {min_share:.0%} needed)")
