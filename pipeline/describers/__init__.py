"""Describers: how a clip's face moves, in words (geometric, from the landmark tracks; Video-LLaVA), and the filter that removes every emotion word."""
