"""`rlhf-studio simulate loop`: the whole loop through the real app, round after round.

    simulated feedback → POST /api/v1/rounds {"promote": true, "generate": {...}}
    → poll GET /api/v1/jobs?round_id= until every job is done
    → the pool ranks the rank tasks made from the new policy's samples → next round

After each round it prints (and reports) what PAPER.md cares about, judged where it can be
by the hidden preference the labelers follow:

- the labelers' pairwise agreement on the round's new rank tasks;
- the new reward model's accuracy on those rankings, which it was not trained on: against
  the labelers' (noisy) order and against the hidden preference, beside the ceilings (the
  labelers' agreement with each other, and their own accuracy against the hidden order);
- the new policy's win rate against the SFT model under the hidden preference on test
  prompts (one sample each), and against the previous round's policy;
- KL to SFT and the held-out LM loss of the policy and of SFT (from the PPO job's metrics);
  with --ptx-compare, also a plain-PPO policy (ptx_coef 0) from the same SFT and RM.

Model directories are read from the paths `GET /api/v1/models` gives, so this runs beside
the deployment's model storage (torch loads here only).
"""

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import typer

from app import store
from app.evaluation.schemas import Sampling
from simulation import evaluate
from simulation.cli import (
    ADMIN_TOKEN,
    JUDGE_HELP,
    URL,
    make_accounts,
    run_pool,
    simulate_cli,
    wait_until_up,
)
from simulation.judges import Judge, make_judge
from simulation.pool import Pool, PoolSettings
from simulation.report import accuracy_vs, pooled_agreement

TERMINAL = {"succeeded", "failed", "cancelled"}
GET_ATTEMPTS = 6
CAMPAIGN_TEMPERATURE = Sampling().temperature  # a campaign's default sampling
HOLD_ACTIONS = ("dismiss", "promote")  # what a researcher may do with a round the watch held


class LoopError(RuntimeError):
    """The loop cannot go on; the message says why."""


@dataclass
class LoopSettings:
    url: str
    rounds: int = 1
    labelers: int = 8
    judge: str = "letter:e"
    agreement: float = 0.73
    k: int = 4  # outputs per generated rank task
    n_prompts: int = 64  # prompts sampled for new rank tasks each round
    overlap: int = 2
    eval_prompts: int = 100  # test prompts for the win rates
    config: dict[str, Any] = field(default_factory=dict)  # per-stage overrides
    ptx_compare: bool = False
    round_timeout: float = 6 * 3600
    seed: int = 0
    evaluate: int = 0  # test prompts in each round's blind campaign (0: no campaign)
    promote: bool | str = True  # True, or "if_better": only once the campaign says so
    # A round the watch held for a person: the simulated researcher dismisses it (trusting
    # the watch) or promotes it (confirming it); either way the next round can start.
    on_hold: str = "dismiss"


