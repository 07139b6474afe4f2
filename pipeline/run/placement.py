"""How many actors of each GPU stage run, and what share of a GPU each one asks Ray for.

Ray places an actor wherever its CPUs and GPUs fit; a share below 1 (0.5, 0.25) lets several
actors use one card. The face stage (S3FD, FAN, BiSeNet) asks for `face_gpus` per actor and the
Video-LLaVA stage for `describe_gpus`; both are settable (`--face-gpus`, `--describe-gpus`).

Default counts, per GPU of the cluster: one describer actor; face actors fill what the describer
leaves, `(1 - describe_gpus) / face_gpus` of them when that is at least one (the stages then share
every card at once), else `1 / face_gpus` (a whole card's worth: the stages take turns, the
describer starting as the face actors finish). With the defaults (0.5 and 1) that is two face
actors per GPU, then one Video-LLaVA per GPU; with `--face-gpus 0.25 --describe-gpus 0.5`, two
face actors and one Video-LLaVA on every card together. `--workers` and `--describe-workers`
set the counts outright.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

FACE_GPUS = 0.5       # per face-stage actor: two per GPU
DESCRIBE_GPUS = 1.0   # per Video-LLaVA actor: a card of its own


def gpu_share(text: str | float) -> float:
    """A GPU request Ray accepts: a fraction in (0, 1], or a whole number of GPUs."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < value <= 1 or (value > 1 and value.is_integer())):
        raise argparse.ArgumentTypeError(f"{text}: a GPU share is a fraction in (0, 1] (0.5: two actors per GPU) "
                                         "or a whole number of GPUs")
    return value


@dataclass(frozen=True)
class GpuPlacement:
    """The GPU shares of the two GPU stages, and the describer's actor count when set (the face
    stage's is `--workers`)."""

    face_gpus: float = FACE_GPUS
    describe_gpus: float = DESCRIBE_GPUS
    describe_workers: int | None = None    # --describe-workers

    def __post_init__(self):
        gpu_share(self.face_gpus), gpu_share(self.describe_gpus)

    def describe_actors(self, gpus: float) -> int:
        """Video-LLaVA actors: one per GPU unless set."""
        return self.describe_workers or max(1, math.floor(gpus + 1e-9))

    def face_actors(self, gpus: float, describer_on_gpu: bool) -> int:
        """Face actors on `gpus` GPUs, leaving room for the describer when both fit on a card."""
        per_gpu = 1 / self.face_gpus
        if describer_on_gpu and self.describe_gpus < 1:
            beside = math.floor((1 - self.describe_gpus) / self.face_gpus + 1e-9)
            per_gpu = beside if beside >= 1 else per_gpu
        return max(1, math.floor(gpus * per_gpu + 1e-9))
