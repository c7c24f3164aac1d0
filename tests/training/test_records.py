"""The app ↔ training record contract: round-trips, validation and pair expansion."""

import json

import pytest

from training.records import (
    RECORD_TYPES,
    SCHEMA_VERSION,
    ComparisonRecord,
    GroupedRecord,
    PromptRecord,
    RankingRecord,
    RatingRecord,
    SFTRecord,
    comparisons_from_groups,
    comparisons_from_ranking,
    parse_record,
    read_jsonl,
    write_jsonl,
)

RANKING = RankingRecord(
    ranking_id=7,
    prompt_id=3,
    prompt="Name a colour.",
    candidates=[
        {"id": 10, "text": "red", "model_version": "sft-1"},
        {"id": 11, "text": "blue", "model_version": "sft-1"},
        {"id": 12, "text": "potato", "model_version": None},
    ],
    groups=[[11], [10, 12]],
    display_order=[12, 10, 11],
    ratings={"10": {"likert": 5, "flags": []}, "11": {"likert": 6, "flags": ["expresses_opinion"]}},
    labeler_id=2,
    seconds_spent=31.5,
    created_at="2024-05-01T12:00:00+00:00",
)

SAMPLES = [
    SFTRecord(prompt="p", completion="c", prompt_id=1, demonstration_id=2, labeler_id=3),
    ComparisonRecord(prompt="p", chosen="a", rejected="b", prompt_id=1, ranking_id=2),
    GroupedRecord(prompt="p", responses=["a", "b", "c"], ranking=[[2], [0, 1]], prompt_id=1),
    RANKING,
    RatingRecord(
        rating_id=1,
        prompt_id=2,
        prompt="p",
        candidate_id=3,
        text="t",
        likert=4,
        model_version="m",
        flags=["hallucination"],
        comment="made up",
        labeler_id=5,
        created_at="2024-01-01T00:00:00",
    ),
    PromptRecord(prompt_id=1, text="hi", split="valid", category="chat", end_user_id="u9"),
]


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: r.kind)
def test_round_trip_through_json_preserves_record(record):
    line = record.to_json()
    again = parse_record(record.kind, json.loads(line))
    assert again == record
    assert RECORD_TYPES[record.kind] is type(record)


def test_record_types_cover_all_kinds():
    assert set(RECORD_TYPES) == {"sft", "rankings", "comparisons", "grouped", "ratings", "prompts"}
    assert SCHEMA_VERSION == 1


def test_from_dict_missing_key_raises_clear_error():
    with pytest.raises(ValueError, match="comparisons record is missing required key.*rejected"):
        ComparisonRecord.from_dict({"prompt": "p", "chosen": "a"})
    with pytest.raises(ValueError, match="must be a JSON object"):
        SFTRecord.from_dict(["p", "c"])


def test_from_dict_ignores_unknown_keys():
    record = SFTRecord.from_dict({"prompt": "p", "completion": "c", "new_field": 1})
    assert record == SFTRecord(prompt="p", completion="c")


def test_grouped_record_rejects_partial_ranking():
    with pytest.raises(ValueError, match="every response index exactly once"):
        GroupedRecord(prompt="p", responses=["a", "b", "c"], ranking=[[0], [1]])


def test_sft_chat_variant_converts_both_ways():
    record = SFTRecord(prompt="Say hi", completion="hi")
    chat = record.to_messages()
    assert chat["messages"][1] == {"role": "assistant", "content": "hi"}
    assert parse_record("sft", chat) == record
    with pytest.raises(ValueError, match="assistant"):
        parse_record("sft", {"messages": [{"role": "user", "content": "x"}]})


def test_comparisons_from_groups_skips_ties():
    pairs = list(comparisons_from_groups([[0], [1, 2], [3]]))
    assert pairs == [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]
    assert list(comparisons_from_groups([[0, 1, 2]])) == []
    assert len(list(comparisons_from_groups([[i] for i in range(9)]))) == 36


def test_ranking_record_expands_to_comparisons_and_grouped():
    comps = list(comparisons_from_ranking(RANKING))
    assert [(c.chosen, c.rejected) for c in comps] == [("blue", "red"), ("blue", "potato")]
    assert all(c.ranking_id == 7 and c.labeler_id == 2 for c in comps)
    grouped = RANKING.to_grouped()
    assert grouped.responses == ["red", "blue", "potato"]
    assert grouped.ranking == [[1], [0, 2]]


def test_jsonl_files_round_trip_and_report_bad_line(tmp_path):
    path = tmp_path / "sft.jsonl"
    records = [SFTRecord(prompt=f"p{i}", completion=f"c{i}") for i in range(3)]
    assert write_jsonl(path, records) == 3
    assert read_jsonl(path, "sft") == records
    path.write_text('{"prompt": "p", "completion": "c"}\n{"prompt": "p"}\n')
    with pytest.raises(ValueError, match=r"sft.jsonl:2: .*completion"):
        read_jsonl(path, "sft")
