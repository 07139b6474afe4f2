"""The qwen2.5-vl describer, offline on CPU, through its real loading code.

No Qwen2.5-VL weights can be downloaded here, so tools/tiny_qwen25vl.py's tiny model of the real
classes (a 2-layer vision tower with Qwen's 14-px patches, 2 × 2 merge and 2-frame temporal
patches, a 2-layer language model) and a real `Qwen2_5_VLProcessor` (a byte-level Qwen2 tokenizer
made offline, Qwen2-VL's video processor, a ChatML chat template) are saved with save_pretrained
and loaded back by the describer from that folder, the way it loads the Hub checkpoint.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.describers.emotion_filter import filter_emotion
from pipeline.describers.qwen25vl import QwenVLDescriber, load_processor, sampled_fps, video_token_count
from pipeline.describers.video_llm import ModelUnavailableError, clean_text, uniform_frame_indices
from pipeline.resources import PROMPTS_DIR
from test_videollava_describer import _sample
from tiny_models import tiny_qwen25vl

FRAMES, SIZE = 4, 56   # 2 temporal patches × (56 / 28)² = 8 video tokens: fast on a CPU


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return tiny_qwen25vl().save_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen2.5-vl"))


def test_video_token_count_is_qwens_rule():
    # 2 frames per temporal patch, 14-px patches merged 2 × 2: (frames / 2) × (size / 28)².
    assert video_token_count(16, 336) == 8 * 12 ** 2 == 1152      # the default
    assert video_token_count(16, 224) == 512 and video_token_count(8, 336) == 576
    assert video_token_count(16, 448) == 2048


def test_processor_pads_left_and_makes_the_models_video_tokens(tiny_checkpoint):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor
    from transformers.video_utils import VideoMetadata

    processor = load_processor(str(tiny_checkpoint), local_files_only=True)
    assert isinstance(processor, Qwen2_5_VLProcessor) and processor.chat_template
    config = Qwen2_5_VLConfig.from_pretrained(tiny_checkpoint)
    assert processor.video_token_id == config.video_token_id
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 256, (FRAMES, 64, 64, 3), dtype=np.uint8) for _ in range(2)]
    turn = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the face."}]}]
    long = processor.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
    short = long.replace("Describe the face.", "Hi.")
    pixels = SIZE * SIZE
    inputs = processor(text=[long, short], videos=videos, do_sample_frames=False, padding=True, padding_side="left",
                       video_metadata=[VideoMetadata(total_num_frames=FRAMES, fps=10.0)] * 2,
                       size={"shortest_edge": pixels, "longest_edge": pixels}, return_tensors="pt")
    assert inputs["video_grid_thw"].tolist() == [[FRAMES // 2, SIZE // 14, SIZE // 14]] * 2
    count = video_token_count(FRAMES, SIZE)
    assert ((inputs["input_ids"] == processor.video_token_id).sum(dim=1) == count).all()
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    padded = int((mask[1] == 0).sum())
    assert padded == len(long) - len(short) > 0            # one token per byte in this tokenizer
    assert (ids[1, :padded] == processor.tokenizer.pad_token_id).all() and (mask[1, padded:] == 1).all()
    assert (mask[0] == 1).all() and ids[0, -1] == ids[1, -1]


def test_describe_with_a_tiny_qwen25vl(tiny_checkpoint):
    describer = QwenVLDescriber(model_id=str(tiny_checkpoint), num_frames=FRAMES, frame_size=SIZE, max_new_tokens=8,
                                batch_size=4, device="cpu")
    samples = [_sample(0, 12), _sample(1, 20), _sample(2, 3)]
    first = describer.describe(samples)     # (a batch against single calls: tests/test_describer_batching.py)
    prompt_sha = hashlib.sha256((PROMPTS_DIR / "videollava_instruction.txt").read_bytes()).hexdigest()
    template_sha = hashlib.sha256(describer.processor.chat_template.encode()).hexdigest()
    for sample, description in zip(samples, first):
        assert description.raw_text == clean_text(description.raw_text)
        assert description.text == clean_text(filter_emotion(description.raw_text).text)
        record = description.record
        assert record["backend"] == "qwen2.5-vl" and record["model"] == str(tiny_checkpoint)
        assert record["prompt_sha256"] == prompt_sha and record["chat_template_sha256"] == template_sha
        assert record["setting"] == "ours" and record["light_filter"] is False
        assert record["generation"] == {"do_sample": False, "num_beams": 1, "max_new_tokens": 8,
                                        "num_frames": FRAMES, "frame_size": SIZE}
        assert record["batch_size"] == 4 and record["dtype"] == "float32"
        assert record["video_tokens"] == video_token_count(FRAMES, SIZE)
        assert record["frame_indices"] == uniform_frame_indices(sample.num_frames, FRAMES).tolist()
        assert 1 <= record["generated_tokens"] <= 8 and record["stopped_by"] in ("eos", "max_new_tokens")
    # The picked frames' real spacing: 12 frames at 25 fps, frames 0, 4, 7, 11 -> 3 intervals over 0.44 s.
    assert first[0].record["sampled_fps"] == round(3 / (11 / 25), 3)
    assert sampled_fps(samples[0], np.array([0, 0, 0, 0])) == 25.0      # no time span: the source rate
    # The prompt is the checkpoint's chat template around one video and the instruction.
    prompt = describer.prompt()
    assert prompt.count("<|video_pad|>") == 1 and describer.instruction in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_reference_setting_and_identity(tiny_checkpoint):
    reference = QwenVLDescriber(model_id=str(tiny_checkpoint), num_frames=FRAMES, frame_size=SIZE, max_new_tokens=6,
                                device="cpu", setting="reference")
    identity = reference.identity()
    assert identity["setting"] == "reference" and identity["light_filter"] is True
    assert identity["prompt_file"] == "prompts/videollava_instruction_reference.txt"
    assert reference._model is None and reference._processor is None          # identity loads nothing
    described = reference.describe([_sample(0, 12)])[0]
    assert described.text == clean_text(filter_emotion(described.raw_text, light=True).text)
    default = QwenVLDescriber(device="cpu").identity()
    assert default["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and default["batch_size"] == 8
    assert default["generation"]["num_frames"] == 16 and default["generation"]["frame_size"] == 336
    with pytest.raises(ValueError, match="setting"):
        QwenVLDescriber(setting="paper")


def test_a_frame_size_the_model_cannot_cut_is_refused(tiny_checkpoint):
    describer = QwenVLDescriber(model_id=str(tiny_checkpoint), num_frames=FRAMES, frame_size=50, device="cpu")
    with pytest.raises(ValueError, match="multiple of 28"):
        describer.describe([_sample(0, 8)])


def test_missing_model_says_what_to_get(tmp_path):
    # conftest sets HF_HUB_OFFLINE=1, so nothing is looked up online.
    describer = QwenVLDescriber(model_id="dfer-toolkit-tests/no-such-qwen", device="cpu")
    with pytest.raises(ModelUnavailableError) as caught:
        describer.describe([_sample(0, 4)])
    message = str(caught.value)
    assert "qwen2.5-vl describer" in message and "dfer-toolkit-tests/no-such-qwen" in message
    assert "downloads are off" in message and "Qwen/Qwen2.5-VL-7B-Instruct" in message
    assert "HF_HOME" in message and "--describer-model" in message
    folder = tmp_path / "Qwen2.5-VL-7B-Instruct"
    with pytest.raises(ModelUnavailableError, match=f"there is no folder {folder}"):
        QwenVLDescriber(model_id=str(folder), device="cpu").describe([_sample(0, 4)])


def test_the_pipeline_checks_for_the_model_before_any_work(tmp_path):
    from pipeline.preprocess import describer_hub_models
    from pipeline.weights import MissingWeightsError, check_weights

    models = describer_hub_models("qwen2.5-vl", {"model_id": None})
    assert [m.repo_id for m in models] == ["Qwen/Qwen2.5-VL-7B-Instruct"] and models[0].size == "about 17 GB"
    with pytest.raises(MissingWeightsError, match="Qwen/Qwen2.5-VL-7B-Instruct"):
        check_weights([], hub_models=models)


def test_the_describe_stage_records_it_in_every_clip_and_the_index(tiny_checkpoint, tmp_path):
    """The pipeline's describe stage (as make preprocess / make describe run it, without Ray): each clip's
    description.json and the index's model entry name the backend, the model and the batch size."""
    from pipeline.run.stages import DescribeStage, ShardJob, describe_config, describe_identity
    from pipeline.shards.tar import ShardWriter, read_shard

    samples = [_sample(i, n) for i, n in enumerate([12, 7, 20])]
    with ShardWriter(tmp_path / "fold1-000000.tar") as writer:
        for sample in samples:
            writer.write(sample)
    options = {"model_id": str(tiny_checkpoint), "num_frames": FRAMES, "frame_size": SIZE, "max_new_tokens": 6}
    config = describe_config("qwen2.5-vl", tmp_path, options, gpus=0, batch_size=2)
    assert config.batch_size == 2 and dict(config.options) == options     # the batch size is not an option
    stage = DescribeStage(config)
    stage.setup()
    job = stage.process(ShardJob(name="fold1-000000", partition="fold1",
                                 rows=[{"clip_id": s.key} for s in samples],
                                 work_tar=str(tmp_path / "fold1-000000.tar")))
    written = list(read_shard(job.work_tar))
    assert [s.key for s in written] == [s.key for s in samples] and job.status == {}
    for clip in written:
        record = clip.description_record
        assert record["backend"] == "qwen2.5-vl" and record["model"] == str(tiny_checkpoint)
        assert record["batch_size"] == 2 and record["text"] == clip.description
    index_entry = describe_identity(config)
    assert index_entry["backend"] == "qwen2.5-vl" and index_entry["model"] == str(tiny_checkpoint)
    assert index_entry["batch_size"] == 2 and index_entry["generation"]["frame_size"] == SIZE
