"""`rlhf-studio simulate loop` (being written)."""
