"""RLHF Studio training: SFT, K-way reward model and PPO-ptx, files in, model directory out.

Importing the package is cheap and torch-free; `training.records` is the only module the
web process uses. The stages live in `training.sft`, `training.reward`, `training.ppo`.
"""