class Api:
    """The researcher's side of the loop API (DESIGN.md, "Contracts of the loop")."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"})

    def _json(self, resp: httpx.Response, what: str) -> Any:
        if not resp.is_success:
            detail = resp.text[:500]
            try:
                detail = str(resp.json().get("detail", detail))
            except ValueError:
                pass
            raise LoopError(f"{what}: HTTP {resp.status_code}: {detail}")
        return resp.json()

    def _get(self, url: str, what: str, **params: Any) -> Any:
        """A GET, again after a 5xx or a broken connection (a loop polls for hours: a
        database restart must not end it)."""
        for attempt in range(GET_ATTEMPTS):
            try:
                resp = self.http.get(url, params=params)
            except httpx.HTTPError as exc:
                if attempt == GET_ATTEMPTS - 1:
                    raise LoopError(f"{what}: {type(exc).__name__}: {exc}") from exc
            else:
                if resp.status_code < 500 or attempt == GET_ATTEMPTS - 1:
                    return self._json(resp, what)
            time.sleep(min(30.0, 2.0 * 2**attempt))
        raise AssertionError("unreachable")

    def start_round(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._json(self.http.post("/api/v1/rounds", json=body), "start a round"))

    def decide_held(self, round_id: Any, action: str) -> dict[str, Any]:
        """Promote or dismiss by hand a round that waits for a person."""
        if action not in HOLD_ACTIONS:
            raise LoopError(f"a held round is promoted or dismissed, not {action!r}")
        resp = self.http.post(f"/api/v1/rounds/{round_id}/{action}")
        return dict(self._json(resp, f"{action} held round {round_id}"))

    def jobs(self, round_id: Any) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/jobs", "list the round's jobs", round_id=round_id))

    def models(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/models", "list models"))

    def test_prompts(self, n: int) -> list[str]:
        page = self._get("/api/v1/prompts", "list test prompts", split="test", limit=n)
        return [p["text"] for p in page["items"]]

    def round(self, round_id: Any) -> dict[str, Any]:
        return dict(self._get(f"/api/v1/rounds/{round_id}", "read the round"))

    def results(self, evaluation_id: Any) -> dict[str, Any]:
        return dict(self._get(f"/api/v1/evaluations/{evaluation_id}/results",
                              "read a campaign's results"))

    def loop_rows(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/loop", "read the loop").get("rounds", []))

    def agreement(self) -> dict[str, Any] | None:
        resp = self.http.get("/api/v1/agreement/summary", params={"kind": "rank"})
        return dict(resp.json()) if resp.is_success else None


def _show_jobs(progress: Any, bars: dict[Any, Any], jobs: list[dict[str, Any]]) -> None:
    """A progress bar per job (added the first time it is seen), showing its state."""
    for job in jobs:
        if job["id"] not in bars:
            bars[job["id"]] = progress.add_task(job["kind"], total=1.0)
        progress.update(bars[job["id"]], completed=job.get("progress") or 0,
                        description=f"{job['kind']} {job['state']}")


def _raise_on_failure(jobs: list[dict[str, Any]]) -> None:
    """LoopError naming every failed or cancelled job, with its error."""
    failed = [j for j in jobs if j["state"] in ("failed", "cancelled")]
    if failed:
        raise LoopError("; ".join(f"{j['kind']} job {j['id']} {j['state']}: "
                                  f"{j.get('error') or 'no error given'}" for j in failed))


def wait_for_round(api: Api, round_id: Any, timeout: float, quiet: bool) -> list[dict[str, Any]]:
    """Poll the round's jobs until every one is done; its jobs, or LoopError on a failure."""
    from rich.progress import Progress

    from app.console import err

    deadline = time.monotonic() + timeout
    with Progress(console=err, disable=quiet) as progress:
        bars: dict[Any, Any] = {}
        while True:
            jobs = api.jobs(round_id)
            _show_jobs(progress, bars, jobs)
            _raise_on_failure(jobs)
            if jobs and all(j["state"] in TERMINAL for j in jobs):
                return jobs
            if time.monotonic() > deadline:
                raise LoopError(f"round {round_id} did not finish in {timeout:.0f} s")
            time.sleep(2.0)


def _model_of(models: list[dict[str, Any]], jobs: list[dict[str, Any]],
              kind: str) -> dict[str, Any] | None:
    """The model version of this kind one of the round's jobs made."""
    job_ids = {j["id"] for j in jobs}
    made = [m for m in models if m.get("kind") == kind and m.get("job_id") in job_ids]
    return max(made, key=lambda m: m["id"]) if made else None


def _path(model: dict[str, Any] | None) -> str | None:
    if model is None:
        return None
    path = model.get("path") or (model.get("metrics") or {}).get("path")
    if path and store.is_url(str(path)):  # read through this machine's cache, if it can
        try:
            return store.localize(str(path), sha256=model.get("sha256"))
        except store.StoreError:
            return None
    return str(path) if path and Path(path).is_dir() else None


def _sft_of(models: list[dict[str, Any]], policy: dict[str, Any] | None) -> dict[str, Any] | None:
    """The SFT model a policy was trained from (its parent), else the newest SFT model."""
    by_id = {m["id"]: m for m in models}
    parent = by_id.get(policy.get("parent_id")) if policy else None
    if parent is not None and parent.get("kind") == "sft":
        return parent
    sfts = [m for m in models if m.get("kind") == "sft"]
    return max(sfts, key=lambda m: m["id"]) if sfts else None


