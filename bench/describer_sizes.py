"""Sizes of the video-LLM describers from their published configurations, on any machine (no GPU, no weights).

    python bench/describer_sizes.py            # writes bench/results/describer_sizes.json

For Video-LLaVA-7B, Qwen2.5-VL-7B-Instruct and Qwen2.5-VL-3B-Instruct (the configurations
bench/gpu_check.py builds: `videollava_config`, `qwen25vl_config`), each model is built on PyTorch's
meta device (shapes only, no memory) to count its parameters; from the configuration come the bf16
weight size, the key-value cache per token (layers × 2 × key-value heads × head size × 2 bytes), the
video tokens per clip at the describer's default frames, and the cache of one clip and of a batch of
32 (prompt + video + 96 new tokens; the prompt's text taken as 150 tokens, about what the
instruction and chat format make). docs/pipeline.md ("Choosing a describer") quotes these figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_json  # noqa: E402
from gpu_check import git_commit, qwen25vl_config, videollava_config  # noqa: E402

PROMPT_TEXT_TOKENS = 150
NEW_TOKENS = 96
BATCH = 32


def sizes() -> dict:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, VideoLlavaForConditionalGeneration

    from pipeline.describers.qwen25vl import DEFAULT_FRAME_SIZE, DEFAULT_NUM_FRAMES, video_token_count
    from pipeline.describers.videollava import DEFAULT_NUM_FRAMES as LLAVA_FRAMES
    from pipeline.describers.videollava import video_token_count as llava_video_tokens

    cases = {
        "videollava-7b": (VideoLlavaForConditionalGeneration, videollava_config(False)[0],
                          llava_video_tokens(LLAVA_FRAMES, 224, 224, 14), f"{LLAVA_FRAMES} frames of 224 px"),
        "qwen2.5-vl-7b": (Qwen2_5_VLForConditionalGeneration, qwen25vl_config("7b"),
                          video_token_count(DEFAULT_NUM_FRAMES, DEFAULT_FRAME_SIZE),
                          f"{DEFAULT_NUM_FRAMES} frames of {DEFAULT_FRAME_SIZE} px"),
        "qwen2.5-vl-3b": (Qwen2_5_VLForConditionalGeneration, qwen25vl_config("3b"),
                          video_token_count(DEFAULT_NUM_FRAMES, DEFAULT_FRAME_SIZE),
                          f"{DEFAULT_NUM_FRAMES} frames of {DEFAULT_FRAME_SIZE} px"),
    }
    models = {}
    for name, (model_class, config, video_tokens, frames) in cases.items():
        with torch.device("meta"):
            model = model_class._from_config(config, dtype=torch.bfloat16)
        parameters = sum(p.numel() for p in model.parameters())
        text = config.text_config
        head = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        kv_bytes = text.num_hidden_layers * 2 * text.num_key_value_heads * head * 2
        tokens = PROMPT_TEXT_TOKENS + video_tokens + NEW_TOKENS
        models[name] = {"parameters": parameters, "weights_gb_bf16": round(parameters * 2 / 1e9, 2),
                        "frames": frames, "video_tokens_per_clip": video_tokens,
                        "kv_cache_bytes_per_token": kv_bytes, "tokens_per_clip": tokens,
                        "kv_cache_mib_per_clip": round(tokens * kv_bytes / 2**20, 1),
                        f"kv_cache_gib_batch_{BATCH}": round(BATCH * tokens * kv_bytes / 2**30, 2)}
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "describer_sizes.json")
    args = parser.parse_args(argv)
    import torch

    commit = git_commit()
    report = {"benchmark": "describer_sizes", "torch": torch.__version__, "commit": commit["commit"],
              "modified_tracked_files": commit["modified_tracked_files"],
              "assumptions": {"prompt_text_tokens": PROMPT_TEXT_TOKENS, "new_tokens": NEW_TOKENS, "batch": BATCH,
                              "dtype": "bfloat16"},
              "models": sizes()}
    write_json(args.out, report)
    for name, model in report["models"].items():
        print(f"{name}: {model['parameters'] / 1e9:.2f} B parameters, {model['weights_gb_bf16']} GB, "
              f"{model['video_tokens_per_clip']} video tokens, {model['kv_cache_bytes_per_token'] / 1024:.0f} KiB "
              f"cache per token, {model['kv_cache_mib_per_clip']} MiB per clip")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
