"""What the jobs pages show, read in one place: rounds with their jobs, jobs run alone, the
trigger form's knobs and the schedule with the feedback gathered since the last round; and
the forms' text turned into the services' arguments (a sentence when it cannot be)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.fields import checked
from app.jobs.errors import JobError
from app.jobs.models import ENDED_STATES, LIVE_STATES, Job
from app.rounds import feedback, schedule
from app.rounds import service as rounds
from app.rounds.models import Round
from app.rounds.schemas import RoundJudging
from app.rounds.stage_config import MAIN_KNOBS, STAGES, effective, fields

MAX_JSON_CHARS = 20_000
TEXT_LIMIT = 200


@dataclass
class RoundView:
    round: Round
    jobs: list[Job]  # every attempt, in pipeline order
    current: set[int]  # ids of the newest attempt at each position
    warnings: list[str] = field(default_factory=list)  # succeeded, but learned nothing


@dataclass(frozen=True)
class Knob:
    stage: str
    name: str
    type: str
    default: Any  # what runs when the box is left empty (training's default < the preset)
    paper: Any  # training's own default
    doc: str

    @property
    def key(self) -> str:
        return f"{self.stage}.{self.name}"


@dataclass
class Parsed:
    """A form turned into service arguments."""

    values: dict[str, Any] = field(default_factory=dict)


def round_views(*, db: Session, limit: int = 30) -> list[RoundView]:
    """The newest rounds, each with every attempt of its jobs."""
    out = []
    for rnd in rounds.list_rounds(db=db, limit=limit):
        jobs = rounds.round_jobs(db=db, round_id=rnd.id)
        newest = rounds.current_jobs(db=db, round_id=rnd.id)
        out.append(RoundView(rnd, jobs, {j.id for j in newest},
                             feedback.round_warnings(db=db, rnd=rnd, jobs=newest)))
    return out


def lone_jobs(*, db: Session, limit: int = 30) -> list[Job]:
    """Jobs run outside a round (generation, a stage alone), newest first."""
    stmt = select(Job).where(Job.round_id.is_(None)).order_by(Job.id.desc()).limit(limit)
    return list(db.scalars(stmt))


def was_retried(*, db: Session, job_id: int) -> Job | None:
    """The newer attempt of this job, if it was retried."""
    return db.scalars(select(Job).where(Job.retry_of_id == job_id)).first()


def can_cancel(job: Job) -> bool:
    return job.state in (LIVE_STATES[0], LIVE_STATES[1])  # queued, running


def can_retry(job: Job, retried: bool) -> bool:
    return job.state in (ENDED_STATES[1], ENDED_STATES[2]) and not retried  # failed, cancelled


def knobs() -> list[Knob]:
    """The trigger form's main knobs of every stage, with what runs if left empty."""
    out = []
    for stage in STAGES:
        known = fields(stage)
        runs = effective(stage, {})
        for name in MAIN_KNOBS[stage]:
            f = known[name]
            out.append(Knob(stage, name, f.type.replace(" | None", ""), runs.get(name),
                            f.default, f.doc))
    return out


def schedule_view(*, db: Session) -> dict[str, Any]:
    """The schedule row, the feedback since the last round, and that round."""
    last = db.scalars(select(Round).order_by(Round.id.desc()).limit(1)).first()
    return {"row": schedule.get_schedule(db=db), "fresh": schedule.new_feedback(db=db),
            "last_round": last}


def _text(form: dict[str, Any], key: str) -> str:
    value = form.get(key, "")
    value = value if isinstance(value, str) else ""
    if len(value) > TEXT_LIMIT and key != "advanced":
        raise JobError(f"{key} is too long.", 422)
    return value.strip()


def _number(label: str, text: str, kind: str) -> Any:
    """A form field's text as the type its setting takes (422 with a sentence if it is not)."""
    if kind == "str":
        return text
    if kind == "bool" and text.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
        return text.lower() in ("true", "yes", "1", "on")
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            value = float(text)
            if math.isfinite(value):
                return value
    except ValueError:
        pass
    noun = {"int": "a whole number", "float": "a finite number"}.get(kind, "true or false")
    raise JobError(f"{label} must be {noun}, not {text!r}.", 422)


def _int(form: dict[str, Any], key: str, label: str) -> int | None:
    text = _text(form, key)
    return None if text == "" else _number(label, text, "int")


