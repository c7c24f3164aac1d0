"""The numpy reader of JSON integer lists against json.loads."""

import json

import numpy as np

from app.agreement import compute, loading, parsing


def test_int_lists_reads_groups_like_json():
    texts = ['[[3, 12], [], [7]]', None, "[[1]]", "[ [40] ,[5,6] ]", "[]"]
    row, depth, inner, value = parsing.int_lists(texts)
    expected = [(r, g, v) for r, t in enumerate(texts)
                for g, group in enumerate(json.loads(t or "[]")) for v in group]
    assert list(zip(row.tolist(), inner.tolist(), value.tolist(), strict=True)) == expected
    assert set(depth.tolist()) == {2}


def test_int_lists_gives_up_on_anything_but_integers():
    for text in ['[["a"]]', "[null]", "[1.5]", "[-1]", "5", "[[1]", "[1]]"]:
        assert parsing.int_lists([text]) is None, text


def test_flat_rankings_matches_the_json_path_and_falls_back_on_repeats():
    groups = ['[[30], [10, 20], [40]]', '[[2, 1]]', '[[5], [5]]', None]
    shown = ["[20, 10, 30, 40]", "[]", "[5]", None]
    fast = loading._flat_rankings(groups, shown)
    slow = loading._flat_from_json(groups, shown)
    for a, b in zip(fast, slow, strict=True):
        assert a.tolist() == b.tolist()
    k, ids, ranks, first = fast
    assert k.tolist() == [4, 2, 1, 0] and first.tolist() == [20, -1, 5, -1]
    assert ranks[:4].tolist() == [1, 1, 0, 2]  # ids 10, 20, 30, 40


def test_set_keys_equal_for_equal_sets_only():
    k = np.array([3, 3, 2, 3])
    ids = compute.padded(np.array([1, 2, 3, 1, 2, 3, 1, 2, 1, 2, 4]), k)
    keys = compute.set_keys(ids, k)
    assert keys[0] == keys[1]
    assert len({keys[0], keys[2], keys[3]}) == 3
