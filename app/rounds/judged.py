"""Rounds judged by people: a round's blind campaign, and its promotion "if_better".

A round with `evaluate` runs the `evaluate` stage after training: a campaign of the new
policy against the previous active policy (`vs_previous`) and one against its SFT
(`vs_sft`). With `promote: "if_better"` the round then waits (`awaiting_judgment`) until
the deciding campaign (vs the previous policy; in the first round, vs SFT) is complete;
`decide` promotes only when that campaign's 95% lower bound is above ½ and the reward-hacking
watch raised no flag (`round_flags`). A flagged round, or one a researcher would rather
settle, is promoted or dismissed by hand (`promote_by_hand`, `dismiss`). A round that ends
unpromoted still runs its generate stage, its own policy in the mix (`unpromoted_mix`), so
the next round has fresh rankings to learn from. Before the round waits, the evaluate stage
has the round's reward model score the pairs people will judge (`rm_verdict` on each
campaign), which the watch reads beside their verdict.

The decision runs where a campaign completes (the last judgment's transaction, through
`app.evaluation.service.on_complete`), when a round starts waiting, and in a beat sweep
(`sweep`) as the fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import session_scope, utcnow
from app.evaluation import generation
from app.evaluation import results as outcomes
from app.evaluation import service as campaigns
from app.evaluation.models import Evaluation
from app.evaluation.schemas import EvaluationCreate
from app.jobs import service as jobs
from app.jobs.errors import JobError, JobFailed
from app.jobs.kinds import JobContext, job_kind
from app.jobs.models import Job, JobState
from app.registry import service as registry
from app.rounds.models import Round, RoundState

FINAL = ("promoted", "kept", "dismissed")  # decisions that end the wait


@dataclass(frozen=True)
class Decision:
    """What to do with a waiting round: promote | keep | hold (ask a person) | wait."""

    action: str
    reason: str


# Who may raise flags on a round: the reward-hacking watch (app/loop/watch.py) registers
# itself here when it is imported, as the faces (web app, worker) do at start-up; the rounds
# never import it (a lower layer offers the slot, the higher one fills it).
FlagSource = Callable[..., list[str]]
FLAG_SOURCES: list[FlagSource] = []


def add_flag_source(source: FlagSource) -> FlagSource:
    """Register a `source(*, db, round_id) -> [flag, …]` that `if_better` must respect."""
    if source not in FLAG_SOURCES:
        FLAG_SOURCES.append(source)
    return source


def round_flags(*, db: Session, round_id: int) -> list[str]:
    """Every registered watch's flags on this round's policy."""
    return [str(f) for source in FLAG_SOURCES for f in source(db=db, round_id=round_id)]


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def decide(*, campaign: dict[str, Any] | None, against: str, flags: list[str]) -> Decision:
    """The decision from the deciding campaign (its state, and its result row for the new
    policy) and the watch's flags. Pure: no database."""
    if campaign is None or campaign["state"] != campaigns.COMPLETE:
        judged = f" ({campaign['judgments']} of {campaign['required']} judgments in)" \
            if campaign else ""
        return Decision("wait", f"Waiting for people to judge the campaign against "
                                f"{against}{judged}.")
    row = campaign["row"]
    if not row or not row["n"] or not row["ci95"]:
        return Decision("keep", f"Not promoted: nothing was judged against {against} "
                                f"({campaign.get('closed_reason') or 'no judgments'}).")
    lo, hi = row["ci95"]
    shown = f"win rate {_pct(row['win_rate'])} against {against}, 95% CI " \
            f"[{_pct(lo)}, {_pct(hi)}] over {row['n']} judgments"
    if lo <= 0.5:
        return Decision("keep", f"Not promoted: not shown better ({shown}; the lower bound "
                                "must be above 50%).")
    if flags:
        return Decision("hold", f"People prefer it ({shown}), but the reward-hacking watch "
                                f"flagged it ({', '.join(flags)}): promote or dismiss it by "
                                "hand.")
    return Decision("promote", f"Promoted: people prefer it ({shown}).")