class Loop:
    """Rounds of feedback and training; `rows` holds each round's measures."""

    def __init__(self, settings: LoopSettings, pool: Pool, api: Api, judge: Judge,
                 quiet: bool = False) -> None:
        self.settings, self.pool, self.api, self.judge = settings, pool, api, judge
        self.quiet = quiet
        self.rows: list[dict[str, Any]] = []
        # (model path, max new tokens) -> answers to the test prompts
        self._answers: dict[tuple[str, int], list[str]] = {}
        self._prompts: list[str] = []

    def feedback(self) -> None:
        """The pool works the queue until it is empty."""
        asyncio.run(run_pool(self.pool, quiet=self.quiet, revoke_tokens=False))

    def round(self, n: int, previous_policy: str | None) -> dict[str, Any]:
        """One round: train, promote, generate; then the pool ranks the new tasks."""
        s = self.settings
        body: dict[str, Any] = {"promote": s.promote, "generate": {
            "k": s.k, "n_prompts": s.n_prompts, "overlap": s.overlap}}
        if s.evaluate:
            body["evaluate"] = {"n_prompts": s.evaluate, "overlap": 1, "judges": "all"}
        if s.config:
            body["config"] = s.config
        started = self.api.start_round(body)
        round_id = started["round_id"]
        if not self.quiet:
            for warning in started.get("warnings") or []:  # e.g. it repeats an earlier round
                print(f"round {round_id}: {warning}", flush=True)
        jobs = wait_for_round(self.api, round_id, s.round_timeout, self.quiet)
        self.feedback()  # the new policy's samples ranked, or its campaign judged
        if s.evaluate:
            jobs = self._decided(round_id)
            self.feedback()  # the samples of a policy the campaign promoted, ranked
        row: dict[str, Any] = {"round": n, "round_id": round_id,
                               "jobs": {j["kind"]: j["state"] for j in jobs},
                               "warnings": list(started.get("warnings") or [])}
        row.update(self._measure(jobs, previous_policy))
        if s.evaluate:
            row.update(self._judged(round_id, (row.get("models") or {}).get("policy")))
        if s.ptx_compare:
            row["plain_ppo"] = self._plain_ppo()
        return row

    def _decided(self, round_id: Any) -> list[dict[str, Any]]:
        """Judge the round's campaign until the round is decided (a round the watch held is
        promoted or dismissed as settings.on_hold says, as its researcher would), then wait
        for what the decision started."""
        deadline = time.monotonic() + self.settings.round_timeout
        while time.monotonic() < deadline:
            rnd = self.api.round(round_id)
            held = (rnd.get("decision") or {}).get("action") == "held"
            if held and rnd["state"] == "awaiting_judgment":
                self.api.decide_held(round_id, self.settings.on_hold)
            if held or rnd["state"] != "awaiting_judgment":
                return wait_for_round(self.api, round_id, self.settings.round_timeout,
                                      self.quiet)
            self.feedback()
            time.sleep(2.0)
        raise LoopError(f"round {round_id} was not decided in {self.settings.round_timeout:.0f} s")

    def _judged(self, round_id: Any, policy_id: Any) -> dict[str, Any]:
        """What people said in the round's campaigns, the decision, and the watch."""
        rnd = self.api.round(round_id)
        out: dict[str, Any] = {"decision": rnd.get("decision"), "round_state": rnd["state"]}
        for key, evaluation_id in (rnd.get("evaluations") or {}).items():
            if evaluation_id is None:
                continue
            rows = self.api.results(evaluation_id).get("results", [])
            mine = next((r for r in rows if r.get("model_id") == policy_id), None)
            if mine is not None:
                out[f"campaign_{key}"] = {k: mine.get(k) for k in ("win_rate", "ci95", "n",
                                                                   "ties")}
        watched = next((r for r in self.api.loop_rows() if r.get("round_id") == round_id), {})
        out["watch"] = (watched.get("watch") or {}).get("flags", [])
        # the round's RM on the pairs people judged (the watch reads it beside them)
        out["rm_on_pairs"] = {key: (figure or {}).get("rm_win_rate") for key, figure in
                              (watched.get("human") or {}).items()}
        return out

    def _measure(self, jobs: list[dict[str, Any]], previous: str | None) -> dict[str, Any]:
        """The round's figures: agreement, the reward model's accuracy, KL, LM loss and the
        policy's win rates (against its SFT and the previous policy)."""
        tally = self.pool.tally
        agreement, n_comparisons = pooled_agreement(tally.rankings)
        models = self.api.models()
        rm, policy = _model_of(models, jobs, "rm"), _model_of(models, jobs, "policy")
        sft = _sft_of(models, policy)
        out: dict[str, Any] = {
            "agreement": agreement, "n_comparisons": n_comparisons,
            "labelers_vs_hidden": accuracy_vs(tally.truth, tally.honest_rankings),
            "server_agreement": (self.api.agreement() or {}).get("pairwise_agreement"),
            "models": {k: (m or {}).get("id") for k, m in
                       (("sft", sft), ("rm", rm), ("policy", policy))},
        }
        rm_path = _path(rm)
        if rm_path and tally.rankings:
            out["rm"] = self._rm_accuracy(rm_path)
        out["rm_val_accuracy"] = ((rm or {}).get("metrics") or {}).get("val_accuracy")
        metrics = (policy or {}).get("metrics") or {}
        out["kl"] = metrics.get("kl")  # in training (the kept step's rollouts)
        out["test_kl"] = metrics.get("test_kl")  # on test prompts: what the watch bounds
        out["lm_loss"] = {"policy": metrics.get("heldout_lm_loss"),
                          "sft": metrics.get("initial_heldout_lm_loss")}
        out["policy_path"] = _path(policy)
        out.update(self._wins(out["policy_path"], _path(sft), previous))
        return out

    def _rm_accuracy(self, rm_path: str) -> dict[str, float | None]:
        """The reward model's accuracy on the pool's rankings, against the labels and the
        hidden preference."""
        tally = self.pool.tally
        prompts = {tid: tally.texts[tid][0] for tid in tally.rankings}
        texts = {tid: tally.texts[tid][1] for tid in tally.rankings}
        return evaluate.rm_accuracy(evaluate.load_rm(rm_path), prompts, texts,
                                    tally.rankings, tally.truth)

    def _wins(self, policy_path: str | None, sft_path: str | None,
              previous: str | None) -> dict[str, Any]:
        """The policy's win rates against its SFT and against the previous policy (when
        there is one and it differs); {} without a policy or an SFT."""
        out: dict[str, Any] = {}
        if policy_path and sft_path:
            out["win_vs_sft"] = self._win(policy_path, sft_path).to_json()
            if previous and previous != policy_path:
                out["win_vs_previous"] = self._win(policy_path, previous).to_json()
        return out

    def _win(self, a: str, b: str) -> evaluate.WinRate:
        if not self._prompts:
            self._prompts = self.api.test_prompts(self.settings.eval_prompts)
            if not self._prompts:
                raise LoopError("no test prompts to measure win rates on: import prompts so "
                                "that some fall in the test split")
        # Sampled as the round's campaign samples them, so that the hidden rule reads what
        # people are shown: the policies' rollout length and the campaign's temperature.
        tokens = evaluate.rollout_tokens(a, b)
        for path in (a, b):
            if (path, tokens) not in self._answers:
                self._answers[path, tokens] = evaluate.policy_sampler(
                    path, tokens, seed=self.settings.seed, temperature=CAMPAIGN_TEMPERATURE)(
                    self._prompts)
        return evaluate.win_rate(self.judge, self._prompts, self._answers[a, tokens],
                                 self._answers[b, tokens])

    def _plain_ppo(self) -> dict[str, Any]:
        """A plain-PPO policy (ptx_coef 0) from the same SFT and RM, not promoted: its
        held-out LM loss beside PPO-ptx's (the alignment tax)."""
        config = {**self.settings.config, "ppo": {**self.settings.config.get("ppo", {}),
                                                  "ptx_coef": 0.0}}
        started = self.api.start_round({"stages": ["ppo"], "config": config, "promote": False})
        jobs = wait_for_round(self.api, started["round_id"], self.settings.round_timeout,
                              self.quiet)
        policy = _model_of(self.api.models(), jobs, "policy")
        metrics = (policy or {}).get("metrics") or {}
        return {"model_id": (policy or {}).get("id"), "kl": metrics.get("kl"),
                "lm_loss": metrics.get("heldout_lm_loss")}


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, dict) and "win_rate" in value:
        if value["win_rate"] is None or not value.get("ci95"):
            return f"n/a (n={value.get('n') or 0})"
        lo, hi = value["ci95"]
        return f"{value['win_rate']:.0%} [{lo:.0%}, {hi:.0%}] n={value['n']}"
    return f"{value:.1%}" if pct else f"{value:.3f}"


