"""Snapshots: record shapes, comparison counts, manifests, filters and immutability."""

import hashlib
from datetime import timedelta
from math import comb
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.auth.models import Role
from app.db import utcnow
from app.exports import service, sources
from app.exports.models import DatasetSnapshot
from app.exports.schemas import ExportCreate
from app.queue.models import TaskKind
from tests.factories import (
    make_candidates,
    make_demonstration,
    make_model_version,
    make_prompt,
    make_ranking,
    make_rating,
    make_task,
    make_user,
    ranked_task,
)
from training.records import (
    ComparisonRecord,
    GroupedRecord,
    PromptRecord,
    RankingRecord,
    RatingRecord,
    SFTRecord,
    parse_record,
)


def _snapshots(db) -> int:  # type: ignore[no-untyped-def]
    return db.scalar(select(func.count()).select_from(DatasetSnapshot))


def test_comparisons_count_equals_pairs_minus_tied_pairs(db, export):
    a = make_user(db)
    # K=4 strict (6 pairs); K=5 with one tie of two (10-1); K=9 ties of 3 and 2 (36-3-1).
    ranked_task(db, 4, [(a, [[0], [1], [2], [3]])])
    ranked_task(db, 5, [(a, [[4], [0, 1], [2], [3]])])
    _, cands = ranked_task(db, 9, [(a, [[0, 1, 2], [3], [4, 5], [6], [7], [8]])])
    snapshot, rows = export("comparisons")
    assert len(rows) == snapshot.rows == 6 + 9 + 32 == comb(4, 2) + comb(5, 2) - 1 + comb(9, 2) - 4
    assert snapshot.manifest["source"]["tied_pairs"] == 5
    texts = {c.id: c.text for c in cands}
    k9 = [r for r in rows if r["chosen"] in texts.values()]
    rank = {texts[c.id]: g for g, grp in enumerate([[0, 1, 2], [3], [4, 5], [6], [7], [8]])
            for c in [cands[i] for i in grp]}
    assert len(k9) == 32 and all(rank[r["chosen"]] < rank[r["rejected"]] for r in k9)
    assert all(r["labeler_id"] == a.id and r["ranking_id"] for r in rows)


def test_rankings_row_keeps_candidates_groups_display_order_and_ratings(db, export):
    a = make_user(db)
    version = make_model_version(db)
    task, cands = ranked_task(db, 4, [(a, [[2], [0, 1], [3]])], version=version)
    _, rows = export("rankings")
    (row,) = rows
    record = RankingRecord.from_dict(row)
    assert [c["id"] for c in record.candidates] == sorted(c.id for c in cands)
    assert all(c["model_version_id"] == version.id for c in record.candidates)
    assert record.groups == [[cands[2].id], [cands[0].id, cands[1].id], [cands[3].id]]
    assert record.display_order == list(reversed(task.candidate_ids))
    assert set(record.ratings) == {str(c.id) for c in cands}
    assert record.ratings[str(cands[3].id)]["flags"] == ["hallucination"]
    assert record.labeler_id == a.id and record.seconds_spent == 42 and record.created_at


