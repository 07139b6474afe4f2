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

Weights. A `model_id` that is a local folder is loaded from it. A Hub id is fetched by
pipeline/weights.py (`fetch_hub_model`: huggingface_hub's `snapshot_download` into the Hugging
Face cache, `HF_HOME`, from `HF_ENDPOINT`; every newly downloaded file hash-checked against the
ETag the Hub gives it) or, with downloads off, found in that cache; the processor and the model
are then loaded from that local snapshot. The pipeline asks for the model (`hub_model`) with
the face models' weight files before any work; when it is missing the error says what to
download and where to put it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.backends import Description
from pipeline.resources import PROMPTS_DIR
from pipeline.weights import CorruptDownloadError, HubModel, HubModelUnavailable, fetch_hub_model

DEFAULT_MODEL_ID = "LanguageBind/Video-LLaVA-7B-hf"
# setting → (instruction file, light emotion filter); see "Settings" above
SETTINGS = {"ours": ("videollava_instruction.txt", False), "reference": ("videollava_instruction_reference.txt", True)}
DEFAULT_NUM_FRAMES = 8
PROMPT_FILE = PROMPTS_DIR / "videollava_instruction.txt"
PROMPT_FORMAT = "USER: {video_token}\n{instruction} ASSISTANT:"
# CLIP's vision tower prepends a class token to the patch tokens, and Video-LLaVA keeps it for
# videos (get_video_features applies no feature-select strategy), so each frame is one token more.
CLIP_EXTRA_TOKENS = 1
_HEX_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class ModelUnavailableError(RuntimeError):
    """The Video-LLaVA weights could not be loaded; the message says what to fetch and where to put it."""