def print_round(row: dict[str, Any]) -> None:
    """The round's measures as a table."""
    from rich.table import Table

    from app.console import console

    table = Table(title=f"round {row['round']}", show_header=False)
    rm = row.get("rm") or {}
    table.add_row("labelers' agreement", f"{_fmt(row['agreement'], True)} over "
                  f"{row['n_comparisons']} comparisons (server: "
                  f"{_fmt(row['server_agreement'], True)})")
    table.add_row("RM vs labels (held out)", f"{_fmt(rm.get('vs_labels'), True)}  ceiling "
                  f"{_fmt(row['agreement'], True)}  (job's val_accuracy "
                  f"{_fmt(row['rm_val_accuracy'], True)})")
    table.add_row("RM vs hidden preference", f"{_fmt(rm.get('vs_hidden'), True)}  labelers "
                  f"{_fmt(row['labelers_vs_hidden'], True)}")
    table.add_row("policy vs SFT (hidden)", _fmt(row.get("win_vs_sft")))
    table.add_row("policy vs previous", _fmt(row.get("win_vs_previous")))
    if "decision" in row:
        for key in ("vs_sft", "vs_previous"):
            if f"campaign_{key}" in row:
                table.add_row(f"campaign {key.replace('_', ' ')} (people)",
                              _fmt(row[f"campaign_{key}"]))
        decision = row.get("decision") or {}
        table.add_row("decision", f"{decision.get('action', 'n/a')}: {decision.get('reason', '')}")
        table.add_row("watch", ", ".join(row.get("watch") or []) or "no flag")
    table.add_row("KL to SFT (nats)", _fmt(row.get("kl")))
    lm = row.get("lm_loss") or {}
    plain = row.get("plain_ppo") or {}
    table.add_row("held-out LM loss", f"PPO-ptx {_fmt(lm.get('policy'))}  plain PPO "
                  f"{_fmt(plain.get('lm_loss'))}  SFT {_fmt(lm.get('sft'))}")
    console.print(table)