def decided(rnd: Round) -> bool:
    """The round's promotion has been settled (promoted, kept or dismissed)."""
    return bool(rnd.decision) and (rnd.decision or {}).get("action") in FINAL


def deciding_campaign(db: Session, rnd: Round) -> tuple[dict[str, Any] | None, str]:
    """The campaign that decides `if_better` (vs the previous policy; in a first round, vs
    SFT): its id, state, result row and judgments in and required, or None while it does
    not exist; and the name of what the policy is judged against."""
    ids = rnd.evaluations or {}
    key = "vs_previous" if ids.get("vs_previous") else "vs_sft"
    ev = db.get(Evaluation, ids[key]) if ids.get(key) else None
    if ev is None:
        return None, "the previous policy" if key == "vs_previous" else "SFT"
    data = outcomes.results(db=db, evaluation_id=ev.id)
    row = next((r for r in data["results"]), None)
    return ({"id": ev.id, "state": ev.state, "row": row, "judgments": data["judgments"],
             "required": data["required"], "closed_reason": ev.closed_reason},
            data["baseline_name"])


def _record(rnd: Round, action: str, reason: str, by: User | None = None,
            extra: dict[str, Any] | None = None) -> None:
    rnd.decision = {"action": action, "reason": reason, "by": by.email if by else "rule",
                    "at": utcnow().isoformat(), **(extra or {})}


def _finish(rnd: Round) -> None:
    rnd.state, rnd.finished_at, rnd.error = RoundState.succeeded, utcnow(), None


def _append_jobs(db: Session, rnd: Round, stages: list[tuple[str, dict[str, Any]]],
                 user_id: int | None) -> list[int]:
    """Append these (kind, config) jobs to the round, which runs again; the first job's id
    (to send after the commit: the rest follow it), or [] when there are none."""
    if not stages:
        _finish(rnd)
        return []
    last = db.scalar(select(func.max(Job.position)).where(Job.round_id == rnd.id)) or 0
    user = db.get(User, user_id) if user_id else None
    made = [jobs.submit(db=db, kind=kind, config=config, round_id=rnd.id,
                        position=last + offset, user=user).id
            for offset, (kind, config) in enumerate(stages, start=1)]
    rnd.state, rnd.finished_at = RoundState.running, None
    return made[:1]


def _promote_jobs(db: Session, rnd: Round, user_id: int | None) -> list[int]:
    """Append promote (→ generate) to the round; the round runs again."""
    stages: list[tuple[str, dict[str, Any]]] = [("promote", {})]
    if rnd.generate is not None:
        stages.append(("generate", dict(rnd.generate)))
    return _append_jobs(db, rnd, stages, user_id)


def unpromoted_mix(db: Session, rnd: Round) -> list[dict[str, Any]]:
    """What a round that ends unpromoted samples its fresh candidates from: the active
    policy, the round's own policy (at two temperatures), and the active SFT (or, before
    any is active, the round's)."""
    policy, previous, sft = _versions(db, rnd.id)
    mix = [{"model_id": previous.id, "temperature": 0.7}] if previous is not None else []
    mix += [{"model_id": policy.id, "temperature": 0.7},
            {"model_id": policy.id, "temperature": 1.0}]
    standing = registry.alias_target(db=db, alias="sft:active") or sft
    if standing is not None:
        mix.append({"model_id": standing.id, "temperature": 1.0})
    return mix


def _fresh_data_jobs(db: Session, rnd: Round, user_id: int | None) -> list[int]:
    """A round kept or dismissed still runs its generate stage, its own policy in the mix:
    people rank what it wrote beside the standing models, so the next reward model learns
    where this one was fooled, as the paper collects each round's comparisons from the
    newest policies. Without fresh rankings the next round would train on the same data
    and repeat this one. A generate config that names its models keeps them."""
    if rnd.generate is None:
        return _append_jobs(db, rnd, [], user_id)
    config = dict(rnd.generate)
    if not config.get("mix") and config.get("model_id") is None:
        config["mix"] = unpromoted_mix(db, rnd)
    return _append_jobs(db, rnd, [("generate", config)], user_id)


