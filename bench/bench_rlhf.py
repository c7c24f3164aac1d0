"""The hidden-preference experiment: SFT -> K-way RM -> PPO / PPO-ptx on the tiny model, CPU.

Answers look like "it is kind and rude and clever." and a hidden rule decides what is
better: (# of kind/clear/true/helpful) − (# of rude/vague/false/lazy). Labelers rank K
answers by that rule plus noise (their pairwise agreement is printed, near the paper's
~73 %). The script then trains every stage with `python -m training`'s own functions and
prints, per stage:

  - RM held-out pairwise accuracy vs the labelers' ceiling (how often the hidden rule
    itself agrees with a held-out label) and vs the clean rule;
  - PPO and PPO-ptx (γ = 27.8) win rate against SFT under the hidden rule on test prompts,
    their KL to SFT, and held-out pretraining LM loss vs SFT's (PPO-ptx must stay within
    5 %);
  - final KL at three values of β (must fall as β rises);
  - a γ sweep (win rate, KL, LM-loss change).

    .venv/bin/python bench/bench_rlhf.py [--steps 40] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from training.data import read_texts  # noqa: E402
from training.models import load_policy, load_tokenizer  # noqa: E402
from training.ppo import PPOConfig, heldout_lm_loss, train_ppo  # noqa: E402
from training.records import (  # noqa: E402
    GroupedRecord,
    PromptRecord,
    SFTRecord,
    comparisons_from_groups,
    write_jsonl,
)
from training.reward import RewardConfig, train_reward_model  # noqa: E402
from training.sampling import sample  # noqa: E402
from training.sft import SFTConfig, train_sft  # noqa: E402
from training.tiny import BAD, GOOD, WORDS, TinyConfig  # noqa: E402

NEUTRAL = WORDS["adj"]
VOCAB = NEUTRAL + list(GOOD + BAD)


def hidden_score(text: str) -> int:
    """The rule the labelers (noisily) follow and the RM never sees."""
    words = text.replace(".", " ").split()
    return sum(w in GOOD for w in words) - sum(w in BAD for w in words)


def answer(rng: random.Random) -> str:
    words = [rng.choice(VOCAB) for _ in range(rng.randint(2, 4))]
    return "it is " + " and ".join(words) + "."


def pretrain_docs(n: int, seed: int) -> list[str]:
    """The pretraining distribution: toy-grammar sentences with answer-like ones mixed in,
    so the base already knows every word the labelers care about (as a real LM does)."""
    from training.toy_english import sentence as synthetic_sentence

    rng = random.Random(seed)
    return [
        " ".join(
            answer(rng) if rng.random() < 0.4 else synthetic_sentence(rng)
            for _ in range(rng.randint(2, 4))
        )
        for _ in range(n)
    ]


def build_base(out: Path, steps: int) -> Path:
    """A tiny GPT-2 trained to near convergence on `pretrain_docs`."""
    from training.outputs import atomic_dir, write_manifest
    from training.tiny import build_model, tiny_tokenizer

    cfg = TinyConfig(n_layer=2, n_embd=64, n_head=4, n_positions=256, lr=3e-3)
    tok = tiny_tokenizer()
    model = build_model(cfg, tok)
    texts = pretrain_docs(steps * 16, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=cfg.lr / 10)
    model.train()
    for step in range(steps):
        enc = tok(
            texts[step * 16 : (step + 1) * 16],
            max_length=96,
            truncation=True,
            padding=True,
            return_tensors="pt",
        )
        loss = model(**enc, labels=enc.input_ids.masked_fill(enc.attention_mask == 0, -100)).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_manifest(
            tmp, kind="base", parent_model=None, config=cfg, metrics={"warmup_loss": loss.item()}
        )
    return out


def prompt_text(i: int) -> str:
    return f"describe the {WORDS['noun'][i % len(WORDS['noun'])]} {i}."


def label(rng: random.Random, responses: list[str], noise: float) -> list[list[int]]:
    """One labeler's ranking: hidden score + Gaussian noise, best first."""
    noisy = [hidden_score(r) + rng.gauss(0, noise) for r in responses]
    return [[j] for j in sorted(range(len(responses)), key=lambda j: -noisy[j])]


