"""What the video-LLM describers (Video-LLaVA, Qwen2.5-VL) share: a Hugging Face checkpoint loaded
through pipeline/weights.py, frames picked over the clip, the instruction settings, and batched greedy
decoding that gives every clip of a batch the words it would get alone.

A backend subclasses `VideoLLMDescriber` and says how to load its processor and model and how to turn
a batch of clips into model inputs (`batch_inputs`); everything else is here, so both record the same
description record and fail with the same clear error when the weights are missing.

Batching. A batch is `batch_size` clips (a setting: `--describe-batch-size`). Every clip of a batch
gets the same number of frames at the same resolution, so the same number of video tokens, and the
same prompt; any difference in length would be padded on the left (the processors are called with
`padding_side="left"`), where the attention mask hides it, so the new tokens of every row start at
the same column. Decoding is greedy (`do_sample=False`, one beam, no repetition penalty): a row that
produces an end-of-sequence token is finished and gets pad tokens after it while the others go on;
its answer is cut at its own end (`answer_length`), so a clip's text does not depend on its
neighbours (tests/test_describer_batching.py checks a batch of 4 against 4 single calls).

Settings. `ours` (the default) and `reference` pick the instruction file and the emotion filter; both
backends read the same files, so two describers differ only in the model:
- `ours`: prompts/videollava_instruction.txt (physical movements only, no emotions) and the full
  emotion filter (emotion words and class-suggestive facial-action words such as "frown");
- `reference`: prompts/videollava_instruction_reference.txt (our wording of FineCLIPER's request for a
  detailed description of the facial changes and the actions they imply) and the light filter
  (prompts/emotion_lexicon_light.txt: clauses naming an emotion only).
The instruction's whitespace is collapsed to single spaces; the record keeps the SHA-256 of the
file's bytes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.backends import Description
from pipeline.resources import PROMPTS_DIR
from pipeline.weights import CorruptDownloadError, HubModel, HubModelUnavailable, downloads_allowed, fetch_hub_model

# setting → (instruction file in prompts/, light emotion filter); see "Settings" above
SETTINGS = {"ours": ("videollava_instruction.txt", False), "reference": ("videollava_instruction_reference.txt", True)}
_HEX_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class ModelUnavailableError(RuntimeError):
    """A describer's weights could not be loaded; the message says what to fetch and where to put it."""


