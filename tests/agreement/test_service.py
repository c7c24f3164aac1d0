"""The report from the database: filters, groups, gold, skips, no overlap, rate tasks, cache."""

from datetime import date, timedelta

import pytest

from app.agreement import service
from app.queue.models import AssignmentState, TaskKind
from tests.factories import T0, finished, make_ranking, make_rating, make_task, make_user


def _summary(db, **filters):  # type: ignore[no-untyped-def]
    return service.summary(db=db, filters=service.make_filters(**filters))


def _row(summary, user):  # type: ignore[no-untyped-def]
    return next(r for r in summary["per_labeler"] if r["user_id"] == user.id)


def _two_agree_one_reverses(db, at=T0, held_out=False):  # type: ignore[no-untyped-def]
    """Three labelers rank one task of 4: a and b identical, c reversed."""
    a, b, c = (make_user(db, held_out=held_out) for _ in range(3))
    t = make_task(db, TaskKind.rank, k=4)
    ids = t.candidate_ids
    make_ranking(db, t, a, [[i] for i in ids], at=at)
    make_ranking(db, t, b, [[i] for i in ids], at=at)
    make_ranking(db, t, c, [[i] for i in reversed(ids)], at=at)
    return a, b, c


def test_summary_pools_every_labeler_pair_on_a_task(db):
    a, b, c = _two_agree_one_reverses(db)
    s = _summary(db)
    # pairs (a,b): 6/6, (a,c): 0/6, (b,c): 0/6 → 6/18
    assert s["pairwise_agreement"] == pytest.approx(1 / 3)
    assert s["n_comparisons"] == 18
    assert _row(s, a)["pairwise_agreement"] == pytest.approx(0.5)
    assert _row(s, c)["pairwise_agreement"] == 0.0
    assert {(p["user_a"], p["user_b"]): p["pairwise_agreement"]
            for p in service.pairs(db=db, filters=service.make_filters())["pairs"]} == {
        (a.id, b.id): 1.0, (a.id, c.id): 0.0, (b.id, c.id): 0.0}


def test_labeler_without_overlap_is_listed_with_no_comparisons(db):
    _two_agree_one_reverses(db)
    loner = make_user(db)
    t = make_task(db, TaskKind.rank, k=5)
    make_ranking(db, t, loner, [[i] for i in t.candidate_ids])
    idle = make_user(db)
    s = _summary(db)
    row = _row(s, loner)
    assert (row["n_comparisons"], row["pairwise_agreement"], row["ci95"]) == (0, None, None)
    assert row["n_tasks"] == 1
    assert _row(s, idle)["n_tasks"] == 0
    assert s["n_comparisons"] == 18  # the lone ranking adds nothing


def test_empty_database_gives_an_empty_report(db):
    s = _summary(db)
    assert (s["pairwise_agreement"], s["n_comparisons"], s["ci95"]) == (None, 0, None)


def test_ties_are_left_out_of_comparisons(db):
    a, b = make_user(db), make_user(db)
    t = make_task(db, TaskKind.rank, k=4)
    w, x, y, z = t.candidate_ids
    make_ranking(db, t, a, [[w], [x], [y], [z]])
    make_ranking(db, t, b, [[x, w], [y, z]])
    s = _summary(db)
    # b ties (w,x) and (y,z); the other 4 pairs agree
    assert (s["pairwise_agreement"], s["n_comparisons"]) == (1.0, 4)


def test_gold_accuracy_counts_pairs_ordered_as_the_known_answer(db):
    good, bad = make_user(db), make_user(db)
    t = make_task(db, TaskKind.rank, k=3, gold_answer=None)
    ids = t.candidate_ids
    t.gold, t.gold_answer = True, [[ids[0]], [ids[1]], [ids[2]]]
    db.flush()
    make_ranking(db, t, good, [[ids[0]], [ids[1]], [ids[2]]])
    make_ranking(db, t, bad, [[ids[1]], [ids[0]], [ids[2]]])  # gets (0,1) wrong
    s = _summary(db)
    assert (_row(s, good)["gold_accuracy"], _row(s, good)["n_gold"]) == (1.0, 3)
    assert _row(s, bad)["gold_accuracy"] == pytest.approx(2 / 3)
    assert s["gold_accuracy"] == pytest.approx(5 / 6)


def test_skip_rate_and_throughput_per_labeler(db):
    u = make_user(db)
    for seconds in (30, 60, 90):
        t = make_task(db, TaskKind.rank, k=4)
        make_ranking(db, t, u, [[i] for i in t.candidate_ids], seconds=seconds)
    finished(db, make_task(db, TaskKind.rank, k=4), u, state=AssignmentState.skipped)
    row = _row(_summary(db), u)
    assert row["skip_rate"] == 0.25
    assert row["median_seconds"] == 60
    assert row["tasks_per_hour"] == pytest.approx(3 * 3600 / 180)