def settle_judgment(*, db: Session, rnd: Round) -> list[int]:
    """Decide a waiting round if its campaign allows; job ids to send after the commit."""
    if rnd.state != RoundState.awaiting_judgment or decided(rnd):
        return []
    campaign, against = deciding_campaign(db, rnd)
    decision = decide(campaign=campaign, against=against,
                      flags=round_flags(db=db, round_id=rnd.id))
    extra: dict[str, Any] = {"evaluation_id": campaign["id"] if campaign else None,
                             "flags": round_flags(db=db, round_id=rnd.id)}
    if campaign and campaign["row"]:
        extra |= {"win_rate": campaign["row"]["win_rate"], "ci95": campaign["row"]["ci95"]}
    ready: list[int] = []
    if decision.action == "promote":
        _record(rnd, "promoted", decision.reason, extra=extra)
        ready = _promote_jobs(db, rnd, rnd.created_by_id)
    elif decision.action == "keep":
        _record(rnd, "kept", decision.reason, extra=extra)
        ready = _fresh_data_jobs(db, rnd, rnd.created_by_id)
    else:
        _record(rnd, "held" if decision.action == "hold" else "waiting", decision.reason,
                extra=extra)
    db.flush()
    return ready


def _waiting(db: Session, round_id: int) -> Round:
    rnd = db.scalars(select(Round).where(Round.id == round_id).with_for_update()
                     .execution_options(populate_existing=True)).first()
    if rnd is None:
        raise JobError(f"There is no round {round_id}.", 404)
    if rnd.state != RoundState.awaiting_judgment:
        raise JobError(f"Round {round_id} is {rnd.state}, not waiting for judgment: there "
                       "is nothing to promote or dismiss.", 409)
    return rnd


def promote_by_hand(*, db: Session, round_id: int, user: User) -> list[int]:
    """A researcher promotes a waiting round (whatever its campaign or the watch say);
    job ids to send after the commit."""
    rnd = _waiting(db, round_id)
    _record(rnd, "promoted", f"Promoted by hand by {user.email}"
                             + (f" (was: {rnd.decision['reason']})" if rnd.decision else "."),
            by=user)
    ready = _promote_jobs(db, rnd, user.id)
    db.flush()
    return ready


def dismiss(*, db: Session, round_id: int, user: User) -> list[int]:
    """A researcher ends a waiting round without promoting it (its generate stage still
    runs, `_fresh_data_jobs`); job ids to send after the commit."""
    rnd = _waiting(db, round_id)
    _record(rnd, "dismissed", f"Dismissed by {user.email}: the active policy stays.", by=user)
    ready = _fresh_data_jobs(db, rnd, user.id)
    db.flush()
    return ready


def dispatch_after_commit(db: Session, job_ids: list[int]) -> None:
    """Send these jobs once the session's transaction commits (the worker must see them)."""
    if job_ids:
        event.listen(db, "after_commit", lambda _session: jobs.dispatch(job_ids), once=True)


@campaigns.on_complete
def _campaign_complete(db: Session, evaluation: Evaluation) -> None:
    # Locked, and read afresh: two campaigns of one round may complete at once, and only
    # one of them may add the promote jobs.
    waiting = db.scalars(select(Round).where(Round.state == RoundState.awaiting_judgment,
                                             Round.promote_if_better)
                         .with_for_update().execution_options(populate_existing=True))
    for rnd in waiting:
        if evaluation.id in (rnd.evaluations or {}).values():
            dispatch_after_commit(db, settle_judgment(db=db, rnd=rnd))


def sweep() -> list[int]:
    """Decide every waiting round whose campaign allows it (the beat's fallback)."""
    ready: list[int] = []
    with session_scope() as db:
        for rnd in db.scalars(select(Round).where(
                Round.state == RoundState.awaiting_judgment).with_for_update(skip_locked=True)):
            # (a round locked by a judgment's transaction is being decided there)
            ready += settle_judgment(db=db, rnd=rnd)
    return jobs.dispatch(ready) if ready else []


# --- the evaluate stage ------------------------------------------------------------------


