"""The temporal model of both families: per-frame CLIP embeddings in, one clip embedding out.

A few CLIP residual blocks (OpenAI's own `ResidualAttentionBlock`, no mask) over the frame
sequence with a learnable positional embedding. FineCLIPER averages the outputs over time;
DFER-CLIP prepends a learnable class token and reads the clip embedding from it.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.clip_loader import clip_model_module


class TemporalTransformer(nn.Module):
    def __init__(self, width: int, layers: int, max_frames: int, class_token: bool = False):
        super().__init__()
        scale = width ** -0.5
        self.class_token = nn.Parameter(scale * torch.randn(width)) if class_token else None
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(max_frames + int(class_token), width))
        self.transformer = clip_model_module().Transformer(width, layers, heads=max(1, width // 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, width) → (B, width)."""
        n_extra = int(self.class_token is not None)
        if x.shape[1] + n_extra > self.positional_embedding.shape[0]:
            raise ValueError(f"{x.shape[1]} frames, but the temporal model was built for at most "
                             f"{self.positional_embedding.shape[0] - n_extra} (ModelConfig.num_frames)")
        if self.class_token is not None:
            x = torch.cat([self.class_token.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return x[:, 0] if self.class_token is not None else x.mean(dim=1)
