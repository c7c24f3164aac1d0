"""Simulated labelers: a pool that works through the real HTTP API, judging by a hidden
preference with calibrated noise, to demo the loop, load-test a deployment and check that
the pipeline aligns a model end to end."""
