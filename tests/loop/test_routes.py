"""GET /api/v1/loop and /loop: staff only, rounds oldest first with their figures in the
shape DESIGN.md gives, model names escaped, and the Loop link first in the staff's nav."""

import re

import pytest

from app.agreement import service as agreement
from app.auth.models import Role
from app.loop import human
from app.loop import service as loop
from tests.factories import T0, login, make_user, ranked_task
from tests.loop.factories import judged, make_round, ppo_metrics


@pytest.fixture(autouse=True)
def _fresh_caches():  # type: ignore[no-untyped-def]
    for cache in (human, loop, agreement):  # ids and times repeat across rolled-back tests
        cache.clear_cache()
    yield
    for cache in (human, loop, agreement):
        cache.clear_cache()


@pytest.fixture
def rounds(db):  # type: ignore[no-untyped-def]
    """Two labelers who agree on 5 of 6 pairs, then two rounds: a sane one, a gamed one."""
    a, b = make_user(db), make_user(db)
    ranked_task(db, 4, [(a, [[0], [1], [2], [3]]), (b, [[0], [1], [3], [2]])], created_at=T0)
    r1, v1 = make_round(db, metrics=ppo_metrics(rm_score=0.6, kl=3.0), val_accuracy=0.71)
    judged(db, candidate=v1["policy"], baseline=v1["sft"], wins=24, losses=6)
    r2, v2 = make_round(db, metrics=ppo_metrics(rm_score=1.6, kl=6.0, mean_length=44.0),
                        rankings=80)
    gamed = judged(db, candidate=v2["policy"], baseline=v1["policy"], wins=15, losses=15)
    # the round's RM on the same pairs: it prefers what people find level
    gamed.rm_verdict = {"reward_model_id": v2["rm"].id,
                        "by_model": {str(v2["policy"].id): {"win_rate": 0.9, "n": 30, "ties": 0}}}
    db.flush()
    return r1, r2


def test_loop_json_has_every_round_oldest_first_in_the_designed_shape(client, db, rounds):
    login(client, make_user(db, Role.researcher))
    resp = client.get("/api/v1/loop")
    assert resp.status_code == 200, resp.text
    first, second = resp.json()["rounds"]
    assert [first["round_id"], second["round_id"]] == [r.id for r in rounds]
    assert first["data"]["demonstrations"] == 12 and second["data"]["rankings"] == 80
    assert first["data"]["agreement"] == pytest.approx(5 / 6)
    assert first["rm"] == {"val_accuracy": 0.71, "labeler_ceiling": pytest.approx(5 / 6)}
    assert first["ppo"]["reward"] == 0.6 and first["ppo"]["kl"] == 3.0
    vs_sft = first["human"]["vs_sft"]
    assert vs_sft["win_rate"] == pytest.approx(0.8) and vs_sft["n"] == 30
    assert vs_sft["ci95"][0] < 0.8 < vs_sft["ci95"][1]
    assert first["human"]["vs_previous"] is None
    assert second["human"]["vs_previous"]["win_rate"] == pytest.approx(0.5)
    assert second["human"]["vs_previous"]["rm_win_rate"] == pytest.approx(0.9)
    assert vs_sft["rm_win_rate"] is None  # a campaign no RM scored
    assert first["watch"]["flags"] == []
    assert second["watch"]["flags"] == ["rm_up_people_flat", "length_jump"]
    assert second["watch"]["signals"]["length_change"] == pytest.approx(1.2)
    assert resp.json()["limits"]["max_kl"] == 20.0


def test_the_page_shows_each_round_and_its_flags(client, db, rounds):
    login(client, make_user(db, Role.admin))
    page = client.get("/loop")
    assert page.status_code == 200
    ids = re.findall(r'<tr data-round-id="(\d+)"', page.text)
    assert ids == [str(r.id) for r in rounds]
    assert page.text.count('class="flagged"') == 1
    assert "rm_up_people_flat" in page.text and "80.0%" in page.text
    assert page.text.count("· RM ") == 1 and "· RM 90%" in page.text  # scored pairs only
    nav = re.search(r'<nav class="nav".*?</nav>', page.text, re.S)
    assert nav and re.findall(r'href="([^"]+)"', nav.group(0))[0] == "/loop"


def test_model_names_are_escaped(client, db):
    _, v = make_round(db, metrics=ppo_metrics(rm_score=0.1, kl=1.0))
    v["policy"].name = "<script>alert(1)</script>"
    db.flush()
    login(client, make_user(db, Role.researcher))
    page = client.get("/loop").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_an_empty_loop_says_how_to_start(client, db):
    login(client, make_user(db, Role.researcher))
    assert client.get("/api/v1/loop").json()["rounds"] == []
    page = client.get("/loop").text
    assert 'id="no-rounds">No rounds yet' in page


def test_labelers_and_strangers_are_kept_out(client, db, rounds):
    assert client.get("/api/v1/loop").status_code == 401
    resp = client.get("/loop", follow_redirects=False)
    assert resp.status_code in (302, 303) and "/login" in resp.headers["location"]
    login(client, make_user(db, Role.labeler))
    assert client.get("/api/v1/loop").status_code == 403
    assert client.get("/loop").status_code == 403
    nav = re.search(r'<nav class="nav".*?</nav>', client.get("/label/mine").text, re.S)
    assert nav and "/loop" not in nav.group(0)
