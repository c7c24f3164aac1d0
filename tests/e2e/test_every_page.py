"""Every page of the app, as each role, in real Chromium on a 390 px phone: nothing makes
the page scroll sideways (wide tables scroll inside their own box), the navigation opens
from a Menu button with every link on screen, and each page is kept as a screenshot."""

import re
import uuid

import pytest

from app.auth.models import Role, User
from app.jobs import service as jobs
from app.jobs.models import JobMetric
from app.labeling import service as labeling
from app.labeling.models import PromptFlag
from app.labeling.schemas import SubmissionCreate
from app.queue import service as queue
from app.queue.models import TaskKind
from app.registry.models import ModelVersion
from tests.e2e.conftest import PHONE, shot
from tests.evaluation.factories import campaign, make_prompts, make_version
from tests.factories import (
    lease,
    make_demonstration,
    make_prompt,
    make_task,
    make_user,
    ranked_task,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]

# Pages that are not pages a person looks at: files, redirects, the login form (its own
# test), and sibling pages of other engineers' domains that list themselves here.
NOT_PAGES = {"/favicon.ico", "/agreement.csv", "/evaluations/{evaluation_id}/results.csv",
             "/label/next", "/login"}


def _judge_everything(db, judges: list[User]) -> None:  # type: ignore[no-untyped-def]
    """Each judge answers every compare task they can lease, as the page would submit."""
    for n, judge in enumerate(judges):
        while (got := queue.next_task(db=db, user=judge, kind=TaskKind.compare)) is not None:
            choice = ("a", "b", "tie")[(got.id + n) % 3]
            labeling.submit(db=db, user=judge, task_id=got.task_id, body=SubmissionCreate(
                assignment_id=got.id, idempotency_key=str(uuid.uuid4()), seconds_spent=9,
                choice=choice))


def _seed(db, role: Role) -> tuple[User, dict[str, str]]:  # type: ignore[no-untyped-def]
    """A project with some of everything; returns the viewer and every page's URL by route."""
    ann = make_user(db, email="annabelle.longname-labeler@example.com")
    bob = make_user(db, email="bob@example.com")
    task, _ = ranked_task(db, 6, [(ann, [[0], [1, 2], [3], [4], [5]]),
                                  (bob, [[5], [4], [3], [2], [1], [0]])])
    viewer = make_user(db, role, email=f"viewer-{role.value}@example.com")
    demo = make_demonstration(db, make_prompt(db, "Write a limerick about <b>cats</b>"),
                              viewer, "There once was a cat " * 40)
    db.add(PromptFlag(prompt_id=task.prompt_id, user_id=bob.id, reason="unclear",
                      comment="Which cats?"))
    job = jobs.submit(db=db, kind="ppo", config={"steps": 2})
    job.log_tail = "\x1b[1mstep 1\x1b[0m\n 50%|█████     | 1/2 [00:01<00:01]\x1b[A\n"
    db.add(JobMetric(job_id=job.id, step=1, values={"objective/kl": 0.1, "loss": 1.2}))
    base = make_version(db, "base", name="tiny")
    sft = make_version(db, "sft", name="sft-r1", parent=base, metrics={"val_loss": 2.5})
    make_version(db, "rm", name="rm-r1", parent=sft, metrics={"val_accuracy": 0.7})
    policy = make_version(db, "policy", name="policy-r1", parent=sft,
                          metrics={"kl": 0.03, "train_seconds": 12.5, "response_len": 40})
    make_prompts(db, 4)
    judges = [make_user(db, held_out=True, email=f"judge-{i}-with-a-long-address@example.com")
              for i in range(3)]
    ev = campaign(db, None, candidates=[policy], baseline=sft, n=4, overlap=3)
    _judge_everything(db, judges)
    leases = {kind: lease(db, viewer, make_task(db, kind, k=5 if kind == TaskKind.rank else None))
              for kind in (TaskKind.demonstrate, TaskKind.rank, TaskKind.rate,
                           TaskKind.write_prompt)}
    db.commit()
    urls = {
        "/": "/", "/label": "/label", "/label/mine": "/label/mine",
        "/label/guidelines": "/label/guidelines", "/account": "/account",
        "/label/a/{assignment_id}": [f"/label/a/{a.id}" for a in leases.values()]
        + [f"/label/a/{demo.assignment_id}"],
        "/prompts": "/prompts", "/tasks": "/tasks", "/tasks/{task_id}": f"/tasks/{task.id}",
        "/tasks/{task_id}/gold": f"/tasks/{task.id}/gold", "/review": "/review",
        "/review/flags": "/review/flags", "/agreement": "/agreement",
        "/agreement/tasks": f"/agreement/tasks?labeler={ann.id}", "/exports": "/exports",
        "/jobs": "/jobs", "/jobs/{job_id}": f"/jobs/{job.id}", "/models": "/models",
        "/models/{model_id}": [f"/models/{policy.id}", f"/models/{sft.id}"],
        "/models/compare": f"/models/compare?a={sft.id}&b={policy.id}",
        "/evaluations": "/evaluations", "/evaluations/{evaluation_id}": f"/evaluations/{ev.id}",
        "/admin/users": "/admin/users", "/admin/use-cases": "/admin/use-cases",
        "/loop": "/loop",
    }
    return viewer, urls


def _html_pages() -> set[str]:
    """Every GET route of the app that answers a person with a page."""
    from app.main import api_routes, create_app

    # "/models/{model_id:int}" is the page "/models/{model_id}" (a convertor, not a new page)
    return {re.sub(r":\w+}", "}", r.path) for r in api_routes(create_app())
            if "GET" in r.methods and not r.path.startswith(("/api/", "/healthz"))} - NOT_PAGES


def _check_menu(page) -> None:  # type: ignore[no-untyped-def]
    """On a phone the navigation opens from Menu, each link on screen."""
    links = page.locator("nav.nav a")
    assert not links.first.is_visible()
    page.click("#menu-toggle")
    for i in range(links.count()):
        box = links.nth(i).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
        assert box["height"] >= 36  # a thumb's reach
    page.click("#menu-toggle")


@pytest.mark.parametrize("role", [Role.labeler, Role.researcher, Role.admin])
def test_every_page_fits_a_phone(committed_db, open_page, role):
    viewer, urls = _seed(committed_db, role)
    routes = _html_pages()
    assert routes <= set(urls), f"pages this test does not visit: {routes - set(urls)}"
    page = open_page(viewer, PHONE)
    _check_menu(page)
    wide = []
    for route, found in urls.items():
        if route not in routes:
            continue  # a page of a branch not merged here
        for n, url in enumerate(found if isinstance(found, list) else [found]):
            page.goto(url)
            page.wait_for_load_state("load")
            width = page.evaluate("document.documentElement.scrollWidth")
            name = route.strip("/").replace("/", "-").replace("{", "").replace("}", "") or "home"
            shot(page, f"phone-{role.value}-{name}{f'-{n}' if n else ''}")
            if width > PHONE["width"]:
                wide.append((url, width))
    assert wide == []
    assert committed_db.get(ModelVersion, 1) is not None  # the data outlived every page
