"""Small models of the real classes with random weights, for tests that cannot download the real ones.

- The `full` profile's face models at their real architectures (face-alignment's S3FD and FAN
  2DFAN4, facexlib's BiSeNet), seeded, saved with `torch.save` under the real file names
  (pipeline/weights.py), as the libraries' state dicts are.
- A tiny Video-LLaVA: the real config classes (a 2-layer Llama, a 2-layer CLIP vision tower),
  next to a real `VideoLlavaProcessor` (a character-level Llama tokenizer made offline,
  Video-LLaVA's image and video processors at 32 px), saved with save_pretrained like the Hub
  checkpoint.
- A tiny Qwen2.5-VL: tools/tiny_qwen25vl.py's (the script users run to try the qwen2.5-vl
  describer on a CPU), loaded from that file so the tests build exactly what users get.
"""

import importlib.util
import string
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IMAGE_SIZE, PATCH_SIZE, NUM_FRAMES = 32, 16, 8
TOKENS_PER_FRAME = (IMAGE_SIZE // PATCH_SIZE) ** 2 + 1  # patches + CLIP's class token


def save_face_weights(folder: Path, seed: int = 0) -> Path:
    """S3FD, FAN (2DFAN4) and BiSeNet (19 classes) with random weights, under their real file names in `folder`."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN
    from facexlib.parsing.bisenet import BiSeNet

    from pipeline.weights import BISENET, FAN_2D, S3FD

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(FAN(4).state_dict(), folder / FAN_2D.name)
    torch.save(s3fd().state_dict(), folder / S3FD.name)
    torch.save(BiSeNet(num_class=19).state_dict(), folder / BISENET.name)
    return folder


def tiny_tokenizer():
    """A character-level Llama tokenizer (BPE without merges) with Video-LLaVA's special tokens."""
    from transformers import LlamaTokenizer

    chars = sorted(set(string.ascii_letters + string.digits + string.punctuation + "▁"))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tokenizer = LlamaTokenizer(vocab=vocab, merges=[], pad_token="<pad>", add_bos_token=True)
    tokenizer.add_tokens(["<image>", "<video>"], special_tokens=True)
    return tokenizer


def tiny_model(tokenizer):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, VideoLlavaConfig, VideoLlavaForConditionalGeneration

    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    vision = CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=4, projection_dim=32)
    config = VideoLlavaConfig(vision_config=vision, text_config=text,
                              image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                              video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
                              image_seq_length=TOKENS_PER_FRAME - 1, video_seq_length=NUM_FRAMES * TOKENS_PER_FRAME)
    torch.manual_seed(0)
    return VideoLlavaForConditionalGeneration(config).eval()


def tiny_processor(tokenizer, patch_size: int = PATCH_SIZE):
    """transformers' VideoLlavaProcessor around the tokenizer, with Video-LLaVA's processors at IMAGE_SIZE."""
    from transformers import VideoLlavaImageProcessor, VideoLlavaProcessor, VideoLlavaVideoProcessor

    size, crop = {"shortest_edge": IMAGE_SIZE}, {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    return VideoLlavaProcessor(image_processor=VideoLlavaImageProcessor(size=size, crop_size=crop),
                               video_processor=VideoLlavaVideoProcessor(size=size, crop_size=crop),
                               tokenizer=tokenizer, patch_size=patch_size, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1)


def save_tiny_checkpoint(folder: Path) -> Path:
    """A tiny Video-LLaVA saved into `folder` like the Hub checkpoint (config, weights, processor files)."""
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(folder)
    tiny_processor(tokenizer).save_pretrained(folder)
    return folder


def tiny_qwen25vl():
    """tools/tiny_qwen25vl.py as a module (byte_tokenizer, tiny_model, processor_for, save_tiny_qwen25vl, …)."""
    spec = importlib.util.spec_from_file_location("tiny_qwen25vl", ROOT / "tools" / "tiny_qwen25vl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
