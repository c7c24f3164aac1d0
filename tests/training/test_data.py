"""Reading exports (JSONL and Parquet) and tokenising them for the stages."""

import pyarrow as pa
import pyarrow.parquet as pq

from training.data import encode_pair, read_rankings, read_rows, read_texts
from training.models import load_tokenizer
from training.records import ComparisonRecord, GroupedRecord, RankingRecord, write_jsonl


def test_parquet_and_jsonl_exports_read_the_same(tmp_path):
    records = [GroupedRecord("p", ["a", "b", "c"], [[1], [0, 2]], prompt_id=4)]
    write_jsonl(tmp_path / "g.jsonl", records)
    pq.write_table(pa.Table.from_pylist([r.to_dict() for r in records]), tmp_path / "g.parquet")
    assert read_rows(tmp_path / "g.parquet") == read_rows(tmp_path / "g.jsonl")
    assert read_rankings(tmp_path / "g.parquet") == records


def test_read_rankings_accepts_rankings_and_comparisons(tmp_path):
    ranking = RankingRecord(
        ranking_id=1,
        prompt_id=2,
        prompt="p",
        candidates=[{"id": 7, "text": "x"}, {"id": 9, "text": "y"}],
        groups=[[9], [7]],
    )
    write_jsonl(tmp_path / "r.jsonl", [ranking])
    assert read_rankings(tmp_path / "r.jsonl")[0].ranking == [[1], [0]]
    write_jsonl(tmp_path / "c.jsonl", [ComparisonRecord(prompt="p", chosen="good", rejected="bad")])
    pair = read_rankings(tmp_path / "c.jsonl")[0]
    assert pair.responses == ["good", "bad"] and pair.ranking == [[0], [1]]


def test_read_texts_splits_plain_text_on_blank_lines(tmp_path):
    (tmp_path / "t.txt").write_text("one doc\nstill one\n\n\nsecond doc\n")
    assert read_texts(tmp_path / "t.txt") == ["one doc\nstill one", "second doc"]


def test_encode_pair_truncates_the_prompt_first_and_keeps_eos(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    ids, n_prompt = encode_pair(tok, "x" * 100, "hello", max_len=20)
    assert len(ids) == 20 and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[n_prompt:-1]) == "hello"
    assert n_prompt == 20 - len("hello") - 1
