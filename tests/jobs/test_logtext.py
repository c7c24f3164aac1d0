"""A job's log as a person reads it: escapes gone, progress bars folded, the device named."""

import io
from collections import deque

from sqlalchemy import select

from app.auth.models import Role
from app.jobs import service as jobs
from app.jobs.child import _read
from app.jobs.kinds import JobContext
from app.jobs.logtext import readable
from app.jobs.models import Job
from tests.factories import login, make_user

TERMINAL = (
    "\x1b[1mLoading\x1b[0m the \x1b[32mtiny\x1b[0m model\n"
    "sft:  10%|█         | 1/10 [00:01<00:09, 1.0it/s]\n"
    "sft:  20%|██        | 2/10 [00:02<00:08, 1.0it/s]\x1b[A\n"
    "eval:  50%|█████     | 1/2 [00:00<00:00]\n"
    "sft:  30%|███       | 3/10\r\x1b[2Ksft:  40%|████      | 4/10 [00:04<00:06]\n"
    "step 4 loss 1.2\n"
)


def test_readable_drops_escapes_and_keeps_each_bars_latest_state():
    text = readable(TERMINAL)
    assert "\x1b" not in text and "[1m" not in text and "[A" not in text and "\r" not in text
    assert text.splitlines() == [
        "Loading the tiny model",
        "eval:  50%|█████     | 1/2 [00:00<00:00]",
        "sft:  40%|████      | 4/10 [00:04<00:06]",
        "step 4 loss 1.2",
    ]
    assert readable(text) == text  # stored tails read the same cleaned again


def test_heartbeat_stores_the_log_as_a_terminal_shows_it(db):
    job = jobs.submit(db=db, kind="ppo", config={})
    claimed = jobs.claim(db=db, job_id=job.id, worker="w:1")
    assert claimed is not None
    jobs.heartbeat(db=db, job_id=job.id, worker="w:1", progress=None, metrics=[],
                   lines=TERMINAL.splitlines())
    jobs.heartbeat(db=db, job_id=job.id, worker="w:1", progress=None, metrics=[],
                   lines=["sft: 100%|██████████| 10/10 [00:10<00:00]"])
    tail = db.scalars(select(Job.log_tail).where(Job.id == job.id)).one()
    assert "\x1b" not in tail and tail.count("sft:") == 1 and "10/10" in tail


def test_the_job_page_says_on_what_device_it_trained(client, db, tmp_path):
    ctx = JobContext(job_id=1, kind="sft", config={}, inputs={}, workdir=tmp_path)
    _read(ctx, io.StringIO('{"event": "device", "device": "CPU"}\nstep one\n'), deque())
    job = jobs.submit(db=db, kind="sft", config={})
    job.log_tail = "\n".join(ctx.report.take()[2]) + "\n\x1b[1mbold\x1b[0m\n"
    db.flush()
    login(client, make_user(db, Role.researcher))
    page = client.get(f"/jobs/{job.id}").text
    assert '<span id="job-device">CPU</span>' in page and "Queue" not in page
    assert "\x1b" not in page and "[1m" not in page
    assert client.get(f"/api/v1/jobs/{job.id}/log").json()["log_tail"] == (
        "Training on CPU\nstep one\nbold\n")
    assert "GPU queue" not in client.get("/jobs").text
