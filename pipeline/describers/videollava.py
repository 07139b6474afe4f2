"""Video-LLaVA motion descriptions: the `full` profile's describer (see pipeline/backends.py).

Each clip's face crops go to Video-LLaVA (`LanguageBind/Video-LLaVA-7B-hf` through transformers'
`VideoLlavaForConditionalGeneration`) as one video, with the instruction in
prompts/videollava_instruction.txt; the answer is decoded greedily, tidied, and every
sentence that names or implies an emotion is removed by `pipeline.describers.emotion_filter`.

Frames. `num_frames` (8 by default) frames are picked uniformly over the clip, first and last
frame included, so the model sees the whole movement. Video-LLaVA was trained on 8-frame
videos (its LanguageBind video encoder takes 8 frames), so 8 keeps its inputs in
distribution; each frame costs (224/14)² + 1 = 257 tokens, so 8 frames are 2056 of the
language model's 4096 positions. Clips shorter than `num_frames` repeat frames, so every clip
of a batch has the same number of video tokens.

Prompt. Video-LLaVA's chat format from its model card, "USER: <video>\\n{instruction} ASSISTANT:".
The instruction file is plain text; its whitespace (line breaks included) is collapsed to
single spaces, so it may be wrapped for review; it must not contain "<video>" or "<image>".
The record keeps the SHA-256 of the file's bytes.

Settings. `setting="ours"` (the default) uses the instruction above, which asks for physical
movements only and forbids emotions, and the full emotion filter (emotion words and facial-action
words such as "frown"). `setting="reference"` follows FineCLIPER (its figure of text generation and
refinement): prompts/videollava_instruction_reference.txt (our wording of the paper's
request for a detailed description of the facial changes and the actions they imply) and a light
filter that removes only clauses naming an emotion (prompts/emotion_lexicon_light.txt). Choose
with `--describer-setting` of `make preprocess` / `make describe`.

Preprocessing is transformers' `VideoLlavaProcessor` from the checkpoint: its video processor
resizes, centre-crops and normalises the frames as CLIP does, and each "<video>" of a prompt
becomes one token per patch and class token of every frame; prompts are padded on the left.
Batching (`batch_size`, 4 by default: `--describe-batch-size`), greedy decoding that ends each clip
at its own end-of-sequence token, the description record and the loading of the weights are shared
with the other video-LLM describer, in pipeline/describers/video_llm.py.

Weights. A `model_id` that is a local folder is loaded from it. A Hub id is fetched by
pipeline/weights.py (`fetch_hub_model`: huggingface_hub's `snapshot_download` into the Hugging
Face cache, `HF_HOME`, from `HF_ENDPOINT`; every newly downloaded file hash-checked against the
ETag the Hub gives it) or, with downloads off, found in that cache; the processor and the model
are then loaded from that local snapshot. The pipeline asks for the model (`hub_model`) with
the face models' weight files before any work; when it is missing the error says what to
download and where to put it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pipeline.describers.video_llm import (ModelUnavailableError, VideoLLMDescriber, cached_commit, check_video_processor,
                                           clean_text, read_instruction, uniform_frame_indices)
from pipeline.resources import PROMPTS_DIR

__all__ = ["DEFAULT_MODEL_ID", "PROMPT_FILE", "ModelUnavailableError", "VideoLlavaDescriber", "cached_commit",
           "clean_text", "load_processor", "processor_inputs", "read_instruction", "uniform_frame_indices",
           "video_token_count"]

DEFAULT_MODEL_ID = "LanguageBind/Video-LLaVA-7B-hf"
DEFAULT_NUM_FRAMES = 8
PROMPT_FILE = PROMPTS_DIR / "videollava_instruction.txt"
PROMPT_FORMAT = "USER: {video_token}\n{instruction} ASSISTANT:"
# CLIP's vision tower prepends a class token to the patch tokens, and Video-LLaVA keeps it for
# videos (get_video_features applies no feature-select strategy), so each frame is one token more.
CLIP_EXTRA_TOKENS = 1


def video_token_count(num_frames: int, height: int, width: int, patch_size: int,
                      extra_tokens: int = CLIP_EXTRA_TOKENS) -> int:
    """Video tokens Video-LLaVA expects for a video: per frame, its patches plus the class token."""
    return num_frames * ((height // patch_size) * (width // patch_size) + extra_tokens)


def load_processor(model_id: str, revision: str | None = None, **kwargs):
    """The checkpoint's `VideoLlavaProcessor` (tokenizer, image and video processors), with a pad token."""
    from transformers import VideoLlavaProcessor

    processor = VideoLlavaProcessor.from_pretrained(model_id, revision=revision, **kwargs)
    return check_video_processor(processor, model_id, "Video-LLaVA", pad_fallback="unk_token")