@simulate_cli.command("loop")
def loop_command(
    rounds: int = typer.Option(1, "--rounds", min=1, max=100),
    report: Path | None = typer.Option(None, "--report", help="Write the JSON report here."),
    url: str = URL,
    labelers: int = typer.Option(8, "--labelers", min=2, max=1000),
    judge: str = typer.Option("letter:e", "--judge", help=JUDGE_HELP),
    agreement: float = typer.Option(0.73, "--agreement", min=0.51, max=0.99),
    k: int = typer.Option(4, "--k", min=4, max=9, help="Outputs per new rank task."),
    n_prompts: int = typer.Option(64, "--n-prompts", min=1,
                                  help="Prompts sampled for new rank tasks each round."),
    overlap: int = typer.Option(2, "--overlap", min=1, max=50),
    eval_prompts: int = typer.Option(100, "--eval-prompts", min=10,
                                     help="Test prompts for the win rates."),
    config: str = typer.Option("", "--config", help='Per-stage overrides as JSON, e.g. '
                               '\'{"ppo": {"steps": 20}}\'.'),
    ptx_compare: bool = typer.Option(False, "--ptx-compare", help="Also train a plain-PPO "
                                     "policy each round, to compare held-out LM loss."),
    admin_token: str | None = ADMIN_TOKEN,
    researcher_token: str | None = typer.Option(
        None, "--researcher-token", envvar="RLHF_RESEARCHER_TOKEN",
        help="A researcher's or admin's token to start rounds (default: the admin token, "
             "or a simulated researcher made beside the database)."),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet"),
    evaluate: int = typer.Option(0, "--evaluate", min=0, help="Test prompts in each round's "
                                 "blind campaign (new policy vs SFT and the previous one), "
                                 "judged by the pool; 0: none."),
    if_better: bool = typer.Option(False, "--if-better", help="Promote only when the "
                                   "campaign shows people prefer the new policy (needs "
                                   "--evaluate)."),
    on_hold: str = typer.Option("dismiss", "--on-hold", help="A round the watch held for a "
                                "person: dismiss it (trust the watch) or promote it."),
) -> None:
    """Feedback → round (SFT → RM → PPO) → promote → new rank tasks → the pool ranks them,
    N times; a table after each round, a JSON report at the end."""
    from app.console import fail

    hidden, overrides = _judge_and_overrides(judge, config)
    if if_better and not evaluate:
        fail("--if-better needs --evaluate N (the campaign that decides)")
    if on_hold not in HOLD_ACTIONS:
        fail(f"--on-hold is {' or '.join(HOLD_ACTIONS)}, not {on_hold!r}")
    settings = LoopSettings(url=url.rstrip("/"), rounds=rounds, labelers=labelers, judge=judge,
                            agreement=agreement, k=k, n_prompts=n_prompts, overlap=overlap,
                            eval_prompts=eval_prompts, config=overrides,
                            ptx_compare=ptx_compare, seed=seed, evaluate=evaluate,
                            promote="if_better" if if_better else True, on_hold=on_hold)
    run_loop(settings, hidden, admin_token=admin_token, researcher_token=researcher_token,
             quiet=quiet, report=report)