def test_position_bias_counts_first_shown_ranked_first(db):
    u = make_user(db)
    for first_wins in (True, True, False, False):
        t = make_task(db, TaskKind.rank, k=4)
        ids = t.candidate_ids
        groups = [[i] for i in (ids if first_wins else list(reversed(ids)))]
        make_ranking(db, t, u, groups, shown=ids)
    row = _row(_summary(db), u)
    assert row["position_bias_observed"] == 0.5
    assert row["position_bias_ratio"] == pytest.approx(2.0)  # chance is 1/4


def test_group_filter_keeps_only_that_group(db):
    _two_agree_one_reverses(db, held_out=False)
    h1, h2 = make_user(db, held_out=True), make_user(db, held_out=True)
    t = make_task(db, TaskKind.rank, k=4)
    make_ranking(db, t, h1, [[i] for i in t.candidate_ids])
    make_ranking(db, t, h2, [[i] for i in t.candidate_ids])
    held = _summary(db, group="held_out")
    assert (held["pairwise_agreement"], held["n_comparisons"]) == (1.0, 6)
    assert {r["user_id"] for r in held["per_labeler"]} == {h1.id, h2.id}
    training = _summary(db, group="training")
    assert training["n_comparisons"] == 18
    both = _summary(db)
    assert both["by_group"]["held_out"]["pairwise_agreement"] == 1.0
    assert both["by_group"]["training"]["pairwise_agreement"] == pytest.approx(1 / 3)


def test_date_filters_select_the_window_inclusive_of_until_day(db):
    _two_agree_one_reverses(db, at=T0)  # 2024-03-04
    _two_agree_one_reverses(db, at=T0 + timedelta(days=10))
    assert _summary(db)["n_rankings"] == 6
    assert _summary(db, until=date(2024, 3, 4))["n_rankings"] == 3
    assert _summary(db, since=date(2024, 3, 5))["n_rankings"] == 3
    assert _summary(db, since=date(2024, 3, 5), until=date(2024, 3, 13))["n_rankings"] == 0


def test_make_filters_rejects_since_after_until():
    with pytest.raises(service.BadFilters):
        service.make_filters(since=date(2024, 3, 5), until=date(2024, 3, 1))


def test_trends_are_weekly_from_monday(db):
    _two_agree_one_reverses(db, at=T0)
    _two_agree_one_reverses(db, at=T0 + timedelta(days=7))
    weeks = service.trends(db=db, filters=service.make_filters())["weeks"]
    assert [w["week"] for w in weeks] == ["2024-03-04", "2024-03-11"]
    assert [w["n_comparisons"] for w in weeks] == [18, 18]


def test_likert_alpha_and_flag_kappa_from_rank_ratings(db):
    a, b = make_user(db), make_user(db)
    for n in range(4):
        t = make_task(db, TaskKind.rank, k=4)
        likert = {cid: 1 + (i * 2 + n) % 7 for i, cid in enumerate(t.candidate_ids)}
        flags = {t.candidate_ids[0]: ["hallucination"]}
        make_ranking(db, t, a, [[i] for i in t.candidate_ids], likert=likert, flags=flags)
        make_ranking(db, t, b, [[i] for i in t.candidate_ids], likert=likert,
                     flags=flags if n % 2 else {})
    s = _summary(db)
    assert s["likert_alpha"]["alpha"] == pytest.approx(1.0)
    assert s["likert_alpha"]["n_units"] == 16
    hall = next(f for f in s["flag_kappa"] if f["flag"] == "hallucination")
    assert hall["n_flagged"] == 6
    assert hall["kappa"] is not None and hall["kappa"] < 1


def test_rate_kind_reports_gold_and_throughput_without_pairs(db):
    u, v = make_user(db), make_user(db)
    gold = make_task(db, TaskKind.rate, gold_answer={"likert": 5, "flags": []})
    make_rating(db, gold, u, 6)
    make_rating(db, gold, v, 2)
    s = _summary(db, kind="rate")
    assert s["pairwise_agreement"] is None and s["n_comparisons"] == 0
    assert _row(s, u)["gold_accuracy"] == 1.0
    assert _row(s, v)["gold_accuracy"] == 0.0
    assert _summary(db)["n_rankings"] == 0  # rank figures ignore rate tasks


def test_report_recomputes_when_a_ranking_arrives(db):
    a, b, c = _two_agree_one_reverses(db)
    first = _summary(db)
    d = make_user(db)
    t = make_task(db, TaskKind.rank, k=4)
    make_ranking(db, t, a, [[i] for i in t.candidate_ids])
    make_ranking(db, t, d, [[i] for i in t.candidate_ids])
    second = _summary(db)
    assert first["n_comparisons"] == 18
    assert second["n_comparisons"] == 24
    assert _summary(db) is not None and service.report(
        db=db, filters=service.make_filters()) is service.report(
        db=db, filters=service.make_filters())


def test_csv_has_one_row_per_labeler_and_defuses_formulas(db):
    a, b, c = _two_agree_one_reverses(db)
    a.name = "=HYPERLINK(1)"
    db.flush()
    text = service.labeler_csv(db=db, filters=service.make_filters())
    lines = text.strip().splitlines()
    assert lines[0].startswith("user_id,email,name,held_out,pairwise_agreement")
    assert len(lines) == 4
    assert "'=HYPERLINK(1)" in text
