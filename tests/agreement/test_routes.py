"""Page, API and CSV: the public summary contract, staff only, filters, escaping."""

from app.queue.models import TaskKind
from tests.factories import T0, login, make_ranking, make_task, make_user


def _data(db):  # type: ignore[no-untyped-def]
    a, b = make_user(db), make_user(db)
    a.name = "<script>alert(1)</script>"
    t = make_task(db, TaskKind.rank, k=4)
    ids = t.candidate_ids
    make_ranking(db, t, a, [[i] for i in ids], at=T0)
    make_ranking(db, t, b, [[ids[1]], [ids[0]], [ids[2]], [ids[3]]], at=T0)
    db.flush()
    return a, b


def test_summary_api_keeps_the_public_contract(client, db):
    a, b = _data(db)
    login(client, make_user(db, "researcher"))
    resp = client.get("/api/v1/agreement/summary?kind=rank")
    assert resp.status_code == 200
    body = resp.json()
    assert {"pairwise_agreement", "n_comparisons", "ci95", "per_labeler"} <= body.keys()
    assert body["pairwise_agreement"] == 5 / 6 and body["n_comparisons"] == 6
    assert len(body["ci95"]) == 2 and body["ci95"][0] <= 5 / 6 <= body["ci95"][1]
    row = next(r for r in body["per_labeler"] if r["user_id"] == a.id)
    assert {"user_id", "pairwise_agreement", "n_comparisons"} <= row.keys()
    assert row["n_comparisons"] == 6


def test_pairs_and_trends_api_answer_staff(client, db):
    a, b = _data(db)
    login(client, make_user(db, "admin"))
    pairs = client.get("/api/v1/agreement/pairs").json()["pairs"]
    assert pairs == [{"user_a": a.id, "user_b": b.id, "pairwise_agreement": 5 / 6,
                      "n_comparisons": 6}]
    weeks = client.get("/api/v1/agreement/trends").json()["weeks"]
    assert weeks[0]["week"] == "2024-03-04" and weeks[0]["n_comparisons"] == 6


def test_labeler_gets_403_on_page_api_and_csv(client, db):
    _data(db)
    login(client, make_user(db))
    for url in ("/agreement", "/agreement.csv", "/api/v1/agreement/summary",
                "/api/v1/agreement/pairs", "/api/v1/agreement/trends"):
        resp = client.get(url)
        assert resp.status_code == 403, url
        assert "pairwise_agreement" not in resp.text


def test_anonymous_api_call_gets_401(client):
    assert client.get("/api/v1/agreement/summary").status_code == 401


def test_bad_filters_get_422(client, db):
    login(client, make_user(db, "admin"))
    assert client.get("/api/v1/agreement/summary?group=everyone").status_code == 422
    assert client.get("/api/v1/agreement/summary?kind=demonstrate").status_code == 422
    resp = client.get("/api/v1/agreement/summary?since=2024-03-05&until=2024-03-01")
    assert resp.status_code == 422 and "since" in resp.json()["detail"]


def test_page_shows_figures_and_escapes_names(client, db):
    _data(db)
    login(client, make_user(db, "admin"))
    resp = client.get("/agreement?group=training")
    assert resp.status_code == 200
    # 5 of 6 pairs: too few for a percentage, so the page says n and what is needed.
    pooled = resp.text[resp.text.index('id="pooled-agreement"'):]
    assert pooled.startswith('id="pooled-agreement"><span class="small-n" title="83% of only 6')
    assert "n = 6" in pooled[:300] and "83.3%" not in resp.text
    assert "too few pairs for a percentage (needs 30)" in resp.text
    assert 'id="agreement-needs"' not in resp.text
    assert "<script>alert(1)</script>" not in resp.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in resp.text
    assert "/static/vendor/chart.umd.js" in resp.text
    assert 'class="heatmap"' in resp.text


def test_page_without_overlap_says_what_is_needed(client, db):
    login(client, make_user(db, "researcher"))
    resp = client.get("/agreement")
    assert 'id="agreement-needs"' in resp.text and "overlap ≥ 2" in resp.text
    assert 'id="flag-kappa"' in resp.text


def test_csv_download_lists_labelers(client, db):
    a, b = _data(db)
    login(client, make_user(db, "researcher"))
    resp = client.get("/agreement.csv?kind=rank")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    assert b.email in resp.text
