"""Batching of the video-LLM describers: a batch of 4 clips gives each clip the words 4 single calls give.

For both backends (a tiny random Video-LLaVA and Qwen2.5-VL of the real classes, float32 on the CPU):
the clips differ in length, so their frames repeat differently; one extra end-of-sequence token is
chosen from what the model says, so that some clips of the batch end early (each at its own step, pad
tokens after) while others run to `max_new_tokens` — the case batching gets wrong when a row's end
is not its own.
"""

import numpy as np
import pytest
import torch

from pipeline.describers.video_llm import greedy_new_tokens, uniform_frame_indices
from test_videollava_describer import _sample
from tiny_models import NUM_FRAMES, save_tiny_checkpoint, tiny_qwen25vl

NEW_TOKENS = 10


def _describer(backend: str, folder):
    if backend == "videollava":
        from pipeline.describers.videollava import VideoLlavaDescriber

        return VideoLlavaDescriber(model_id=str(save_tiny_checkpoint(folder)), num_frames=NUM_FRAMES,
                                   max_new_tokens=NEW_TOKENS, batch_size=4, device="cpu")
    from pipeline.describers.qwen25vl import QwenVLDescriber

    return QwenVLDescriber(model_id=str(tiny_qwen25vl().save_tiny_qwen25vl(folder)), num_frames=4, frame_size=56,
                           max_new_tokens=NEW_TOKENS, batch_size=4, device="cpu")


def _first(row: list[int], token: int) -> int | None:
    return row.index(token) if token in row else None


def _early_end(rows: list[list[int]]) -> tuple[int, list[int]]:
    """A token that, made an end-of-sequence token, ends the rows at different steps (some never):
    (the token, each row's answer length with it)."""
    for row in rows:
        for token in row[1:]:
            lengths = [NEW_TOKENS if _first(r, token) is None else _first(r, token) + 1 for r in rows]
            if len(set(lengths)) > 1 and min(lengths) < NEW_TOKENS:
                return token, lengths
    raise AssertionError(f"no token of {rows} ends the rows at different steps")


@pytest.mark.parametrize("backend", ["videollava", "qwen2.5-vl"])
def test_a_batch_of_four_gives_what_four_single_calls_give(backend, tmp_path):
    describer = _describer(backend, tmp_path / backend)
    samples = [_sample(0, 12), _sample(1, 20), _sample(2, 5), _sample(3, 9)]
    indices = [uniform_frame_indices(s.num_frames, describer.num_frames) for s in samples]
    model, tokenizer = describer.model, describer.processor.tokenizer
    inputs, _ = describer.batch_inputs(samples, indices)
    free = greedy_new_tokens(model, inputs, NEW_TOKENS, tokenizer.pad_token_id).tolist()
    token, lengths = _early_end(free)
    configured = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [configured, token] if isinstance(configured, int) else [*configured, token]

    batch = describer.describe(samples)
    assert [d.record["generated_tokens"] for d in batch] == lengths
    assert [d.record["stopped_by"] for d in batch] == ["max_new_tokens" if n == NEW_TOKENS and token not in row
                                                       else "eos" for n, row in zip(lengths, free)]
    # A finished row gets pad tokens after its end while the others go on; before it, nothing changed.
    ended = greedy_new_tokens(model, inputs, NEW_TOKENS, tokenizer.pad_token_id).tolist()
    for row, new, n in zip(free, ended, lengths):
        assert new[:n] == row[:n] and all(t == tokenizer.pad_token_id for t in new[n:])
    assert ended != free                 # at least one row was cut short

    singles = [describer.describe([s])[0] for s in samples]
    assert [d.raw_text for d in singles] == [d.raw_text for d in batch]
    assert [d.record for d in singles] == [d.record for d in batch]
    assert describer.batch_size == 4 and all(d.record["batch_size"] == 4 for d in batch)
    assert np.all([d.record["frame_indices"] == i.tolist() for d, i in zip(batch, indices)])
    assert torch.is_inference_mode_enabled() is False
