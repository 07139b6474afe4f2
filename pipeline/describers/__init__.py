"""Describers: how a clip's face moves, in words (geometric, from the landmark tracks; the video LLMs
Video-LLaVA and Qwen2.5-VL), the filter that removes every emotion word, and the describers'
command-line options."""
