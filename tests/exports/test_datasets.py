"""Every export kind and format loads with the Hugging Face `datasets` library."""

import json

import pytest

from app.auth.models import Role
from tests.factories import (
    make_candidates,
    make_demonstration,
    make_prompt,
    make_rating,
    make_task,
    make_user,
    ranked_task,
)

datasets = pytest.importorskip("datasets")  # slow import: once for this module

KINDS = [("sft", False), ("sft", True), ("rankings", False), ("comparisons", False),
         ("grouped", False), ("ratings", False), ("prompts", False)]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_every_kind_loads_with_datasets(db, export, fmt, tmp_path):
    from app.queue.models import TaskKind

    a, b = make_user(db), make_user(db, Role.labeler)
    ranked_task(db, 4, [(a, [[0], [1, 2], [3]]), (b, [[3], [2], [1], [0]])])
    ranked_task(db, 6, [(a, [[5], [4], [3], [2], [1], [0]])])
    prompt = make_prompt(db)
    (cand,) = make_candidates(db, prompt, 1)
    make_rating(db, make_task(db, TaskKind.rate, prompt=prompt, candidates=[cand]), a,
                candidate=cand, flags=["expresses_opinion"], comment="fine")
    make_demonstration(db, prompt, b, "A demonstration with ünïcode and \"quotes\"\nand lines.")
    for kind, chat in KINDS:
        snapshot, rows = export(kind, fmt, chat=chat)
        path = f"{snapshot.path}/{snapshot.manifest['files'][0]['name']}"
        loader = "json" if fmt == "jsonl" else "parquet"
        ds = datasets.load_dataset(loader, data_files=path, split="train",
                                   cache_dir=str(tmp_path / "hf"))
        assert ds.num_rows == snapshot.rows == len(rows) > 0, kind
        loaded = ds[0]
        if kind == "rankings":
            # Parquet keeps the per-candidate ratings as an Arrow JSON column (text).
            ratings = rows[0]["ratings"]
            assert loaded["ratings"] == (json.loads(ratings) if fmt == "parquet" else ratings)
            assert len(loaded["ratings"]) == 4
            assert loaded["groups"] == rows[0]["groups"]
        elif chat:
            assert loaded["messages"][1]["role"] == "assistant"
        else:
            assert loaded == rows[0], kind