def uniform_frame_indices(total: int, count: int) -> np.ndarray:
    """`count` frame indices spread evenly over `total` frames, first and last included (repeats if total < count)."""
    if total < 1 or count < 1:
        raise ValueError(f"need at least one frame to pick from and to pick, got total={total}, count={count}")
    if count == 1:
        return np.array([(total - 1) // 2], np.int64)
    return np.floor(np.linspace(0, total - 1, count) + 0.5).astype(np.int64)


def read_instruction(path: Path = PROMPT_FILE) -> tuple[str, str]:
    """(the instruction with its whitespace collapsed, SHA-256 of the file's bytes)."""
    data = Path(path).read_bytes()
    instruction = " ".join(data.decode("utf-8").split())
    if not instruction:
        raise ValueError(f"{path} is empty; it should hold the instruction given to Video-LLaVA")
    return instruction, hashlib.sha256(data).hexdigest()


def clean_text(text: str) -> str:
    """Strip and collapse whitespace (the model breaks lines and indents at will)."""
    return " ".join(text.split())


def video_token_count(num_frames: int, height: int, width: int, patch_size: int,
                      extra_tokens: int = CLIP_EXTRA_TOKENS) -> int:
    """Video tokens Video-LLaVA expects for a video: per frame, its patches plus the class token."""
    return num_frames * ((height // patch_size) * (width // patch_size) + extra_tokens)


def _filter_emotion(text: str, light: bool = False):
    # Imported on use: the filter is a sibling module with its own word lists in prompts/.
    from pipeline.describers.emotion_filter import filter_emotion

    return filter_emotion(text, light=light)


def _offline() -> bool:
    # The project's DFER_OFFLINE switch as well as HF_HUB_OFFLINE, which transformers honours itself.
    from pipeline.weights import downloads_allowed

    return not downloads_allowed()


def _is_local_folder(model_id: str) -> bool:
    return Path(model_id).expanduser().is_dir()


def cached_commit(model_id: str, revision: str | None) -> str | None:
    """The commit of `model_id` at `revision` if known without the network: a full hash, or the HF cache's."""
    if revision is not None and _HEX_COMMIT.match(revision):
        return revision
    if _is_local_folder(model_id):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(model_id, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 — an id the hub would reject simply has no cached commit
        return None
    # Cached files live at .../snapshots/<commit>/<file>.
    return Path(path).parent.name if isinstance(path, str) else None


def missing_model_message(model_id: str, revision: str | None, error: BaseException) -> str:
    wanted = model_id if revision is None else f"{model_id} (revision {revision})"
    reason = (str(error).strip().splitlines() or [""])[0]
    lines = [f"The videollava describer could not load the Video-LLaVA model {wanted}:"]
    if HubModel(model_id).is_folder() and not _is_local_folder(model_id):
        lines.append(f"  there is no folder {Path(model_id).expanduser()}")
    else:
        lines.append(f"  {type(error).__name__}: {reason}")
    if _offline():
        lines.append("  (downloads are off here: HF_HUB_OFFLINE or DFER_OFFLINE is set)")
    lines += [
        f"It needs the Hugging Face model {DEFAULT_MODEL_ID} (about 15 GB; model, tokenizer and "
        "preprocessor_config.json), or another Video-LLaVA checkpoint in the same format. Either:",
        f"  - on a connected machine run `hf download {DEFAULT_MODEL_ID}`, which fills the Hugging Face "
        "cache ($HF_HOME/hub, by default ~/.cache/huggingface/hub); copy that cache here and set HF_HOME "
        "to the folder that holds hub/; or",
        f"  - download it into a folder (`hf download {DEFAULT_MODEL_ID} --local-dir /path/to/Video-LLaVA-7B-hf`) "
        "and give that folder as the model id (`--describer-model /path/to/Video-LLaVA-7B-hf`).",
    ]
    return "\n".join(lines)


def load_processor(model_id: str, revision: str | None = None, **kwargs):
    """The checkpoint's `VideoLlavaProcessor` (tokenizer, image and video processors), with a pad token."""
    from transformers import VideoLlavaProcessor

    processor = VideoLlavaProcessor.from_pretrained(model_id, revision=revision, **kwargs)
    tokenizer = processor.tokenizer
    if processor.video_token_id is None or processor.video_token_id == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer of {model_id} has no {processor.video_token!r} token; "
                         "it is not a Video-LLaVA tokenizer")
    if tokenizer.pad_token is None:
        # Left padding is masked out of attention, so any id serves; Llama checkpoints often lack one.
        tokenizer.pad_token = tokenizer.unk_token
    return processor


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


class VideoLlavaDescriber:
    """Describer backend: Video-LLaVA's description of how the face moves, emotion words filtered out."""

    name = "videollava"

    def __init__(self, model_id: str | None = DEFAULT_MODEL_ID, revision: str | None = None,
                 num_frames: int = DEFAULT_NUM_FRAMES, max_new_tokens: int = 96, batch_size: int = 4,
                 device: str | None = None, dtype: Any = None, model=None, processor=None, setting: str = "ours"):
        if num_frames < 1 or max_new_tokens < 1 or batch_size < 1:
            raise ValueError("num_frames, max_new_tokens and batch_size must be positive")
        if setting not in SETTINGS:
            raise ValueError(f"describer setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
        self.setting = setting
        self.prompt_file = PROMPTS_DIR / SETTINGS[setting][0]
        self.light_filter = SETTINGS[setting][1]
        self.model_id = str(model_id) if model_id else DEFAULT_MODEL_ID
        self.revision = revision
        self.num_frames = int(num_frames)
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self._device = device
        self._dtype = dtype
        self._model = model
        self._processor = processor
        self._folder: Path | None = None
        self.instruction, self.prompt_sha256 = read_instruction(self.prompt_file)
        if "<video>" in self.instruction or "<image>" in self.instruction:
            raise ValueError(f"{self.prompt_file} must not contain <video> or <image>; the prompt format adds the video")

    # -- model ---------------------------------------------------------------------------------

    @property
    def device(self) -> str:
        import torch

        return self._device or ("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def dtype(self):
        import torch

        if self._dtype is None:
            # bf16 halves a 7B model's memory on GPU; CPUs run float32 far better than bf16.
            return torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        return getattr(torch, self._dtype) if isinstance(self._dtype, str) else self._dtype

    @property
    def model(self):
        if self._model is None:
            self._model = self._load_model()
        return self._model

    def hub_model(self) -> HubModel:
        """The model as pipeline/weights.py fetches it (a Hub id and revision, or a local folder)."""
        return HubModel(self.model_id, self.revision, model="Video-LLaVA (config, weights, tokenizer, processor)",
                        size="about 15 GB" if self.model_id == DEFAULT_MODEL_ID else "")

    def local_folder(self) -> Path:
        """The folder the checkpoint is loaded from: `model_id` itself, or its snapshot in the Hugging Face
        cache (downloaded and hash-checked first where downloads are allowed)."""
        if self._folder is None:
            try:
                self._folder = fetch_hub_model(self.hub_model())
            except (HubModelUnavailable, CorruptDownloadError) as err:
                raise ModelUnavailableError(missing_model_message(self.model_id, self.revision, err)) from err
        return self._folder

    @property
    def processor(self):
        """The checkpoint's `transformers.VideoLlavaProcessor`."""
        if self._processor is None:
            folder = self.local_folder()
            try:
                self._processor = load_processor(str(folder), local_files_only=True)
            except OSError as err:
                raise ModelUnavailableError(missing_model_message(self.model_id, self.revision, err)) from err
        return self._processor

    def _load_model(self):
        from transformers import VideoLlavaForConditionalGeneration

        folder = self.local_folder()
        try:
            model = VideoLlavaForConditionalGeneration.from_pretrained(str(folder), dtype=self.dtype,
                                                                       local_files_only=True)
        except OSError as err:
            raise ModelUnavailableError(missing_model_message(self.model_id, self.revision, err)) from err
        return model.to(self.device).eval()

    # -- Describer -----------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """Model, revision (the commit when known), prompt hash and generation settings; loads nothing."""
        return {
            "backend": self.name,
            "model": self.model_id,
            "revision": cached_commit(self.model_id, self.revision) or self.revision,
            "setting": self.setting,
            "prompt_file": f"prompts/{self.prompt_file.name}",
            "light_filter": self.light_filter,
            "prompt_sha256": self.prompt_sha256,
            "prompt_format": PROMPT_FORMAT,
            "generation": {"do_sample": False, "num_beams": 1, "max_new_tokens": self.max_new_tokens,
                           "num_frames": self.num_frames},
            "dtype": str(self._model.dtype if self._model is not None else self.dtype).removeprefix("torch."),
        }

    def prompt(self) -> str:
        return PROMPT_FORMAT.format(video_token=self.processor.video_token, instruction=self.instruction)

    def describe(self, samples: Sequence[Any]) -> list[Description]:
        identity = self.identity()
        out: list[Description] = []
        for start in range(0, len(samples), self.batch_size):
            out += self._describe_batch(samples[start:start + self.batch_size], identity)
        return out

    def _describe_batch(self, samples: Sequence[Any], identity: dict[str, Any]) -> list[Description]:
        import torch

        indices = [uniform_frame_indices(s.num_frames, self.num_frames) for s in samples]
        videos = [s.frames(i) for s, i in zip(samples, indices)]
        processor, model = self.processor, self.model
        # The model's own device and dtype, which an injected model may choose differently from ours.
        inputs = processor_inputs(processor, [self.prompt()] * len(samples), videos,
                                  model.config.vision_config.patch_size).to(model.device)
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(model.dtype)
        pad_id = processor.tokenizer.pad_token_id
        with torch.inference_mode():
            generated = model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens,
                                       pad_token_id=pad_id if pad_id is not None else processor.tokenizer.eos_token_id)
        # Left padding lines every prompt up to the same length, so the new tokens start at one column.
        new_tokens = generated[:, inputs["input_ids"].shape[1]:].cpu()
        eos_ids = _eos_ids(model, processor.tokenizer)
        descriptions = []
        for sample, frame_indices, tokens in zip(samples, indices, new_tokens):
            length, stopped = _answer_length(tokens.tolist(), eos_ids)
            raw_text = clean_text(processor.tokenizer.decode(tokens[:length].tolist(), skip_special_tokens=True))
            filtered = _filter_emotion(raw_text, light=self.light_filter)
            record = {**identity, "frame_indices": frame_indices.tolist(), "clip_frames": int(sample.num_frames),
                      "generated_tokens": length, "stopped_by": stopped,
                      "filter_removed": list(filtered.removed)}
            descriptions.append(Description(text=clean_text(filtered.text), raw_text=raw_text, record=record))
        return descriptions


def _eos_ids(model, tokenizer) -> set[int]:
    """Every id that ends an answer: the generation config's (one id or a list) and the tokenizer's."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, (list, tuple)) else [configured])
    ids.add(tokenizer.eos_token_id)
    ids.discard(None)
    return {int(i) for i in ids}


def _answer_length(tokens: list[int], eos_ids: set[int]) -> tuple[int, str]:
    """(tokens the model generated, the end-of-sequence token included; why it stopped)."""
    for position, token in enumerate(tokens):
        if token in eos_ids:
            return position + 1, "eos"
    return len(tokens), "max_new_tokens"
