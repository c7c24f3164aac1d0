"""The submit API and the labelers' JSON; the screens under /label are in pages.py."""


from fastapi import APIRouter
from fastapi.responses import Response

from app.auth.deps import ALL_ROLES, AnyUser
from app.auth.models import Role
from app.db import DbSession, commit_here
from app.errors import errors
from app.fields import Id
from app.labeling import pages, service, workbench
from app.labeling.schemas import (
    DraftRead,
    DraftSave,
    PromptFlagCreate,
    PromptFlagRead,
    SubmissionCreate,
    SubmissionRead,
)
from app.templating import add_nav

router = APIRouter()
router.include_router(pages.router)
add_nav("Label", "/label", ALL_ROLES, "Write demonstrations, rank and rate model outputs.")
add_nav("My work", "/label/mine", (Role.labeler,), "Your own counts, time and recent work.")
add_nav("Guidelines", "/label/guidelines", (Role.admin,), "Edit what labelers read per task.")


@router.post("/api/v1/tasks/{task_id}/submit", response_model=SubmissionRead,
             responses=errors(400, 409))
def submit(db: DbSession, user: AnyUser, task_id: Id, body: SubmissionCreate) -> SubmissionRead:
    answer = service.submit(db=db, user=user, task_id=task_id, body=body)
    commit_here(db)
    return answer


@router.put("/api/v1/assignments/{assignment_id}/draft", response_model=DraftRead,
            responses=errors(409, 413))
def draft_save(db: DbSession, user: AnyUser, assignment_id: Id, body: DraftSave) -> DraftRead:
    draft = workbench.save_draft(db=db, user=user, assignment_id=assignment_id,
                                 text=body.text, client_ms=body.client_ms, data=body.data)
    # `saved` tells the page whether its text won or a newer save already had.
    return DraftRead(assignment_id=assignment_id, text=draft.text, data=draft.data or {},
                     client_ms=draft.client_ms, saved=draft.client_ms == body.client_ms)


@router.get("/api/v1/assignments/{assignment_id}/draft", response_model=DraftRead)
def draft_get(response: Response, db: DbSession, user: AnyUser, assignment_id: Id) -> DraftRead:
    response.headers["Cache-Control"] = workbench.NO_STORE
    draft = workbench.get_draft(db=db, user=user, assignment_id=assignment_id)
    if draft is None:
        return DraftRead(assignment_id=assignment_id, text="", client_ms=0, saved=False)
    return DraftRead(assignment_id=assignment_id, text=draft.text, data=draft.data or {},
                     client_ms=draft.client_ms)


@router.post("/api/v1/assignments/{assignment_id}/flags", response_model=PromptFlagRead,
             responses=errors(409))
def flag_prompt(db: DbSession, user: AnyUser, assignment_id: Id,
                body: PromptFlagCreate) -> object:
    return workbench.flag_prompt(db=db, user=user, assignment_id=assignment_id,
                                 reason=body.reason, comment=body.comment)
