"""Reading exports (JSONL and Parquet) and tokenising them for the stages."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from training.data import encode_pair, read_rankings, read_rows, read_texts
from training.models import load_policy, load_tokenizer, save_model_dir
from training.records import (
    ComparisonRecord,
    GroupedRecord,
    PromptRecord,
    RankingRecord,
    SFTRecord,
    comparisons_from_groups,
    write_jsonl,
)


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
    assert n_prompt == 20 - len(tok("hello", add_special_tokens=False).input_ids) - 1


def test_comparisons_of_one_ranking_come_back_as_one_kway_element(tmp_path):
    from training.records import comparisons_from_ranking

    ranking = RankingRecord(
        ranking_id=5,
        prompt_id=2,
        prompt="p",
        candidates=[{"id": c, "text": t} for c, t in [(1, "a"), (2, "b"), (3, "c"), (4, "d")]],
        groups=[[3], [1, 4], [2]],  # c > a = d > b: five pairs, the tie gives none
        labeler_id=9,
    )
    pairs = list(comparisons_from_ranking(ranking))
    other = ComparisonRecord(prompt="q", chosen="x", rejected="y")  # no ids: stays K = 2
    write_jsonl(tmp_path / "c.jsonl", [*pairs, other])
    grouped = read_rankings(tmp_path / "c.jsonl")
    assert len(grouped) == 2
    kway = grouped[0]
    assert len(kway.responses) == 4 and kway.ranking_id == 5 and kway.prompt_id == 2
    text_pairs = {
        (kway.responses[w], kway.responses[lo]) for w, lo in comparisons_from_groups(kway.ranking)
    }
    assert text_pairs == {(p.chosen, p.rejected) for p in pairs}
    assert grouped[1].responses == ["x", "y"]
    # a > b, b > c, c > a: no ranking gives these pairs, so they stay K = 2 elements
    cycle = [
        ComparisonRecord(prompt="p", chosen=w, rejected=lo, ranking_id=1, prompt_id=1)
        for w, lo in [("a", "b"), ("b", "c"), ("c", "a")]
    ]
    write_jsonl(tmp_path / "cycle.jsonl", cycle)
    grouped = read_rankings(tmp_path / "cycle.jsonl")
    assert [g.responses for g in grouped] == [["a", "b"], ["b", "c"], ["c", "a"]]


def test_holdout_split_keeps_every_record_of_a_prompt_on_one_side(tmp_path):
    from training.data import prompt_key, split_holdout
    from training.reward import RewardConfig, load_splits

    # three labelers ranked each of 20 prompts
    records = [
        GroupedRecord(f"prompt {p}", ["a", "b"], [[0], [1]], prompt_id=p, labeler_id=lab)
        for p in range(20)
        for lab in range(3)
    ]
    write_jsonl(tmp_path / "g.jsonl", records)
    train, valid = load_splits(
        RewardConfig(train_data=str(tmp_path / "g.jsonl"), valid_fraction=0.2, seed=3)
    )
    assert len(valid) >= 12 and len(train) + len(valid) == 60
    assert not {r.prompt_id for r in train} & {r.prompt_id for r in valid}
    # without ids the prompt text keeps them together
    no_ids = [SFTRecord(prompt=f"q{i % 5}", completion=str(i)) for i in range(25)]
    kept, held = split_holdout(no_ids, 0.2, seed=0, key=prompt_key)
    assert held and not {r.prompt for r in kept} & {r.prompt for r in held}


def test_read_prompts_keeps_the_train_split_by_default(tmp_path):
    from training.data import read_prompts

    rows = [
        PromptRecord(prompt_id=i, text=f"t{i}", split=s)
        for i, s in enumerate(["train", "valid", "test", "train"])
    ]
    write_jsonl(tmp_path / "p.jsonl", rows)
    assert read_prompts(tmp_path / "p.jsonl") == ["t0", "t3"]
    assert read_prompts(tmp_path / "p.jsonl", "valid") == ["t1"]
    assert read_prompts(tmp_path / "p.jsonl", "all") == ["t0", "t1", "t2", "t3"]
    write_jsonl(tmp_path / "v.jsonl", rows[1:3])
    with pytest.raises(ValueError, match="no prompts in split 'train'"):
        read_prompts(tmp_path / "v.jsonl")


def test_prompt_layout_is_the_tokenizers_chat_template(tiny_dir, tmp_path):
    from training.data import SFTCollator, format_prompt, read_sft

    tok = load_tokenizer(tiny_dir)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert tok.apply_chat_template(messages, tokenize=False) == format_prompt("hi") + "yo</s>"
    assert (
        tok.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=False)
        == format_prompt("hi", tok)
        == "hi\n\n"
    )
    # chat data goes through the template: turns, not a "\n" join of their contents
    chat = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
        {"role": "assistant", "content": "four"},
    ]
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": chat}) + "\n")
    (record,) = read_sft(tmp_path / "chat.jsonl")
    ids = SFTCollator(tok, 128)([record])["input_ids"][0].tolist()
    assert tok.decode(ids) == tok.apply_chat_template(chat, tokenize=False)
    # a model directory we save carries the template: plain transformers sees the layout
    save_model_dir(
        tmp_path / "m",
        load_policy(tiny_dir, tok),
        tok,
        kind="base",
        parent_model=None,
        config={},
        metrics={},
    )
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert reloaded.apply_chat_template(messages, tokenize=False) == "hi\n\nyo</s>"