# --- frames and text --------------------------------------------------------------------------
def uniform_frame_indices(total: int, count: int) -> np.ndarray:
    """`count` frame indices spread evenly over `total` frames, first and last included (repeats if total < count)."""
    if total < 1 or count < 1:
        raise ValueError(f"need at least one frame to pick from and to pick, got total={total}, count={count}")
    if count == 1:
        return np.array([(total - 1) // 2], np.int64)
    return np.floor(np.linspace(0, total - 1, count) + 0.5).astype(np.int64)


def read_instruction(path: Path) -> tuple[str, str]:
    """(the instruction with its whitespace collapsed, SHA-256 of the file's bytes)."""
    data = Path(path).read_bytes()
    instruction = " ".join(data.decode("utf-8").split())
    if not instruction:
        raise ValueError(f"{path} is empty; it should hold the instruction given to the video LLM")
    return instruction, hashlib.sha256(data).hexdigest()


def clean_text(text: str) -> str:
    """Strip and collapse whitespace (the model breaks lines and indents at will)."""
    return " ".join(text.split())


def filter_emotion(text: str, light: bool = False):
    # Imported on use: the filter is a sibling module with its own word lists in prompts/.
    from pipeline.describers.emotion_filter import filter_emotion as run_filter

    return run_filter(text, light=light)


# --- the checkpoint ---------------------------------------------------------------------------
def is_local_folder(model_id: str) -> bool:
    return Path(model_id).expanduser().is_dir()


def cached_commit(model_id: str, revision: str | None) -> str | None:
    """The commit of `model_id` at `revision` if known without the network: a full hash, or the HF cache's."""
    if revision is not None and _HEX_COMMIT.match(revision):
        return revision
    if is_local_folder(model_id):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(model_id, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 — an id the hub would reject simply has no cached commit
        return None
    # Cached files live at .../snapshots/<commit>/<file>.
    return Path(path).parent.name if isinstance(path, str) else None


def missing_model_message(describer, error: BaseException) -> str:
    """What went wrong loading `describer`'s checkpoint, and the two ways to provide it."""
    model_id, revision, default = describer.model_id, describer.revision, describer.default_model_id
    wanted = model_id if revision is None else f"{model_id} (revision {revision})"
    reason = (str(error).strip().splitlines() or [""])[0]
    lines = [f"The {describer.name} describer could not load the {describer.family} model {wanted}:"]
    if HubModel(model_id).is_folder() and not is_local_folder(model_id):
        lines.append(f"  there is no folder {Path(model_id).expanduser()}")
    else:
        lines.append(f"  {type(error).__name__}: {reason}")
    if not downloads_allowed():
        lines.append("  (downloads are off here: HF_HUB_OFFLINE or DFER_OFFLINE is set)")
    folder = default.rsplit("/", 1)[-1]
    lines += [
        f"It needs the Hugging Face model {default} ({describer.default_size}; model, tokenizer and processor "
        f"files), or another {describer.family} checkpoint in the same format. Either:",
        f"  - on a connected machine run `hf download {default}`, which fills the Hugging Face "
        "cache ($HF_HOME/hub, by default ~/.cache/huggingface/hub); copy that cache here and set HF_HOME "
        "to the folder that holds hub/; or",
        f"  - download it into a folder (`hf download {default} --local-dir /path/to/{folder}`) "
        f"and give that folder as the model id (`--describer-model /path/to/{folder}`).",
    ]
    return "\n".join(lines)


# --- decoding ---------------------------------------------------------------------------------
def check_video_processor(processor, model_id: str, family: str, pad_fallback: str):
    """`processor` as loaded, refused when its tokenizer has no video token (not a `family` checkpoint);
    a missing pad token becomes the tokenizer's `pad_fallback` token (left padding is masked out of
    attention, so any id serves; Llama and Qwen checkpoints often lack one)."""
    tokenizer = processor.tokenizer
    if processor.video_token_id is None or processor.video_token_id == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer of {model_id} has no {processor.video_token!r} token; "
                         f"it is not a {family} tokenizer")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = getattr(tokenizer, pad_fallback)
    return processor


def eos_ids(model, tokenizer) -> set[int]:
    """Every id that ends an answer: the generation config's (one id or a list) and the tokenizer's."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, (list, tuple)) else [configured])
    ids.add(tokenizer.eos_token_id)
    ids.discard(None)
    return {int(i) for i in ids}


def answer_length(tokens: list[int], ends: set[int]) -> tuple[int, str]:
    """(tokens the model generated, the end-of-sequence token included; why it stopped)."""
    for position, token in enumerate(tokens):
        if token in ends:
            return position + 1, "eos"
    return len(tokens), "max_new_tokens"


def greedy_new_tokens(model, inputs, max_new_tokens: int, pad_id: int):
    """Greedy decoding of a left-padded batch: B×N new token ids (CPU), pad after each row's end."""
    import torch

    with torch.inference_mode():
        generated = model.generate(**inputs, do_sample=False, num_beams=1, repetition_penalty=1.0,
                                   max_new_tokens=max_new_tokens, pad_token_id=pad_id)
    # Left padding lines every prompt up to the same length, so the new tokens start at one column.
    return generated[:, inputs["input_ids"].shape[1]:].cpu()


# --- the describer ----------------------------------------------------------------------------
class VideoLLMDescriber:
    """Describer backend over a video LLM from a Hugging Face checkpoint. Subclasses set the class
    attributes below and implement `load_processor`, `model_class` and `batch_inputs`."""

    name = ""                # the backend's name in pipeline/backends.py
    family = ""              # for people: "Video-LLaVA", "Qwen2.5-VL"
    default_model_id = ""
    default_size = ""        # the default checkpoint's download size, for people
    default_num_frames = 8
    default_batch_size = 4
    prompt_format = ""       # how the instruction becomes a prompt, recorded

    def __init__(self, model_id: str | None = None, revision: str | None = None, num_frames: int | None = None,
                 max_new_tokens: int = 96, batch_size: int | None = None, device: str | None = None,
                 dtype: Any = None, model=None, processor=None, setting: str = "ours"):
        num_frames = self.default_num_frames if num_frames is None else num_frames
        batch_size = self.default_batch_size if batch_size is None else batch_size
        if num_frames < 1 or max_new_tokens < 1 or batch_size < 1:
            raise ValueError("num_frames, max_new_tokens and batch_size must be positive")
        if setting not in SETTINGS:
            raise ValueError(f"describer setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
        self.setting = setting
        self.prompt_file = PROMPTS_DIR / SETTINGS[setting][0]
        self.light_filter = SETTINGS[setting][1]
        self.model_id = str(model_id) if model_id else self.default_model_id
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

    # -- what a backend provides ---------------------------------------------------------------
    def load_processor(self, folder: str, **kwargs):
        raise NotImplementedError

    def model_class(self):
        raise NotImplementedError

    def batch_inputs(self, samples: Sequence[Any], indices: list[np.ndarray]) -> tuple[Any, list[dict]]:
        """(the model's inputs for these clips' frames at `indices`, on the model's device and in its
        dtype; one dict per clip of what to add to its record)."""
        raise NotImplementedError

    def generation_record(self) -> dict[str, Any]:
        return {"do_sample": False, "num_beams": 1, "max_new_tokens": self.max_new_tokens,
                "num_frames": self.num_frames}

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
        return HubModel(self.model_id, self.revision, model=f"{self.family} (config, weights, tokenizer, processor)",
                        size=self.download_size())

    def download_size(self) -> str:
        """How big a download the checkpoint is, for people ("" when not known)."""
        return self.default_size if self.model_id == self.default_model_id else ""

    def local_folder(self) -> Path:
        """The folder the checkpoint is loaded from: `model_id` itself, or its snapshot in the Hugging Face
        cache (downloaded and hash-checked first where downloads are allowed)."""
        if self._folder is None:
            try:
                self._folder = fetch_hub_model(self.hub_model())
            except (HubModelUnavailable, CorruptDownloadError) as err:
                raise ModelUnavailableError(missing_model_message(self, err)) from err
        return self._folder

    @property
    def processor(self):
        """The checkpoint's processor (tokenizer, image and video processors)."""
        if self._processor is None:
            folder = self.local_folder()
            try:
                self._processor = self.load_processor(str(folder), local_files_only=True)
            except OSError as err:
                raise ModelUnavailableError(missing_model_message(self, err)) from err
        return self._processor

    def _load_model(self):
        folder = self.local_folder()
        try:
            model = self.model_class().from_pretrained(str(folder), dtype=self.dtype, local_files_only=True)
        except OSError as err:
            raise ModelUnavailableError(missing_model_message(self, err)) from err
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
            "prompt_format": self.prompt_format,
            "generation": self.generation_record(),
            "batch_size": self.batch_size,
            "dtype": str(self._model.dtype if self._model is not None else self.dtype).removeprefix("torch."),
        }

    def describe(self, samples: Sequence[Any]) -> list[Description]:
        identity = self.identity()
        out: list[Description] = []
        for start in range(0, len(samples), self.batch_size):
            out += self._describe_batch(samples[start:start + self.batch_size], identity)
        return out

    def _describe_batch(self, samples: Sequence[Any], identity: dict[str, Any]) -> list[Description]:
        indices = [uniform_frame_indices(s.num_frames, self.num_frames) for s in samples]
        processor, model = self.processor, self.model
        inputs, extras = self.batch_inputs(samples, indices)
        tokenizer = processor.tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        new_tokens = greedy_new_tokens(model, inputs, self.max_new_tokens, pad_id)
        ends = eos_ids(model, tokenizer)
        descriptions = []
        for sample, frame_indices, tokens, extra in zip(samples, indices, new_tokens, extras):
            length, stopped = answer_length(tokens.tolist(), ends)
            raw_text = clean_text(tokenizer.decode(tokens[:length].tolist(), skip_special_tokens=True))
            filtered = filter_emotion(raw_text, light=self.light_filter)
            record = {**identity, **extra, "frame_indices": frame_indices.tolist(),
                      "clip_frames": int(sample.num_frames), "generated_tokens": length, "stopped_by": stopped,
                      "filter_removed": list(filtered.removed)}
            descriptions.append(Description(text=clean_text(filtered.text), raw_text=raw_text, record=record))
        return descriptions
