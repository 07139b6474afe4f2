"""The videollava describer, offline on CPU, through its real loading code.

No Video-LLaVA weights can be downloaded here, so a tiny Video-LLaVA is built from the real
config classes (a 2-layer Llama, a 2-layer CLIP vision tower) with random weights, next to a
real `VideoLlavaProcessor` (a small Llama tokenizer made offline, Video-LLaVA's image and video
processors at 32 px), saved with save_pretrained and loaded back by the describer from that
folder, the way it loads the Hub checkpoint.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.shards.format import make_sample
from pipeline.describers.emotion_filter import filter_emotion
from pipeline.describers.videollava import (PROMPT_FILE, ModelUnavailableError, VideoLlavaDescriber, clean_text,
                                           load_processor, processor_inputs, uniform_frame_indices,
                                           video_token_count)

# The tiny model's builders live in tests/tiny_models.py (test_pipeline and test_full_stack use them too).
from tiny_models import IMAGE_SIZE, NUM_FRAMES, PATCH_SIZE, TOKENS_PER_FRAME, save_tiny_checkpoint, tiny_processor


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-video-llava"))


def _sample(index: int, num_frames: int):
    rng = np.random.default_rng(index)
    base = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    # A bright square drifting across the frames: something that moves, and frames that differ.
    frames = np.repeat(base, num_frames, axis=0)
    for t in range(num_frames):
        frames[t, 20:36, 4 + 3 * t % 40:20 + 3 * t % 40] = 255
    meta = {"dataset": "test", "clip_id": f"clip{index}", "label": "neutral", "partition": "1",
            "source": {"fps": 25.0, "frames": num_frames}}
    return make_sample(f"clip{index}", meta, frames, np.arange(num_frames) / 25.0,
                       np.tile([0, 0, 64, 64], (num_frames, 1)), np.ones(num_frames, bool),
                       np.zeros((num_frames, 68, 2), np.float32), np.ones(num_frames, np.float32))


def test_uniform_frame_indices():
    assert uniform_frame_indices(12, 8).tolist() == [0, 2, 3, 5, 6, 8, 9, 11]
    assert uniform_frame_indices(8, 8).tolist() == list(range(8))
    assert uniform_frame_indices(3, 8).tolist() == [0, 0, 1, 1, 1, 1, 2, 2]
    assert uniform_frame_indices(100, 1).tolist() == [49]
    picked = uniform_frame_indices(250, 8)
    assert picked[0] == 0 and picked[-1] == 249 and np.all(np.diff(picked) > 0)
    with pytest.raises(ValueError):
        uniform_frame_indices(0, 8)


def test_processor_matches_the_models_video_token_rule(tiny_checkpoint):
    from transformers import VideoLlavaConfig, VideoLlavaProcessor, VideoLlavaVideoProcessor

    processor = load_processor(str(tiny_checkpoint), local_files_only=True)
    assert isinstance(processor, VideoLlavaProcessor)
    assert isinstance(processor.video_processor, VideoLlavaVideoProcessor) and processor.patch_size == PATCH_SIZE
    config = VideoLlavaConfig.from_pretrained(tiny_checkpoint)
    count = video_token_count(NUM_FRAMES, IMAGE_SIZE, IMAGE_SIZE, config.vision_config.patch_size)
    assert count == NUM_FRAMES * TOKENS_PER_FRAME == config.video_seq_length

    # Two videos of other sizes than the model's, frames as uint8 RGB; prompts of different lengths.
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 256, (NUM_FRAMES, 64, 80, 3), dtype=np.uint8),
              rng.integers(0, 256, (NUM_FRAMES, 48, 48, 3), dtype=np.uint8)]
    prompts = ["USER: <video>\nDescribe the face. ASSISTANT:", "USER: <video>\nHi. ASSISTANT:"]
    inputs = processor_inputs(processor, prompts, videos, config.vision_config.patch_size)
    assert tuple(inputs["pixel_values_videos"].shape) == (2, NUM_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert inputs["pixel_values_videos"].dtype.is_floating_point
    assert ((inputs["input_ids"] == processor.video_token_id).sum(dim=1) == count).all()
    # Left padding: the shorter prompt starts with masked pad tokens, both end at the last column.
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    pad = processor.tokenizer.pad_token_id
    padded = int((mask[1] == 0).sum())
    assert padded == len(prompts[0]) - len(prompts[1]) > 0      # one token per character in this tokenizer
    assert (ids[1, :padded] == pad).all() and (mask[1, padded:] == 1).all() and (mask[0] == 1).all()
    assert ids[0, 0] == ids[1, padded] == processor.tokenizer.bos_token_id
    assert ids[0, -1] == ids[1, -1]

    with pytest.raises(ValueError, match="exactly one"):
        processor_inputs(processor, ["no video here"], videos[:1], PATCH_SIZE)
    # A processor whose patch size does not fit the model's makes the wrong number of video tokens.
    with pytest.raises(ValueError, match=f"model needs {count}"):
        processor_inputs(tiny_processor(processor.tokenizer, patch_size=8), prompts[:1], videos[:1], PATCH_SIZE)


def test_describe_with_a_tiny_video_llava(tiny_checkpoint):
    describer = VideoLlavaDescriber(model_id=str(tiny_checkpoint), num_frames=NUM_FRAMES, max_new_tokens=12,
                                    batch_size=4, device="cpu")
    samples = [_sample(0, 12), _sample(1, 20), _sample(2, 5)]
    first = describer.describe(samples)
    second = describer.describe(samples)

    assert len(first) == len(samples)
    prompt_sha = hashlib.sha256(PROMPT_FILE.read_bytes()).hexdigest()
    for sample, description in zip(samples, first):
        assert isinstance(description.raw_text, str) and isinstance(description.text, str)
        assert description.raw_text == clean_text(description.raw_text)
        assert description.text == clean_text(filter_emotion(description.raw_text).text)
        record = description.record
        assert record["backend"] == "videollava" and record["model"] == str(tiny_checkpoint)
        assert record["prompt_sha256"] == prompt_sha
        assert record["generation"] == {"do_sample": False, "num_beams": 1, "max_new_tokens": 12,
                                        "num_frames": NUM_FRAMES}
        assert record["dtype"] == "float32"
        assert record["frame_indices"] == uniform_frame_indices(sample.num_frames, NUM_FRAMES).tolist()
        assert len(record["frame_indices"]) == NUM_FRAMES and record["clip_frames"] == sample.num_frames
        assert 1 <= record["generated_tokens"] <= 12 and record["stopped_by"] in ("eos", "max_new_tokens")
        assert isinstance(record["filter_removed"], list)
    # Greedy decoding: the same clips give the same words.
    assert [d.raw_text for d in first] == [d.raw_text for d in second]
    assert [d.record for d in first] == [d.record for d in second]
    # (A batch against single calls, with rows ending at different steps: tests/test_describer_batching.py.)
    assert describer.identity()["prompt_sha256"] == prompt_sha


def test_identity_loads_nothing():
    describer = VideoLlavaDescriber(device="cpu")
    identity = describer.identity()
    assert identity["model"] == "LanguageBind/Video-LLaVA-7B-hf" and identity["generation"]["num_frames"] == 8
    assert describer._model is None and describer._processor is None


def test_reference_setting_uses_the_papers_request_and_a_light_filter(tiny_checkpoint):
    """FineCLIPER's setting: a request for facial changes, and a filter that removes emotion names only."""
    from pipeline.resources import PROMPTS_DIR

    ours = VideoLlavaDescriber(device="cpu")
    reference = VideoLlavaDescriber(model_id=str(tiny_checkpoint), num_frames=NUM_FRAMES, max_new_tokens=8,
                                    device="cpu", setting="reference")
    identity = reference.identity()
    assert identity["setting"] == "reference" and identity["light_filter"] is True
    assert identity["prompt_file"] == "prompts/videollava_instruction_reference.txt"
    assert identity["prompt_sha256"] == hashlib.sha256(
        (PROMPTS_DIR / "videollava_instruction_reference.txt").read_bytes()).hexdigest() != ours.prompt_sha256
    assert ours.identity()["setting"] == "ours" and reference.instruction != ours.instruction
    text = "He displays a surprised expression. His eyes are downcast and he gives a slight smile. The brows rise."
    light, full = filter_emotion(text, light=True).text, filter_emotion(text).text
    assert "surprised" not in light and "smile" not in light and "brows rise" in light
    assert "downcast" in filter_emotion("His eyes are downcast.", light=True).text   # kept: only names go
    assert "downcast" not in full
    described = reference.describe([_sample(0, 12)])[0]
    assert described.text == clean_text(filter_emotion(described.raw_text, light=True).text)
    assert described.record["setting"] == "reference"
    with pytest.raises(ValueError, match="setting"):
        VideoLlavaDescriber(setting="paper")


def test_missing_model_says_what_to_get(tmp_path):
    # conftest sets HF_HUB_OFFLINE=1, so nothing is looked up online.
    describer = VideoLlavaDescriber(model_id="dfer-toolkit-tests/no-such-video-llava", device="cpu")
    with pytest.raises(ModelUnavailableError) as caught:
        describer.describe([_sample(0, 4)])
    message = str(caught.value)
    assert "dfer-toolkit-tests/no-such-video-llava" in message and "downloads are off" in message
    assert "LanguageBind/Video-LLaVA-7B-hf" in message and "HF_HOME" in message and "--describer-model" in message

    folder = tmp_path / "Video-LLaVA-7B-hf"
    with pytest.raises(ModelUnavailableError, match=f"there is no folder {folder}"):
        VideoLlavaDescriber(model_id=str(folder), device="cpu").describe([_sample(0, 4)])
