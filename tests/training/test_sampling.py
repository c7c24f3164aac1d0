"""Generation: response masks stop at eos, best-of-N keeps the top-scoring sample."""

import torch

from training.models import load_policy, load_tokenizer
from training.sampling import best_of_n, response_mask, sample


def test_response_mask_keeps_tokens_through_first_eos():
    eos = 1
    responses = torch.tensor([[5, 6, 1, 0, 0], [5, 1, 7, 1, 0], [5, 6, 7, 8, 9]])
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.equal(response_mask(responses, eos), expected)


def test_sample_returns_k_per_prompt_and_best_of_n_picks_the_max(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    model = load_policy(tiny_dir, tok).eval()
    torch.manual_seed(0)
    samples = sample(model, tok, ["the cat", "a dog"], 3, max_new_tokens=12)
    assert [len(s) for s in samples] == [3, 3]
    assert len({*samples[0], *samples[1]}) > 1  # sampling, not a constant output

    def longest(prompts, texts):
        return torch.tensor([float(len(t)) for t in texts])

    torch.manual_seed(1)
    best = best_of_n(model, tok, longest, ["the cat"], 6, max_new_tokens=12)
    torch.manual_seed(1)
    candidates = sample(model, tok, ["the cat"], 6, max_new_tokens=12)[0]
    assert best[0][0] == max(candidates, key=len)
    assert best[0][1] == float(len(best[0][0]))