def agreement(rng: random.Random, noise: float, n: int = 4000) -> tuple[float, float]:
    """(labeler-labeler pairwise agreement, hidden rule vs labeler agreement) on fresh pairs."""
    agree = ceiling = 0.0
    for _ in range(n):
        a, b = answer(rng), answer(rng)
        l1, l2 = label(rng, [a, b], noise), label(rng, [a, b], noise)
        agree += l1 == l2
        sa, sb = hidden_score(a), hidden_score(b)
        ceiling += 0.5 if sa == sb else float((sa > sb) == (l1[0] == [0]))
    return agree / n, ceiling / n


def write_data(root: Path, args: argparse.Namespace) -> dict:
    rng = random.Random(0)
    n = args.prompts
    splits = ["train"] * int(n * 0.8) + ["valid"] * int(n * 0.1)
    splits += ["test"] * (n - len(splits))
    write_jsonl(
        root / "prompts.jsonl",
        [PromptRecord(prompt_id=i, text=prompt_text(i), split=s) for i, s in enumerate(splits)],
    )
    write_jsonl(
        root / "sft.jsonl",
        [SFTRecord(prompt=prompt_text(i), completion=answer(rng), prompt_id=i) for i in range(n)],
    )
    rankings = []
    for i in range(args.rankings):
        responses = [answer(rng) for _ in range(args.k)]
        rankings.append(
            GroupedRecord(prompt_text(i), responses, label(rng, responses, args.noise), prompt_id=i)
        )
    cut = int(0.85 * len(rankings))
    write_jsonl(root / "rank_train.jsonl", rankings[:cut])
    write_jsonl(root / "rank_valid.jsonl", rankings[cut:])
    (root / "pretrain.txt").write_text("\n\n".join(pretrain_docs(600, seed=41)))
    labeler_agreement, rule_vs_label = agreement(rng, args.noise)
    # the ceiling on the held-out rankings themselves: the hidden rule's pairwise accuracy
    got = total = 0.0
    for r in rankings[cut:]:
        for w, lo in comparisons_from_groups(r.ranking):
            sw, sl = hidden_score(r.responses[w]), hidden_score(r.responses[lo])
            got += 0.5 if sw == sl else float(sw > sl)
            total += 1
    return {
        "labeler_agreement": labeler_agreement,
        "ceiling_fresh": rule_vs_label,
        "ceiling_heldout": got / total,
        "test_prompts": [prompt_text(i) for i, s in enumerate(splits) if s == "test"],
    }


@torch.no_grad()
def rm_clean_accuracy(rm_dir: Path, n: int = 400) -> float:
    """RM accuracy on fresh pairs ordered by the clean hidden rule (no label noise)."""
    from training.sampling import rm_reward_fn

    rng = random.Random(7)
    score = rm_reward_fn(rm_dir)
    got = total = 0
    for _ in range(n):
        a, b = answer(rng), answer(rng)
        if hidden_score(a) == hidden_score(b):
            continue
        s = score(["describe the cat 1."] * 2, [a, b])
        got += int((s[0] > s[1]) == (hidden_score(a) > hidden_score(b)))
        total += 1
    return got / total


@torch.no_grad()
def answers_of(model_dir: Path, prompts: list[str], seed: int) -> list[str]:
    """One sampled answer per prompt (temperature 1, as in the rollouts)."""
    tok = load_tokenizer(model_dir)
    tok.padding_side = "left"
    model = load_policy(model_dir, tok).eval()
    torch.manual_seed(seed)
    return [s[0] for s in sample(model, tok, prompts, 1, max_new_tokens=32)]