def _judge_and_overrides(judge: str, config: str) -> tuple[Judge, dict[str, Any]]:
    """--judge as the hidden preference and --config as per-stage overrides (or exit)."""
    from app.console import fail
    from simulation import judges

    try:
        hidden = judges.make_judge(judge)
        overrides = json.loads(config) if config else {}
    except (judges.JudgeError, ValueError) as exc:
        fail(str(exc))
    if not isinstance(overrides, dict):
        fail("--config must be a JSON object of stages")
    return hidden, overrides


def run_loop(settings: LoopSettings, hidden: Judge, *, admin_token: str | None,
             researcher_token: str | None, quiet: bool, report: Path | None) -> None:
    """Make the accounts and the pool, run the rounds, then revoke the pool's tokens and
    write the report (after a failed round too)."""
    from app.console import fail

    wait_until_up(settings.url, 10.0)
    token = researcher_token or admin_token or \
        make_accounts(settings.url, None, 1, "researcher")[0].token
    pool = Pool(PoolSettings(url=settings.url, labelers=settings.labelers,
                             judge=settings.judge, agreement=settings.agreement,
                             seed=settings.seed),
                make_accounts(settings.url, admin_token, settings.labelers), hidden)
    loop = Loop(settings, pool, Api(settings.url, token), make_judge(settings.judge),
                quiet=quiet)
    try:
        run_rounds(loop)
    except LoopError as exc:
        fail(str(exc))
    finally:
        asyncio.run(pool.revoke())
        if report is not None:
            from simulation import report as reporting

            reporting.write({"settings": settings.__dict__, "rounds": loop.rows}, report)


@simulate_cli.command("seed")
def seed_command(
    prompts: int = typer.Option(200, "--prompts", min=10, max=100_000),
    k: int = typer.Option(4, "--k", min=4, max=9, help="Outputs per rank task."),
    overlap: int = typer.Option(2, "--overlap", min=1, max=50),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Import simulated prompts with demonstrate and rank tasks (run beside the database),
    so `simulate loop` can start on an empty deployment."""
    from app.console import console
    from simulation.seed import seed as seed_work

    console.print(seed_work(n_prompts=prompts, k=k, overlap=overlap, seed=seed))


def run_rounds(loop: Loop) -> None:
    """Feedback, then each round in turn, printing its table."""
    loop.feedback()
    previous: str | None = None
    for n in range(1, loop.settings.rounds + 1):
        row = loop.round(n, previous)
        loop.rows.append(row)
        print_round(row)
        previous = row.get("policy_path") or previous