def processor_inputs(processor, prompts: Sequence[str], videos: Sequence[np.ndarray], patch_size: int):
    """Left-padded `input_ids`, `attention_mask` and `pixel_values_videos` (B×T×3×h×w) as torch tensors,
    one prompt (holding one "<video>") per T×H×W×3 uint8 RGB video; checked against the model's
    rule for the number of video tokens (`patch_size` from the model's vision config)."""
    if len(prompts) != len(videos):
        raise ValueError(f"{len(prompts)} prompts for {len(videos)} videos")
    for prompt in prompts:
        if prompt.count(processor.video_token) != 1:
            raise ValueError(f"each prompt needs exactly one {processor.video_token!r}, got {prompt!r}")
    # do_sample_frames=False: the frames were picked already (uniform_frame_indices) and are recorded.
    inputs = processor(text=list(prompts), videos=[np.asarray(v) for v in videos], padding=True,
                       padding_side="left", do_sample_frames=False, return_tensors="pt")
    num_frames, height, width = inputs["pixel_values_videos"].shape[1], *inputs["pixel_values_videos"].shape[3:]
    expected = video_token_count(num_frames, height, width, patch_size)
    found = (inputs["input_ids"] == processor.video_token_id).sum(dim=1).tolist()
    if any(count != expected for count in found):
        raise ValueError(f"the processor made {found} video tokens per prompt where the model needs {expected} "
                         f"({num_frames} frames of {height}×{width} px, patch size {patch_size}, plus the class "
                         f"token); its patch_size ({processor.patch_size}) or num_additional_image_tokens "
                         f"({processor.num_additional_image_tokens}) does not fit the model")
    return inputs


class VideoLlavaDescriber(VideoLLMDescriber):
    """Describer backend: Video-LLaVA's description of how the face moves, emotion words filtered out."""

    name = "videollava"
    family = "Video-LLaVA"
    default_model_id = DEFAULT_MODEL_ID
    default_size = "about 15 GB"
    default_num_frames = DEFAULT_NUM_FRAMES
    default_batch_size = 4
    prompt_format = PROMPT_FORMAT

    def __init__(self, model_id: str | None = DEFAULT_MODEL_ID, revision: str | None = None,
                 num_frames: int = DEFAULT_NUM_FRAMES, max_new_tokens: int = 96, batch_size: int = 4,
                 device: str | None = None, dtype: Any = None, model=None, processor=None, setting: str = "ours"):
        super().__init__(model_id=model_id, revision=revision, num_frames=num_frames, max_new_tokens=max_new_tokens,
                         batch_size=batch_size, device=device, dtype=dtype, model=model, processor=processor,
                         setting=setting)
        if "<video>" in self.instruction or "<image>" in self.instruction:
            raise ValueError(f"{self.prompt_file} must not contain <video> or <image>; the prompt format adds the video")

    def load_processor(self, folder: str, **kwargs):
        return load_processor(folder, **kwargs)

    def model_class(self):
        from transformers import VideoLlavaForConditionalGeneration

        return VideoLlavaForConditionalGeneration

    def prompt(self) -> str:
        return PROMPT_FORMAT.format(video_token=self.processor.video_token, instruction=self.instruction)

    def batch_inputs(self, samples: Sequence[Any], indices: list[np.ndarray]) -> tuple[Any, list[dict]]:
        videos = [s.frames(i) for s, i in zip(samples, indices)]
        model = self.model
        # The model's own device and dtype, which an injected model may choose differently from ours.
        inputs = processor_inputs(self.processor, [self.prompt()] * len(samples), videos,
                                  model.config.vision_config.patch_size).to(model.device)
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(model.dtype)
        return inputs, [{} for _ in samples]
