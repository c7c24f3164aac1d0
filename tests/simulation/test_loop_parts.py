"""The loop's bookkeeping without a deployment: waiting on a round's jobs, and finding the
model versions a round made."""

import json
from pathlib import Path

import pytest

from app.evaluation.schemas import Sampling
from simulation import loop
from simulation.judges import LetterRule


class FakeApi:
    """Answers GET /api/v1/jobs?round_id= from a script of states, one per poll."""

    def __init__(self, polls: list[list[dict]]) -> None:
        self.polls = polls

    def jobs(self, round_id):  # type: ignore[no-untyped-def]
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]


def _job(id_, kind, state, error=None):  # type: ignore[no-untyped-def]
    return {"id": id_, "kind": kind, "state": state, "progress": 1.0, "error": error}


def test_wait_for_round_returns_when_every_job_is_done(monkeypatch):
    monkeypatch.setattr(loop.time, "sleep", lambda s: None)
    api = FakeApi([[_job(1, "sft", "running"), _job(2, "rm", "queued")],
                   [_job(1, "sft", "succeeded"), _job(2, "rm", "succeeded")]])
    jobs = loop.wait_for_round(api, 7, timeout=60, quiet=True)  # type: ignore[arg-type]
    assert [j["state"] for j in jobs] == ["succeeded", "succeeded"]


def test_wait_for_round_stops_at_a_failed_job_with_its_error(monkeypatch):
    monkeypatch.setattr(loop.time, "sleep", lambda s: None)
    api = FakeApi([[_job(1, "sft", "succeeded"), _job(2, "rm", "failed", "out of memory"),
                    _job(3, "ppo", "queued")]])
    with pytest.raises(loop.LoopError, match="rm job 2 failed: out of memory"):
        loop.wait_for_round(api, 7, timeout=60, quiet=True)  # type: ignore[arg-type]


def test_the_round_s_models_are_found_by_their_jobs():
    models = [
        {"id": 1, "kind": "base", "job_id": None, "parent_id": None},
        {"id": 2, "kind": "sft", "job_id": 10, "parent_id": 1},
        {"id": 3, "kind": "rm", "job_id": 11, "parent_id": 2},
        {"id": 4, "kind": "policy", "job_id": 12, "parent_id": 2},
        {"id": 5, "kind": "policy", "job_id": 99, "parent_id": 2},  # another round's
    ]
    jobs = [{"id": 10}, {"id": 11}, {"id": 12}]
    policy = loop._model_of(models, jobs, "policy")
    assert policy is not None and policy["id"] == 4
    assert loop._model_of(models, jobs, "rm")["id"] == 3  # type: ignore[index]
    assert loop._sft_of(models, policy)["id"] == 2  # type: ignore[index]
    assert loop._model_of(models, [{"id": 50}], "rm") is None


def test_polling_survives_a_passing_server_error(monkeypatch):
    import httpx

    monkeypatch.setattr(loop.time, "sleep", lambda s: None)
    answers = iter([httpx.Response(500, text="database restarting"),
                    httpx.Response(200, json=[_job(1, "sft", "succeeded")])])
    api = loop.Api("http://testserver", "token")
    api.http = httpx.Client(base_url="http://testserver",
                            transport=httpx.MockTransport(lambda request: next(answers)))
    assert api.jobs(1)[0]["state"] == "succeeded"
    api.http = httpx.Client(base_url="http://testserver", transport=httpx.MockTransport(
        lambda request: httpx.Response(500, text="down")))
    with pytest.raises(loop.LoopError, match="HTTP 500"):
        api.jobs(1)


def test_the_hidden_win_samples_both_sides_as_the_round_s_campaign_does(monkeypatch, tmp_path):
    policy, sft = tmp_path / "policy", tmp_path / "sft"
    for path, config in ((policy, {"max_new_tokens": 32, "temperature": 1.0}), (sft, {})):
        path.mkdir()
        (path / "manifest.json").write_text(json.dumps({"kind": "x", "config": config}))
    sampled = []

    def sampler(path, max_new_tokens=64, seed=0, temperature=1.0):  # type: ignore[no-untyped-def]
        sampled.append((Path(path).name, max_new_tokens, temperature))
        return lambda prompts: ["e" * 5 if Path(path) == policy else "a"] * len(prompts)

    monkeypatch.setattr(loop.evaluate, "policy_sampler", sampler)
    looper = loop.Loop(loop.LoopSettings(url="http://x"), pool=None, api=None,  # type: ignore[arg-type]
                       judge=LetterRule("e"))
    looper._prompts = ["p"] * 4
    assert looper._win(str(policy), str(sft)).rate == 1.0
    looper._win(str(policy), str(sft))  # answers are kept per model and length
    assert sampled == [("policy", 32, Sampling().temperature), ("sft", 32, Sampling().temperature)]
    assert loop.evaluate.rollout_tokens(sft) == 64  # nothing recorded: the default
