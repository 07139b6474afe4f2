"""What comes in: the datasets we know, manifests (reading and validating them), and decoding videos and frame folders."""
