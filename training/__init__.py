"""RLHF Studio training: SFT, K-way reward model and PPO-ptx, files in, model directory out.

Importing the package is cheap and torch-free; `training.records` (the exported rows) and
`training.contract` (the stages' settings) are the only modules the web process uses, both
standard library only. The stages live in `training.sft`, `training.reward`, `training.ppo`.
"""
