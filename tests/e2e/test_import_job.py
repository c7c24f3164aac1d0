"""A large prompt file imported from the browser: the page hands it to a job and goes to
the job's page, which shows the report once the job has run."""

import json

import pytest
from sqlalchemy import func, select

from app.jobs import runner
from app.jobs.models import Job
from app.prompts.models import Prompt
from tests.e2e.conftest import PHONE, serve, shot
from tests.factories import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]


@pytest.fixture(scope="module")
def live_server(engine):  # type: ignore[no-untyped-def]
    """This module's server: uploads over 10 KB are imported by a job."""
    with serve(import_inline_max_mb="0.01") as base:
        yield base


def test_large_upload_goes_to_its_job_page_which_shows_the_report(committed_db, open_page,
                                                                   tmp_path):
    user = make_user(committed_db, "researcher")
    committed_db.commit()
    lines = [json.dumps({"text": f"Name {i} animals that live in the sea", "end_user_id": f"u{i}"})
             for i in range(300)]
    upload = tmp_path / "big.jsonl"
    upload.write_text("\n".join(lines) + "\n")
    phone = open_page(user, viewport=PHONE)
    phone.goto("/prompts")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(phone, "prompts-phone")
    page = open_page(user)
    page.goto("/prompts")
    assert "imported in the background" in page.inner_text("#import-limits")
    shot(page, "prompts-laptop")
    page.set_input_files("input[name=file]", str(upload))
    page.click("form[action='/prompts/import'] button[type=submit]")
    page.wait_for_url("**/jobs/*")
    assert "being imported by job" in page.content()
    job_id = int(page.url.rsplit("/", 1)[1])
    assert committed_db.get(Job, job_id).kind == "import"
    assert committed_db.scalar(select(func.count()).select_from(Prompt)) == 0

    runner.run_job(job_id)  # what the worker does
    page.reload()
    outputs = json.loads(page.inner_text("#job-outputs"))
    assert outputs["accepted"] == 300 and outputs["rejected"] == 0
    shot(page, "import-job")
    committed_db.expire_all()
    assert committed_db.scalar(select(func.count()).select_from(Prompt)) == 300
