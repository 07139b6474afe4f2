"""Qwen2.5-VL motion descriptions: a current video LLM beside Video-LLaVA (see pipeline/backends.py).

Each clip's face crops go to Qwen2.5-VL (`Qwen/Qwen2.5-VL-7B-Instruct` by default, or
`Qwen/Qwen2.5-VL-3B-Instruct`, through transformers' `Qwen2_5_VLForConditionalGeneration` and
`Qwen2_5_VLProcessor`) as one video, with the same instruction files, settings (`ours`,
`reference`), emotion filter, greedy batched decoding and description record as Video-LLaVA's
(pipeline/describers/video_llm.py); only the model differs.

Prompt. The checkpoint's own chat template (`processor.apply_chat_template`): one user turn holding
the video and then the instruction, and the assistant's turn opened (`add_generation_prompt`); the
template adds Qwen's default system turn. The record keeps the SHA-256 of the template
(`chat_template_sha256`) beside the instruction's.

Frames and resolution. `num_frames` (16) frames are picked uniformly over the clip, first and last
included, as for Video-LLaVA, and every frame is resized to `frame_size` × `frame_size` (336) px.
Qwen2.5-VL cuts a video into 14-px patches, joins 2 consecutive frames into one temporal patch and
merges 2 × 2 neighbouring patches into one language-model token, so a clip costs
(frames / 2) × (size / 28)² video tokens:

    frames × size   video tokens   one token covers (of the 224-px face crop)
    16 × 224        8 × 8²  =  512    28 × 28 px
    16 × 336        8 × 12² = 1152    18.7 × 18.7 px   (the default)
    16 × 448        8 × 16² = 2048    14 × 14 px
     8 × 336        4 × 12² =  576    18.7 × 18.7 px
    Video-LLaVA: 8 frames × (16² + 1)  = 2056 tokens, one per 14-px patch of a 224-px frame

The crops hold 224 px, so a larger frame brings no new pixels, but each patch then sees a smaller
piece of the face: an eye about 30 px wide in the 224-px crop spans about 2 patches across at 224
and about 3 at 336. 336 is also what the checkpoint's own video processor makes of a 224-px crop: its
smallest frame is 128 × 28 × 28 pixels, so it scales 224 up to 336 by itself; pinning it (minimum
and maximum pixels both 336²) keeps the model in the frame size it was trained with and gives every
clip the same number of tokens. 16 frames are what the trainer samples per clip, and over the
datasets' 1-5 s clips they are 3-16 frames a second, enough to catch the onset and peak of an
expression; 448 px or 32 frames would cost Video-LLaVA's 2056 tokens or more per clip without new
pixels. The frames' real spacing is passed on (`VideoMetadata.fps` = the picked frames' frame rate,
from the clip's timestamps), so Qwen2.5-VL's time-aligned positions follow the clip's real timing;
the record keeps it (`sampled_fps`).

Weights. As Video-LLaVA's: a local folder, or a Hub id fetched and hash-checked by
pipeline/weights.py into the Hugging Face cache (about 17 GB for 7B, 7.5 GB for 3B), checked before
any work, with the same message when missing. `--describer-model` names another checkpoint or a
folder: `python tools/tiny_qwen25vl.py --out DIR` saves a tiny random one of the real classes for
trying the pipeline on a CPU (docs/pipeline.md).
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from pipeline.describers.video_llm import VideoLLMDescriber, check_video_processor

DEFAULT_MODEL_ID = "Qwen/Qwen2.5-VL-7B-Instruct"
MODEL_SIZES = {"Qwen/Qwen2.5-VL-7B-Instruct": "about 17 GB", "Qwen/Qwen2.5-VL-3B-Instruct": "about 7.5 GB"}
DEFAULT_NUM_FRAMES = 16
DEFAULT_FRAME_SIZE = 336
PROMPT_FORMAT = ("the checkpoint's chat template: one user turn holding the video, then the instruction; "
                 "add_generation_prompt")


def video_token_count(num_frames: int, frame_size: int, patch_size: int = 14, merge_size: int = 2,
                      temporal_patch_size: int = 2) -> int:
    """Video tokens of a clip: (frames / temporal patch) × (patches per side / merge)²."""
    temporal = -(-num_frames // temporal_patch_size)
    return temporal * (frame_size // patch_size // merge_size) ** 2


def load_processor(model_id: str, revision: str | None = None, **kwargs):
    """The checkpoint's `Qwen2_5_VLProcessor` (tokenizer, image and video processors, chat template)."""
    from transformers import Qwen2_5_VLProcessor

    processor = Qwen2_5_VLProcessor.from_pretrained(model_id, revision=revision, **kwargs)
    check_video_processor(processor, model_id, "Qwen2.5-VL", pad_fallback="eos_token")
    if not processor.chat_template:
        raise ValueError(f"{model_id} has no chat template (chat_template.json or chat_template.jinja); "
                         "the Qwen2.5-VL describer builds its prompt with it")
    return processor


