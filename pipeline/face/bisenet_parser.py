"""facexlib's BiSeNet face parser (CelebAMask-HQ, 19 classes) for the `full` profile.

Done as facexlib's own use of the model: the RGB crop resized to 512×512, scaled to [0, 1],
normalised with ImageNet mean/std, the first (full-resolution) of BiSeNet's three outputs,
argmax over the classes. The label map is resized back to the crop with nearest neighbour.
The resizes run on the model's device, batched. The network is facexlib's own `BiSeNet`
class; we keep our own weight lookup (pipeline/weights.py: WEIGHTS_DIR, hash check, offline
message) instead of `facexlib.parsing.init_parsing_model`, which downloads unchecked into
facexlib's package folder, and our own batched preprocessing on the device for speed.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facexlib.parsing.bisenet import BiSeNet

from pipeline.shards.files import file_sha256
from pipeline.weights import BISENET, load_state_dict, resolve_weight

INPUT_SIZE = 512
NUM_CLASSES = 19
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BisenetParser:
    """FaceParser backend: per-pixel CelebAMask-HQ labels of face crops (the landmarks are not needed)."""

    name = "bisenet"

    def __init__(self, device: str | None = None, weights_dir=None, batch_size: int = 16):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.weights_dir = weights_dir
        self.batch_size = batch_size

    @cached_property
    def weights_path(self):
        return resolve_weight(BISENET, self.weights_dir)

    @cached_property
    def net(self) -> torch.nn.Module:
        net = BiSeNet(num_class=NUM_CLASSES)
        state = load_state_dict(self.weights_path, "BiSeNet")
        try:
            net.load_state_dict(state)
        except RuntimeError as error:
            raise RuntimeError(f"{self.weights_path} is not a BiSeNet (19 classes) state dict: {error}") from error
        return net.to(self.device).eval()

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": "BiSeNet (facexlib, CelebAMask-HQ 19 classes)",
                "weights": BISENET.name, "sha256": file_sha256(self.weights_path), "input_size": INPUT_SIZE}

    def parse(self, crops: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"expected crops N×H×W×3 RGB uint8, got shape {crops.shape}")
        n, height, width = crops.shape[:3]
        labels = np.empty((n, height, width), np.uint8)
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        for start in range(0, n, self.batch_size):
            x = torch.from_numpy(crops[start:start + self.batch_size]).to(self.device).permute(0, 3, 1, 2).float()
            # align_corners=False is cv2.resize's INTER_LINEAR convention, which facexlib's callers use.
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            x = (x / 255.0 - mean) / std
            with torch.no_grad():
                classes = self.net(x)[0].argmax(dim=1, keepdim=True).float()
            # nearest-exact samples pixel centres, so the labels do not shift by half a pixel.
            classes = F.interpolate(classes, size=(height, width), mode="nearest-exact")
            labels[start:start + self.batch_size] = classes[:, 0].to(torch.uint8).cpu().numpy()
        return labels
