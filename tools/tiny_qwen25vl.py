"""Save a tiny Qwen2.5-VL with random weights, and its processor, into a folder the qwen2.5-vl describer loads.

    python tools/tiny_qwen25vl.py --out runs/tiny-qwen2.5-vl
    make preprocess DATASET=sample DESCRIBER=qwen2.5-vl DESCRIBER_MODEL=runs/tiny-qwen2.5-vl OUT=shards/sample-qwen

For trying the pipeline's Qwen2.5-VL path on a CPU without the real checkpoint (17 GB): the real
classes (`Qwen2_5_VLForConditionalGeneration`, `Qwen2_5_VLProcessor` with Qwen2-VL's image and video
processors) at a tiny size, saved with `save_pretrained` as the Hub checkpoint is, so the describer
loads it through the same code. Its words are random. Everything is made here, offline:
- the tokenizer is transformers' `Qwen2Tokenizer` (byte-level BPE, as Qwen's) over the 256 byte
  symbols and no merges, so every text encodes, one token per byte, plus Qwen's special tokens
  (<|endoftext|>, <|im_start|>, <|im_end|>, <|vision_start|>, <|vision_end|>, <|image_pad|>,
  <|video_pad|>);
- the chat template is ours (`CHAT_TEMPLATE`), in Qwen's ChatML layout: a system turn, the user's
  turn with <|vision_start|><|video_pad|><|vision_end|> where a video goes, the assistant's turn;
- the model: a 2-layer vision tower (14-px patches, 2 × 2 merge, 2-frame temporal patches, as the
  real one) and a 2-layer language model, seeded.
tests/tiny_models.py and bench/gpu_check.py's dry run use these builders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")
DEFAULT_SYSTEM = "You are a helpful assistant."
# Written for this project in Qwen's ChatML layout; a message's content is a string or a list of
# {"type": "video" | "image" | "text"} parts.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PATCH_SIZE, MERGE_SIZE, TEMPORAL_PATCH_SIZE = 14, 2, 2


def byte_tokenizer():
    """Qwen2Tokenizer over the 256 byte-level symbols (no merges) and Qwen's special tokens."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    vocab = {symbol: index for index, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token="<|im_end|>",
                               pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tokenizer


def token_ids(tokenizer) -> dict[str, int]:
    """The model config's special token ids, as the tokenizer numbers them."""
    return {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}


def tiny_config(tokenizer):
    """A Qwen2_5_VLConfig of the real layout at a tiny size (head dim 16: M-RoPE sections 2 + 3 + 3)."""
    from transformers import Qwen2_5_VLConfig

    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, bos_token_id=None,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  patch_size=PATCH_SIZE, spatial_merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE,
                  window_size=56, fullatt_block_indexes=[1], tokens_per_second=2)
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **token_ids(tokenizer))


def tiny_model(tokenizer, seed: int = 0):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration(tiny_config(tokenizer)).eval()


def processor_for(tokenizer, frame_size: int = 56):
    """transformers' Qwen2_5_VLProcessor around `tokenizer`, with Qwen2-VL's image and video processors
    (frames of about `frame_size`² pixels unless a call says otherwise) and CHAT_TEMPLATE."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    sizes = dict(size={"shortest_edge": frame_size ** 2, "longest_edge": frame_size ** 2}, patch_size=PATCH_SIZE,
                 temporal_patch_size=TEMPORAL_PATCH_SIZE, merge_size=MERGE_SIZE)
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**sizes),
                               video_processor=Qwen2VLVideoProcessor(**sizes),
                               tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def save_tiny_qwen25vl(folder: Path, seed: int = 0) -> Path:
    """The tiny model and its processor saved into `folder` like the Hub checkpoint."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_tokenizer()
    model = tiny_model(tokenizer, seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    processor_for(tokenizer).save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to save the model and processor into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = save_tiny_qwen25vl(args.out, args.seed)
    print(f"tiny random Qwen2.5-VL saved in {folder}; use it with DESCRIBER=qwen2.5-vl DESCRIBER_MODEL={folder} "
          f"(or --describer qwen2.5-vl --describer-model {folder})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