def _versions(db: Session, round_id: int) -> tuple[Any, Any, Any]:
    """(the round's new policy, the previous active policy or None, its SFT)."""
    ppo = _ppo_job(db, round_id)
    if ppo is None or not ppo.outputs.get("model_version_id"):
        raise JobFailed("This round trained no policy to evaluate.")
    policy = registry.get_version(db=db, version_id=ppo.outputs["model_version_id"])
    previous = registry.alias_target(db=db, alias="policy:active")
    parent = registry.get_version(db=db, version_id=policy.parent_id) \
        if policy.parent_id else None
    sft = parent if parent is not None and parent.kind == "sft" \
        else registry.alias_target(db=db, alias="sft:active")
    return policy, (previous if previous is not None and previous.id != policy.id else None), sft


def _campaigns(ctx: JobContext, db: Session, rnd: Round) -> dict[str, int | None]:
    policy, previous, sft = _versions(db, rnd.id)
    made: dict[str, int | None] = {}
    for key, baseline in (("vs_previous", previous), ("vs_sft", sft)):
        if baseline is None:
            made[key] = None
            continue
        spec = EvaluationCreate(model_ids=[policy.id], baseline_id=baseline.id,
                                name=f"round {rnd.id}: {policy.name} vs {baseline.name}",
                                **dict(ctx.config))
        try:
            ev = campaigns.create_evaluation(db=db, user=None, spec=spec)
        except campaigns.EvaluationError as exc:
            raise JobFailed(f"the campaign against {baseline.name} cannot be made: "
                            f"{exc}") from None
        ev.job_id = ctx.job_id
        made[key] = ev.id
    return made


@job_kind("evaluate", queue="gpu", label="blind campaign of the new policy")
def evaluate(ctx: JobContext) -> dict[str, Any]:
    """Campaigns of the round's policy vs the previous active policy and vs SFT: sample
    their outputs, then their compare tasks appear for people to judge."""
    with ctx.session() as db:
        job = db.get(Job, ctx.job_id)
        rnd = db.get(Round, job.round_id) if job and job.round_id else None
        if rnd is None:
            raise JobFailed("The evaluate stage runs inside a round.")
        if not rnd.evaluations:  # a retry reuses the campaigns its first attempt made
            rnd.evaluations = _campaigns(ctx, db, rnd)
        made = dict(rnd.evaluations)
        reward = _reward_model(db, rnd.id)
    ids = [i for i in made.values() if i]
    for n, evaluation_id in enumerate(ids):
        ctx.check_cancelled()

        def progress(fraction: float, n: int = n) -> None:
            ctx.progress((n + fraction) / len(ids))

        out = generation.run(evaluation_id=evaluation_id, workdir=ctx.workdir / str(n),
                             session=ctx.session, run_training=ctx.run_training,
                             progress=progress)
        ctx.log(f"evaluation {evaluation_id}: {out.get('tasks', 0)} compare tasks, "
                f"{out.get('identical_pairs', 0)} identical pairs not asked")
        if reward is not None:
            verdict = generation.score_pairs(
                evaluation_id=evaluation_id, reward_model=reward,
                workdir=ctx.workdir / f"{n}-rm", session=ctx.session,
                run_training=ctx.run_training)
            for row in ((verdict or {}).get("by_model") or {}).values():
                ctx.log(f"evaluation {evaluation_id}: the reward model prefers the policy "
                        f"on {row['win_rate']:.0%} of the {row['n']} pairs people judge")
    return {"evaluations": made}


def _ppo_job(db: Session, round_id: int) -> Job | None:
    """The round's newest succeeded PPO job: what trained its policy."""
    return db.scalars(select(Job).where(Job.round_id == round_id, Job.kind == "ppo",
                                        Job.state == JobState.succeeded)
                      .order_by(Job.id.desc())).first()


def _reward_model(db: Session, round_id: int) -> dict[str, Any] | None:
    """{"id", "path"} of the reward model the round's policy was trained against (what its
    PPO stage read), or None where that stage recorded none."""
    ppo = _ppo_job(db, round_id)
    reward = (ppo.inputs or {}).get("reward_model") if ppo is not None else None
    return {"id": reward.get("id"), "path": reward["path"]} \
        if isinstance(reward, dict) and reward.get("path") else None