def _advanced(form: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The advanced settings box: a JSON object of {stage: {field: value}}, or {} if empty."""
    advanced = _text(form, "advanced")
    if len(advanced) > MAX_JSON_CHARS:
        raise JobError(f"The advanced settings are longer than {MAX_JSON_CHARS:,} characters.",
                       422)
    if not advanced:
        return {}
    try:
        loaded = json.loads(advanced)
    except json.JSONDecodeError as exc:
        raise JobError(f"The advanced settings are not valid JSON ({exc.msg} at line "
                       f"{exc.lineno}, column {exc.colno}).", 422) from None
    if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
        raise JobError('The advanced settings must be an object of {stage: {field: value}}, '
                       'e.g. {"ppo": {"clip": 0.1}}.', 422)
    return {stage: dict(values) for stage, values in loaded.items()}


def _add_knobs(form: dict[str, Any], config: dict[str, dict[str, Any]]) -> None:
    """The knobs filled in on the form into config (422 where one contradicts the JSON)."""
    for knob in knobs():
        text = _text(form, knob.key)
        if text == "":
            continue
        value = _number(knob.key, text, knob.type)
        already = config.get(knob.stage, {}).get(knob.name)
        if already is not None and already != value:
            raise JobError(f"{knob.key} is set both in the form ({value!r}) and in the "
                           f"advanced settings ({already!r}); keep one.", 422)
        config.setdefault(knob.stage, {})[knob.name] = value


def _generate(form: dict[str, Any], promote: bool | str) -> dict[str, Any] | None:
    """New rank tasks after the round, when ticked: the filled-in k, n_prompts and overlap."""
    if not checked(form, "generate"):
        return None
    if not promote:
        raise JobError("New rank tasks are sampled from the promoted policy: tick "
                       "“promote” too, or untick “generate”.", 422)
    generate = {}
    for key in ("k", "n_prompts", "overlap"):
        value = _int(form, f"gen_{key}", f"generate {key}")
        if value is not None:
            generate[key] = value
    return generate


def parse_round_form(form: dict[str, Any]) -> dict[str, Any]:
    """The trigger form as create_round's arguments (422 with a sentence when it cannot be)."""
    stages = [s for s in form.get("stages", []) if isinstance(s, str)]
    if not stages:
        raise JobError("Tick at least one stage (sft, rm or ppo) to train.", 422)
    config = _advanced(form)
    _add_knobs(form, config)
    judging = parse_judging(form)
    return {"stages": stages, "config": config,
            "generate": _generate(form, judging["promote"]), **judging}


def parse_judging(form: dict[str, Any]) -> dict[str, Any]:
    """The form's campaign and promotion fields, validated by the API's own RoundJudging."""
    promote: bool | str = checked(form, "promote")
    if checked(form, "promote_if_better"):
        if promote:
            raise JobError("Tick either “promote” or “promote if people prefer it”, not "
                           "both.", 422)
        promote = "if_better"
    evaluate: dict[str, Any] | None = None
    if checked(form, "evaluate") or promote == "if_better":
        evaluate = {key: value for key in ("n_prompts", "overlap", "judges")
                    if (value := _text(form, f"eval_{key}")) != ""}
    try:
        spec = RoundJudging.model_validate({"promote": promote, "evaluate": evaluate})
    except ValidationError as exc:
        raise JobError("; ".join(f"evaluate {'.'.join(map(str, e['loc'][1:]))}: {e['msg']}"
                                 for e in exc.errors()), 422) from None
    return {"promote": spec.promote,
            "evaluate": spec.evaluate.model_dump() if spec.evaluate else None}


def parse_schedule_form(form: dict[str, Any], row: Any) -> dict[str, Any]:
    """The schedule editor as update_schedule's arguments (the row's config is kept)."""
    every = _text(form, "every_hours")
    every_hours = None if every == "" else _number("every N hours", every, "float")
    stages = [s for s in form.get("stages", []) if isinstance(s, str)]
    if not stages:
        raise JobError("Tick at least one stage for scheduled rounds.", 422)
    return {"enabled": checked(form, "enabled"), "every_hours": every_hours,
            "min_new_comparisons": _int(form, "min_new_comparisons", "new comparisons"),
            "min_new_demonstrations": _int(form, "min_new_demonstrations",
                                           "new demonstrations"),
            "stages": stages, "config": dict(row.config or {}), "generate": row.generate,
            **parse_judging(form)}


def schedule_form(row: Any) -> dict[str, Any]:
    """The schedule as the editor's fields."""
    def show(v: Any) -> str:
        return "" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    out: dict[str, Any] = {"every_hours": show(row.every_hours),
                           "min_new_comparisons": show(row.min_new_comparisons),
                           "min_new_demonstrations": show(row.min_new_demonstrations),
                           "stages": list(row.stages or STAGES)}
    if row.enabled:
        out["enabled"] = "on"
    if row.promote:
        out["promote"] = "on"
    if row.promote_if_better:
        out["promote_if_better"] = "on"
    if row.evaluate:
        out["evaluate"] = "on"
        out.update({f"eval_{k}": show(v) for k, v in row.evaluate.items()})
    return out


def version_of(*, db: Session, job_id: int) -> Any:
    """The model version this job registered, if any."""
    from app.registry.models import ModelVersion

    return db.scalars(select(ModelVersion).where(ModelVersion.job_id == job_id)).first()
