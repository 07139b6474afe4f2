"""The temporal model of both families: per-frame CLIP embeddings in, one clip embedding out.

Two blocks are available (`ModelConfig.temporal_block`):

- `clip` (ours): a few of OpenAI's own `ResidualAttentionBlock`s (no mask) over the frame
  sequence, with a learnable positional embedding initialised at 0.01·N(0, 1).
- `dferclip` (the reference, FIDELITY D13): DFER-CLIP's block as in its
  `models/Temporal_Model.py` (`Temporal_Transformer_Cls`, built with heads=8, dim_head=64,
  mlp_dim=1024 in `models/Generate_Model.py`): pre-norm residual attention with 8 heads of 64
  (query/key/value projection without bias, output projection with bias), pre-norm MLP of
  width 1024 with the tanh approximation of GELU, no final norm; positional embedding and
  class token drawn from N(0, 1).

FineCLIPER averages the outputs over time; DFER-CLIP prepends a learnable class token and
reads the clip embedding from it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.clip_loader import clip_model_module

TEMPORAL_BLOCKS = ("clip", "dferclip")


class ReferenceAttention(nn.Module):
    """Multi-head self-attention with an inner width of heads × head_dim, independent of `width`."""

    def __init__(self, width: int, heads: int = 8, head_dim: int = 64):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(width, 3 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)      # softmax(q kᵀ / √head_dim) v
        return self.out(attended.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class ReferenceBlock(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x)): DFER-CLIP's temporal block."""

    def __init__(self, width: int, mlp_width: int = 1024, heads: int = 8, head_dim: int = 64):
        super().__init__()
        self.norm_attention = nn.LayerNorm(width)
        self.attention = ReferenceAttention(width, heads, head_dim)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_width), nn.GELU(approximate="tanh"), nn.Linear(mlp_width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm_attention(x))
        return x + self.mlp(self.norm_mlp(x))


class TemporalTransformer(nn.Module):
    def __init__(self, width: int, layers: int, max_frames: int, class_token: bool = False, block: str = "clip"):
        super().__init__()
        if block not in TEMPORAL_BLOCKS:
            raise ValueError(f"temporal_block must be one of {TEMPORAL_BLOCKS}, got {block!r}")
        self.block = block
        positions = max_frames + int(class_token)
        if block == "clip":
            self.class_token = nn.Parameter(width ** -0.5 * torch.randn(width)) if class_token else None
            self.positional_embedding = nn.Parameter(0.01 * torch.randn(positions, width))
            self.transformer = clip_model_module().Transformer(width, layers, heads=max(1, width // 64))
        else:
            self.class_token = nn.Parameter(torch.randn(width)) if class_token else None
            self.positional_embedding = nn.Parameter(torch.randn(positions, width))
            self.transformer = nn.Sequential(*[ReferenceBlock(width) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, width) → (B, width)."""
        n_extra = int(self.class_token is not None)
        if x.shape[1] + n_extra > self.positional_embedding.shape[0]:
            raise ValueError(f"{x.shape[1]} frames, but the temporal model was built for at most "
                             f"{self.positional_embedding.shape[0] - n_extra} (ModelConfig.num_frames)")
        if self.class_token is not None:
            x = torch.cat([self.class_token.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        if self.block == "clip":
            x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)   # OpenAI's blocks are sequence-first
        else:
            x = self.transformer(x)
        return x[:, 0] if self.class_token is not None else x.mean(dim=1)
