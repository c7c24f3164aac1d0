"""Starting work for a simulated loop on an empty deployment: the demo's project (toy-English
prompts, which the importer splits into train, valid and test by end user, rank tasks whose
outputs vary in every way the built-in rules look at, and demonstrate tasks), at any size."""

from app.demo import seed_project


def seed(*, n_prompts: int = 200, rank_share: float = 0.5, k: int = 4, overlap: int = 2,
         seed: int = 0) -> dict[str, int]:
    """Import n prompts and make the work (K outputs per rank task, a demonstrate task on
    every train prompt); counts of what was made."""
    import app.models  # noqa: F401 - every table, so foreign keys resolve outside the web app
    from app.db import session_scope

    with session_scope() as db:
        return seed_project(db=db, n_prompts=n_prompts, rank_share=rank_share, k=(k, k),
                            overlap=overlap, seed=seed, end_user_prefix="sim-user",
                            demonstrate_all=True)