@torch.no_grad()
def win_rate(model_dir: Path, sft_answers: list[str], prompts: list[str], seed: int) -> float:
    """Share of test prompts where the model's answer beats SFT's under the hidden rule."""
    answers = answers_of(model_dir, prompts, seed)
    wins = 0.0
    for a, b in zip(answers, sft_answers, strict=True):
        sa, sb = hidden_score(a), hidden_score(b)
        wins += 0.5 if sa == sb else float(sa > sb)
    return wins / len(prompts)


def lm_loss_of(model_dir: Path, texts: list[str]) -> float:
    tok = load_tokenizer(model_dir)
    model = load_policy(model_dir, tok).eval()
    return heldout_lm_loss(model, tok, texts, PPOConfig(ptx_max_len=96))


def done(path: Path) -> bool:
    """A stage already written in --out (a rerun reuses it)."""
    return (path / "manifest.json").exists()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=400)
    parser.add_argument("--rankings", type=int, default=600)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--noise", type=float, default=0.9, help="labeler noise (std)")
    parser.add_argument("--steps", type=int, default=40, help="PPO steps per run")
    parser.add_argument("--rollout", type=int, default=32)
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.0, 2.78, 27.8, 278.0])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.02, 0.1, 0.5])
    parser.add_argument("--out", default=None, help="keep the run's files here")
    parser.add_argument("--base", default=None, help="a prebuilt base model directory to reuse")
    parser.add_argument("--build-base", default=None, help="only build the base model here")
    parser.add_argument("--base-steps", type=int, default=1500, help="base warm-up steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    started = time.perf_counter()
    if args.build_base:
        build_base(Path(args.build_base), args.base_steps)
        return

    with tempfile.TemporaryDirectory(prefix="bench-rlhf-") as tmp:
        root = Path(args.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        data = write_data(root, args)
        # a base model trained to near convergence on the pretraining distribution, as a
        # real one is: then the ptx term can only hold LM loss, not keep lowering it
        base = Path(args.base) if args.base else build_base(root / "base", args.base_steps)
        sft = root / "sft" if done(root / "sft") else train_sft(
            SFTConfig(
                base_model=str(base),
                train_data=str(root / "sft.jsonl"),
                out=str(root / "sft"),
                epochs=4,
                batch_size=16,
                lr=3e-4,
                max_len=96,
                select_by="last",
                tracker="none",
            )
        )
        rm = root / "rm" if done(root / "rm") else train_reward_model(
            RewardConfig(
                base_model=str(sft),
                train_data=str(root / "rank_train.jsonl"),
                valid_data=str(root / "rank_valid.jsonl"),
                out=str(root / "rm"),
                epochs=2,
                prompts_per_step=16,
                lr=5e-4,
                max_len=96,
                demonstrations=str(root / "sft.jsonl"),
                tracker="none",
            )
        )
        rm_acc = json.loads((rm / "manifest.json").read_text())["metrics"]["val_accuracy"]
        rm_clean = rm_clean_accuracy(rm)
        texts = read_texts(root / "pretrain.txt")
        # the PPO runs hold out the first 32 shuffled texts; use disjoint ones for SFT too
        heldout = pretrain_docs(32, seed=99)
        sft_loss = lm_loss_of(sft, heldout)
        base_loss = lm_loss_of(base, heldout)
        sft_answers = answers_of(sft, data["test_prompts"], 123)
        print("SFT answers:", sft_answers[:3])
        del texts

        def ppo(name: str, beta: float, gamma: float) -> dict:
            t0 = time.perf_counter()
            out = root / name if done(root / name) else train_ppo(
                PPOConfig(
                    policy_model=str(sft),
                    reward_model=str(rm),
                    prompts=str(root / "prompts.jsonl"),
                    out=str(root / name),
                    pretrain_data=str(root / "pretrain.txt"),
                    kl_coef=beta,
                    ptx_coef=gamma,
                    steps=args.steps,
                    rollout_size=args.rollout,
                    minibatch_size=16,
                    ppo_epochs=2,
                    lr=3e-4,
                    value_lr=3e-4,
                    max_new_tokens=24,
                    ptx_batch_size=32,
                    ptx_max_len=96,
                    heldout_texts=32,
                    eval_every=5,
                    eval_size=32,
                    missing_eos_penalty=1.0,
                    tracker="none",
                    seed=0,
                )
            )
            m = json.loads((out / "manifest.json").read_text())["metrics"]
            print(name, "answers:", answers_of(out, data["test_prompts"][:3], 5))
            return {
                "name": name,
                "beta": beta,
                "gamma": gamma,
                "win_rate": win_rate(out, sft_answers, data["test_prompts"], seed=123),
                "kl": m.get("eval_kl", m["kl"]),
                "lm_loss": lm_loss_of(out, heldout),
                "selected_step": m["selected_step"],
                "no_eos": m["no_eos_share"],
                "seconds": time.perf_counter() - t0,
            }

        runs = {}
        for g in args.gammas:
            runs[("g", g)] = ppo(f"ppo_g{g}", args.betas[0], g)
        for b in args.betas[1:]:
            runs[("b", b)] = ppo(f"ppo_b{b}", b, 0.0)
        runs[("b", args.betas[0])] = (
            runs[("g", 0.0)] if 0.0 in args.gammas else ppo("ppo_b0", args.betas[0], 0.0)
        )

    print(
        f"\nhidden-preference experiment (tiny GPT-2, {args.threads} thread, "
        f"{args.steps} PPO steps x {args.rollout} episodes)"
    )
    print(
        f"labelers: pairwise agreement {data['labeler_agreement']:.3f}; ceiling (hidden rule "
        f"vs a held-out label) {data['ceiling_heldout']:.3f}"
    )
    print(
        f"RM (K={args.k}): held-out accuracy {rm_acc:.3f} vs ceiling "
        f"{data['ceiling_heldout']:.3f}; vs the clean rule {rm_clean:.3f}"
    )
    print(f"SFT: held-out LM loss {sft_loss:.3f} (base model {base_loss:.3f})")
    plain, ptx = runs[("g", 0.0)], runs.get(("g", 27.8))
    for r, label in [(plain, "PPO"), (ptx, "PPO-ptx (γ=27.8)")]:
        if r is None:
            continue
        change = 100 * (r["lm_loss"] / sft_loss - 1)
        print(
            f"{label:>17}: win rate vs SFT {r['win_rate']:.3f}, KL {r['kl']:.2f} nats, "
            f"held-out LM loss {r['lm_loss']:.3f} ({change:+.1f}% vs SFT"
            f"{', within 5%' if abs(change) <= 5 else ', NOT within 5%'}), "
            f"kept step {r['selected_step']}"
        )
    kls = [runs[("b", b)]["kl"] for b in args.betas]
    falls = all(a > b for a, b in zip(kls, kls[1:], strict=False))
    print(
        "KL by β: "
        + ", ".join(f"β={b}: {k:.2f}" for b, k in zip(args.betas, kls, strict=True))
        + ("  (falls: ok)" if falls else "  (does NOT fall)")
    )
    print(f"{'γ':>7} {'win':>6} {'KL':>7} {'LM loss':>8} {'vs SFT':>7}")
    for g in args.gammas:
        r = runs[("g", g)]
        print(
            f"{g:>7} {r['win_rate']:>6.3f} {r['kl']:>7.2f} {r['lm_loss']:>8.3f} "
            f"{100 * (r['lm_loss'] / sft_loss - 1):>+6.1f}%"
        )
    print(f"total {time.perf_counter() - started:.0f} s")
    print(
        json.dumps(
            {
                "data": {k: v for k, v in data.items() if k != "test_prompts"},
                "rm_acc": rm_acc,
                "rm_clean": rm_clean,
                "sft_lm_loss": sft_loss,
                "runs": [r for r in runs.values()],
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
