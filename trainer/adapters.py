"""Bottleneck adapters for a frozen CLIP, in named sets that share one copy of the towers.

FineCLIPER (after AIM) tunes CLIP by adding to every residual block of a tower two small
bottleneck MLPs: one in series after self-attention (it rewrites the attention output before
the residual sum) and one in parallel with the block's MLP (its output, times a scale of 0.5,
is added next to the MLP's). The up-projection starts at zero, so an adapted tower computes
exactly what the frozen tower does until training moves it.

Several inputs use the same frozen tower with their own adapters (frames, parsing masks and
landmark images in the vision tower; positive prompts, negative prompts and descriptions in
the text tower). `AdaptedCLIP` therefore keeps one CLIP and, per tower, a dict of adapter
sets, and re-runs the tower's blocks itself so that each call names the set it uses:
`encode_image(images, adapter_set="parsing")`. Nothing is copied and nothing is switched
by mutable state, so sets can be used in any order within one forward pass.

FineCLIPER's framework figure draws one adapter per text block; `text_per_block=1` keeps only
the one after self-attention in the text tower (the placement is not stated: our guess).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Adapter(nn.Module):
    """down-projection → GELU → up-projection, times `scale`; returns the update, not x + update."""

    def __init__(self, dim: int, bottleneck: int, scale: float = 1.0):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        self.scale = scale
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x))) * self.scale


class BlockAdapters(nn.Module):
    """The adapters of one residual block: after self-attention, and (`parallel`) beside the MLP."""

    def __init__(self, dim: int, bottleneck: int, mlp_scale: float, parallel: bool = True):
        super().__init__()
        # AIM scales only the parallel branch: the series adapter's update is already
        # inside the attention residual, the parallel one adds a third term to the block.
        self.attn = Adapter(dim, bottleneck, scale=1.0)
        self.mlp = Adapter(dim, bottleneck, scale=mlp_scale) if parallel else None


def adapter_sets(width: int, layers: int, names: Sequence[str], bottleneck: int,
                 mlp_scale: float = 0.5, per_block: int = 2) -> nn.ModuleDict:
    """One list of `BlockAdapters` per name, for a tower of `layers` blocks of `width`; `per_block`
    2: after attention and beside the MLP, 1: after attention only."""
    if per_block not in (1, 2):
        raise ValueError(f"adapters per block must be 1 or 2, got {per_block}")
    return nn.ModuleDict({
        name: nn.ModuleList(BlockAdapters(width, bottleneck, mlp_scale, parallel=per_block == 2)
                            for _ in range(layers))
        for name in names
    })


def bottleneck_size(width: int, ratio: float) -> int:
    return max(1, round(width * ratio))


def run_blocks(transformer: nn.Module, x: torch.Tensor, adapters: Sequence[BlockAdapters] | None) -> torch.Tensor:
    """A `clip.model.Transformer` on x (LND), with one `BlockAdapters` per block or none."""
    for i, block in enumerate(transformer.resblocks):
        # block.attention applies the block's own mask: the causal mask in the text tower.
        h = block.attention(block.ln_1(x))
        if adapters is not None:
            h = h + adapters[i].attn(h)
        x = x + h
        y = block.ln_2(x)
        x = x + block.mlp(y)
        if adapters is not None and adapters[i].mlp is not None:
            x = x + adapters[i].mlp(y)
    return x


class AdaptedCLIP(nn.Module):
    """A CLIP model and named adapter sets for its vision and text towers.

    The CLIP's own parameters are left as they are (trainable or not is the caller's
    choice: FineCLIPER freezes them, DFER-CLIP fine-tunes the vision tower). `adapter_set=None`
    runs a tower without adapters.
    """

    def __init__(self, clip: nn.Module, visual_sets: Sequence[str] = (), text_sets: Sequence[str] = (),
                 ratio: float = 0.125, mlp_scale: float = 0.5, text_per_block: int = 2):
        super().__init__()
        if not hasattr(clip.visual, "transformer"):
            raise ValueError("adapters need a ViT CLIP (ViT-B/32, ViT-B/16, ViT-L/14, ...), not a ResNet one")
        self.clip = clip
        visual, text = clip.visual.transformer, clip.transformer
        self.visual_adapters = adapter_sets(visual.width, visual.layers, visual_sets,
                                            bottleneck_size(visual.width, ratio), mlp_scale)
        self.text_adapters = adapter_sets(text.width, text.layers, text_sets,
                                          bottleneck_size(text.width, ratio), mlp_scale, per_block=text_per_block)

    @property
    def embed_dim(self) -> int:
        return self.clip.text_projection.shape[1]

    @property
    def input_resolution(self) -> int:
        return self.clip.visual.input_resolution

    def encode_image(self, images: torch.Tensor, adapter_set: str | None = None) -> torch.Tensor:
        """(N, 3, H, W) CLIP-normalised images → (N, embed_dim), as `VisionTransformer.forward`."""
        v = self.clip.visual
        x = v.conv1(images.to(v.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)  # (N, grid², width)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.ln_pre(x).permute(1, 0, 2)
        adapters = self.visual_adapters[adapter_set] if adapter_set is not None else None
        x = run_blocks(v.transformer, x, adapters).permute(1, 0, 2)
        return v.ln_post(x[:, 0, :]) @ v.proj

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip.token_embedding(tokens)

    def encode_text(self, tokens: torch.Tensor, adapter_set: str | None = None,
                    embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 77) token ids → (N, embed_dim), as `CLIP.encode_text`.

        `embeddings` (N, 77, width) replaces the token embeddings (learned prompt context,
        CoOp-style); `tokens` still marks where each text ends (its largest id, the end token).
        """
        c = self.clip
        x = self.token_embeddings(tokens) if embeddings is None else embeddings
        x = (x + c.positional_embedding.to(x.dtype)).permute(1, 0, 2)
        adapters = self.text_adapters[adapter_set] if adapter_set is not None else None
        x = c.ln_final(run_blocks(c.transformer, x, adapters).permute(1, 0, 2))
        return x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)] @ c.text_projection