def test_grouped_rows_are_one_per_ranking_adjacent_by_prompt(db, export):
    a, b = make_user(db), make_user(db)
    t1, c1 = ranked_task(db, 4, [(a, [[0], [1], [2], [3]])])
    t2, _ = ranked_task(db, 5, [(a, [[0], [1], [2], [3], [4]])])
    make_user(db)
    
    make_ranking(db, t1, b, [[c1[3].id], [c1[2].id], [c1[1].id, c1[0].id]])  # after t2's
    _, rows = export("grouped")
    assert [r["prompt_id"] for r in rows] == [t1.prompt_id, t1.prompt_id, t2.prompt_id]
    first, second = (GroupedRecord.from_dict(r) for r in rows[:2])
    assert first.responses == second.responses  # one canonical order per prompt
    assert first.ranking == [[0], [1], [2], [3]] and second.ranking == [[3], [2], [1, 0]]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_manifest_sha256_matches_its_file(db, export, fmt):
    ranked_task(db, 4, [(make_user(db), [[0], [1], [2], [3]])])
    snapshot, rows = export("comparisons", fmt)
    data = snapshot.manifest["files"][0]
    path = Path(snapshot.path) / data["name"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == data["sha256"] == snapshot.sha256
    assert data["rows"] == len(rows) == 6 and data["bytes"] == path.stat().st_size
    on_disk = (Path(snapshot.path) / "manifest.json").read_text()
    assert f'"sha256": "{data["sha256"]}"' in on_disk
    assert snapshot.manifest["schema_version"] >= 1 and snapshot.manifest["source"]["max_id"] > 0


@pytest.mark.slow
def test_same_request_twice_makes_two_snapshots_with_identical_hashes(db, export):
    ranked_task(db, 5, [(make_user(db), [[0], [1, 2], [3], [4]])])
    for fmt in ("jsonl", "parquet"):
        first, _ = export("rankings", fmt)
        second, _ = export("rankings", fmt)
        assert first.id != second.id and first.path != second.path
        assert first.sha256 == second.sha256


def test_records_dicts_equal_to_dict_of_every_record_kind():
    samples = [
        SFTRecord("p", "c", 1, 2, 3), ComparisonRecord("p", "a", "b", 1, 2, 3),
        GroupedRecord("p", ["a", "b"], [[1], [0]], 1, 2, 3),
        RankingRecord(1, 2, "p", [{"id": 5, "text": "a"}], [[5]], [5], {"5": {"likert": 1}}),
        RatingRecord(1, 2, "p", 3, "t", 4, "m", ["x"]), PromptRecord(1, "t"),
    ]
    for record in samples:
        assert sources.fields(record) == record.to_dict()


def test_sft_plain_and_chat_rows(db, export):
    a = make_user(db)
    demo = make_demonstration(db, make_prompt(db, "Say hi"), a, "Hi!")
    _, plain = export("sft")
    _, chat = export("sft", chat=True)
    assert plain == [{"prompt": "Say hi", "completion": "Hi!", "prompt_id": demo.prompt_id,
                      "demonstration_id": demo.id, "labeler_id": a.id}]
    assert chat[0]["messages"] == [{"role": "user", "content": "Say hi"},
                                   {"role": "assistant", "content": "Hi!"}]
    assert parse_record("sft", chat[0]).completion == "Hi!"


def test_filter_split_selects_only_that_split(db, export):
    a = make_user(db)
    ranked_task(db, 4, [(a, [[0], [1], [2], [3]])], split="train")
    t_valid, _ = ranked_task(db, 4, [(a, [[0], [1], [2], [3]])], split="valid")
    _, rows = export("grouped", split="valid")
    assert [r["prompt_id"] for r in rows] == [t_valid.prompt_id]
    _, prompts = export("prompts", split="valid")
    assert [r["prompt_id"] for r in prompts] == [t_valid.prompt_id]


def test_filter_date_range_is_half_open(db, export):
    a = make_user(db)
    t0 = utcnow().replace(microsecond=0) - timedelta(days=10)
    for day in range(3):
        ranked_task(db, 4, [(a, [[0], [1], [2], [3]])], created_at=t0 + timedelta(days=day))
    snapshot, rows = export("rankings", since=t0 + timedelta(days=1),
                            until=t0 + timedelta(days=2))
    assert len(rows) == 1 and rows[0]["created_at"].startswith(
        (t0 + timedelta(days=1)).date().isoformat())
    assert snapshot.filters["since"].startswith((t0 + timedelta(days=1)).date().isoformat())


def test_filter_labelers_and_held_out_group(db, export):
    a, b = make_user(db), make_user(db, held_out=True)
    for _ in range(2):
        ranked_task(db, 4, [(a, [[0], [1], [2], [3]]), (b, [[3], [2], [1], [0]])])
    _, rows = export("comparisons", labeler_ids=[b.id])
    assert len(rows) == 12 and {r["labeler_id"] for r in rows} == {b.id}
    _, rows = export("rankings", held_out=False)
    assert {r["labeler_id"] for r in rows} == {a.id} and len(rows) == 2
    _, rows = export("rankings", held_out=True, labeler_ids=[a.id])
    assert rows == []


@pytest.mark.slow
def test_filter_model_version_and_task_kind(db, export):
    a = make_user(db)
    version, other = make_model_version(db, "v1"), make_model_version(db, "v2")
    t1, _ = ranked_task(db, 4, [(a, [[0], [1], [2], [3]])], version=version)
    ranked_task(db, 4, [(a, [[0], [1], [2], [3]])], version=other)
    prompt = make_prompt(db)
    (cand,) = make_candidates(db, prompt, 1, version=version)
    rated = make_rating(db, make_task(db, TaskKind.rate, prompt=prompt, candidates=[cand]), a,
                        candidate=cand)
    _, rows = export("comparisons", model_version_id=version.id)
    assert len(rows) == 6 and {r["prompt_id"] for r in rows} == {t1.prompt_id}
    _, rows = export("ratings", model_version_id=version.id, task_kind="rate")
    assert [(r["rating_id"], r["model_version"]) for r in rows] == [(rated.id, "v1")]
    _, rows = export("ratings", task_kind="rank")
    assert len(rows) == 8 and rated.id not in {r["rating_id"] for r in rows}


def test_filter_min_agreement_keeps_labelers_at_or_above(db, export):
    a, b, c = make_user(db), make_user(db), make_user(db)
    # a and b agree on every pair, c reverses both: a and b at 1/2 agreement, c at 0.
    for _ in range(2):
        ranked_task(db, 4, [(a, [[0], [1], [2], [3]]), (b, [[0], [1], [2], [3]]),
                            (c, [[3], [2], [1], [0]])])
    snapshot, rows = export("rankings", min_agreement=0.5)
    assert {r["labeler_id"] for r in rows} == {a.id, b.id} and len(rows) == 4
    assert snapshot.manifest["resolved"]["labeler_ids"] == sorted([a.id, b.id])
    again = snapshot.manifest["reproduce"]["filters"]
    assert "min_agreement" not in again and again["labeler_ids"] == sorted([a.id, b.id])
    figures = snapshot.manifest["resolved"]["agreement"]
    assert {uid: f["pairwise_agreement"] for uid, f in figures.items()} == {
        str(a.id): 0.5, str(b.id): 0.5, str(c.id): 0.0}


@pytest.mark.slow
def test_filter_max_id_reproduces_an_earlier_snapshot(db, export):
    a = make_user(db)
    ranked_task(db, 4, [(a, [[0], [1], [2], [3]])])
    first, _ = export("comparisons")
    ranked_task(db, 4, [(a, [[3], [2], [1], [0]])])  # new data after the first snapshot
    again, rows = export("comparisons", **first.manifest["reproduce"]["filters"])
    assert again.sha256 == first.sha256 and len(rows) == 6
    latest, rows = export("comparisons")
    assert latest.sha256 != first.sha256 and len(rows) == 12


@pytest.mark.parametrize(("kind", "filters", "message"), [
    ("prompts", {"labeler_ids": [1]}, "do not apply"),
    ("sft", {"model_version_id": 1}, "do not apply"),
    ("comparisons", {"labeler_ids": [999999]}, "unknown labeler"),
    ("ratings", {"model_version_id": 999999}, "unknown model version"),
])
def test_bad_filter_is_refused_and_creates_no_row(db, kind, filters, message):
    admin = make_user(db, Role.admin)
    before = _snapshots(db)
    with pytest.raises(service.ExportError, match=message):
        service.create_snapshot(db=db, user=admin,
                                request=ExportCreate(kind=kind, filters=filters))
    assert _snapshots(db) == before


def test_write_failure_leaves_no_files_behind(db, monkeypatch, tmp_path):
    ranked_task(db, 4, [(make_user(db), [[0], [1], [2], [3]])])
    snapshot = service.create_snapshot(db=db, user=None,
                                       request=ExportCreate(kind="comparisons"))

    def broken(**_):  # type: ignore[no-untyped-def]
        yield [{"prompt": "p", "chosen": "a", "rejected": "b"}]
        raise OSError("disk full")

    monkeypatch.setattr(sources, "batches", broken)
    out = tmp_path / "snap"
    with pytest.raises(OSError, match="disk full"):
        service.build(db=db, snapshot=snapshot, out_dir=out)
    assert list(tmp_path.iterdir()) == []


def test_existing_out_dir_is_never_overwritten(db, tmp_path):
    out = tmp_path / "snap"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    snapshot = service.create_snapshot(db=db, user=None, request=ExportCreate(kind="prompts"))
    with pytest.raises(service.ExportError, match="already exists"):
        service.build(db=db, snapshot=snapshot, out_dir=out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_comparison_batch_lines_match_json_of_its_rows():
    import json

    from app.exports.sources import ComparisonBatch
    from training.records import RankingRecord, comparisons_from_groups

    rec = RankingRecord(
        ranking_id=7, prompt_id=3, prompt='Say "hi"\n', labeler_id=None,
        candidates=[{"id": 1, "text": "ünï\tcode", "model": "m", "model_version_id": None},
                    {"id": 2, "text": "b", "model": "m", "model_version_id": None},
                    {"id": 5, "text": "c\\", "model": "m", "model_version_id": None}],
        groups=[[5], [1, 2]], display_order=[1, 2, 5], ratings={}, seconds_spent=1.0,
        created_at="2024-01-01T00:00:00+00:00",
    )
    batch = ComparisonBatch([(rec, list(comparisons_from_groups(rec.groups)))])
    expected = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in batch.rows())
    assert len(batch) == 2
    assert batch.jsonl() == expected