def sampled_fps(sample, indices: np.ndarray) -> float:
    """The frame rate of the picked frames: their count over their time span (the clip's timestamps),
    else the source's frame rate (25 when unknown)."""
    times = np.asarray(getattr(sample, "timestamps", []), np.float64)
    if len(times) == sample.num_frames and len(indices) > 1:
        span = float(times[indices[-1]] - times[indices[0]])
        if span > 0:
            return (len(indices) - 1) / span
    source = (sample.meta.get("source") or {}).get("fps") if isinstance(sample.meta, dict) else None
    return float(source) if source else 25.0


class QwenVLDescriber(VideoLLMDescriber):
    """Describer backend: Qwen2.5-VL's description of how the face moves, emotion words filtered out."""

    name = "qwen2.5-vl"
    family = "Qwen2.5-VL"
    default_model_id = DEFAULT_MODEL_ID
    default_size = MODEL_SIZES[DEFAULT_MODEL_ID]
    default_num_frames = DEFAULT_NUM_FRAMES
    default_batch_size = 8
    prompt_format = PROMPT_FORMAT

    def __init__(self, model_id: str | None = DEFAULT_MODEL_ID, revision: str | None = None,
                 num_frames: int = DEFAULT_NUM_FRAMES, frame_size: int = DEFAULT_FRAME_SIZE, max_new_tokens: int = 96,
                 batch_size: int = 8, device: str | None = None, dtype: Any = None, model=None, processor=None,
                 setting: str = "ours"):
        super().__init__(model_id=model_id, revision=revision, num_frames=num_frames, max_new_tokens=max_new_tokens,
                         batch_size=batch_size, device=device, dtype=dtype, model=model, processor=processor,
                         setting=setting)
        if frame_size < 1:
            raise ValueError("frame_size must be positive")
        self.frame_size = int(frame_size)
        if "<|" in self.instruction:
            raise ValueError(f"{self.prompt_file} must not contain special tokens (<|...|>); the chat template "
                             "adds the video")

    def download_size(self) -> str:
        return MODEL_SIZES.get(self.model_id, "")

    def load_processor(self, folder: str, **kwargs):
        return load_processor(folder, **kwargs)

    def model_class(self):
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration

    def generation_record(self) -> dict[str, Any]:
        return {**super().generation_record(), "frame_size": self.frame_size}

    def prompt(self) -> str:
        """The instruction in the checkpoint's chat template, with one video placeholder."""
        processor = self.processor
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": self.instruction}]}]
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if prompt.count(processor.video_token) != 1:
            raise ValueError(f"the chat template of {self.model_id} gave {prompt.count(processor.video_token)} "
                             f"{processor.video_token!r} for one video: {prompt!r}")
        return prompt

    def batch_inputs(self, samples: Sequence[Any], indices: list[np.ndarray]) -> tuple[Any, list[dict]]:
        from transformers.video_utils import VideoMetadata

        processor, model = self.processor, self.model
        vision = model.config.vision_config
        patch, merge, temporal = vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
        step = patch * merge
        if self.frame_size % step or self.num_frames % temporal:
            raise ValueError(f"Qwen2.5-VL needs frame_size a multiple of {step} and num_frames a multiple of "
                             f"{temporal}, got {self.frame_size} and {self.num_frames}")
        videos = [s.frames(i) for s, i in zip(samples, indices)]
        rates = [sampled_fps(s, i) for s, i in zip(samples, indices)]
        pixels = self.frame_size ** 2
        options: dict[str, Any] = {}
        if hasattr(type(processor.video_processor), "cap_pixels_per_frame"):
            options["cap_pixels_per_frame"] = False  # the pixel count is pinned below; no cap to apply
        # do_sample_frames=False: the frames were picked already (uniform_frame_indices) and are recorded;
        # minimum = maximum pixels: every frame becomes frame_size × frame_size.
        metadata = [VideoMetadata(total_num_frames=len(v), fps=r) for v, r in zip(videos, rates)]
        inputs = processor(text=[self.prompt()] * len(samples), videos=videos, video_metadata=metadata,
                           do_sample_frames=False, size={"shortest_edge": pixels, "longest_edge": pixels},
                           padding=True, padding_side="left", return_tensors="pt", **options)
        expected = video_token_count(self.num_frames, self.frame_size, patch, merge, temporal)
        grid = [self.num_frames // temporal, self.frame_size // patch, self.frame_size // patch]
        found = (inputs["input_ids"] == processor.video_token_id).sum(dim=1).tolist()
        for sample, video, thw, count in zip(samples, videos, inputs["video_grid_thw"].tolist(), found):
            if thw != grid or count != expected:
                raise ValueError(f"clip {sample.key}: its {video.shape[1]}×{video.shape[2]} frames became a "
                                 f"{thw} grid and {count} video tokens where {grid} and {expected} were wanted "
                                 f"({self.num_frames} frames of {self.frame_size} px; square face crops expected)")
        inputs = inputs.to(model.device)
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(model.dtype)
        template = hashlib.sha256(str(processor.chat_template).encode("utf-8")).hexdigest()
        return inputs, [{"sampled_fps": round(r, 3), "video_tokens": expected, "chat_template_sha256": template}
                        for r in rates]
