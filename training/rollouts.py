"""Where PPO's rollout responses come from: transformers' `generate`, or a vLLM engine.

`rollout_backend="hf"` (the default) samples with the policy itself. `"vllm"` runs a vLLM
engine inside the training process, on the same GPU, with a share of its memory
(`vllm_gpu_memory`): the engine starts from the policy's model directory, and before every
rollout after the first the policy's current weights are loaded into it (with LoRA, each
adapted layer's base weight plus its adapters' delta), so each rollout samples from the
policy the last update left. `"auto"` takes vLLM where it is installed and a CUDA GPU is
present, `generate` otherwise, and says why; a run that names `"vllm"` where it cannot run
stops before any model loads or anything is written.

Either engine hands back what `generate_ids` returns (left-padded prompt ids and mask,
response ids cut at the cap and padded with the pad token, a mask through the first eos),
so everything after generation is one code path: the log-probs of the PPO ratio and of the
KL are computed by the policy in torch, never taken from vLLM. Evaluation samples (the
kept step's choice, the test split) stay with `generate`: they are seeded, and the SFT
reference is the policy with its adapters off, which the engine does not hold.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch

from training.contract import PPOConfig
from training.data import lengths_mask, pad, prompt_batch
from training.sampling import generate_ids, response_mask, vllm_installed

BACKENDS = ("hf", "vllm", "auto")


class Rollouts(Protocol):
    """An engine that samples one response per prompt as `generate_ids`'s tensors."""

    def generate(
        self, policy: Any, tok: Any, prompts: Sequence[str], cfg: PPOConfig
    ) -> dict[str, torch.Tensor]: ...

    def sync(self, policy: Any) -> None: ...


class HFRollouts:
    """transformers' `generate` on the policy itself, which is always up to date."""

    def generate(
        self, policy: Any, tok: Any, prompts: Sequence[str], cfg: PPOConfig
    ) -> dict[str, torch.Tensor]:
        """One sampled response per prompt: prompt ids/mask (B, P), response ids/mask (B, T)."""
        return generate_ids(
            policy, tok, prompts, cfg.max_new_tokens, cfg.max_prompt_len, cfg.temperature
        )

    def sync(self, policy: Any) -> None:
        """Nothing to load: the policy samples its own responses."""


def cuda_present() -> bool:
    """Whether torch sees a CUDA GPU (the only device vLLM runs on here)."""
    return torch.cuda.is_available()


def vllm_unusable(cfg: PPOConfig) -> str | None:
    """Why vLLM cannot sample this run's rollouts, or None when it can."""
    if not vllm_installed():
        return "vLLM is not installed"
    if cfg.cpu:
        return "the run is on the CPU (cpu=True)"
    if not cuda_present():
        return "there is no CUDA GPU"
    return None


def choose_backend(cfg: PPOConfig) -> tuple[str, str]:
    """("hf" | "vllm", why) for cfg.rollout_backend on this machine; a ValueError for an
    unknown name, a RuntimeError when "vllm" is named and cannot run."""
    asked = cfg.rollout_backend
    if asked not in BACKENDS:
        raise ValueError(f"rollout_backend must be hf, vllm or auto, not {asked!r}")
    if asked == "hf":
        return "hf", "rollout_backend=hf"
    why_not = vllm_unusable(cfg)
    if why_not is None:
        if not 0.0 < cfg.vllm_gpu_memory < 1.0:  # the rest of the GPU trains the models
            raise ValueError(f"vllm_gpu_memory must be between 0 and 1, not {cfg.vllm_gpu_memory}")
        return "vllm", f"rollout_backend={asked}: vLLM is installed and a GPU is present"
    if asked == "vllm":
        raise RuntimeError(
            f"rollout_backend=vllm needs vLLM installed and a CUDA GPU, and here {why_not}; "
            "use rollout_backend=hf, or auto to fall back to transformers"
        )
    return "hf", f"rollout_backend=auto: {why_not}"


def response_batch(
    responses: Sequence[Sequence[int]], tok: Any, max_new_tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """An engine's response token lists as `generate_ids` lays them out: ids (B, T) cut at
    the cap and padded with the pad token, and a mask (B, T) over each response's own
    tokens up to and including its first eos."""
    rows = [list(r)[:max_new_tokens] for r in responses]
    if not any(rows):
        empty = torch.zeros((len(rows), 0), dtype=torch.long)
        return empty, empty.clone()
    ids = pad(rows, tok.pad_token_id)
    # the lengths as well: an answer the engine ended on a token other than the tokenizer's
    # eos must not take the padding after it into the response
    return ids, lengths_mask(rows) * response_mask(ids, tok.eos_token_id)


def policy_weights(model: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of the weights training changes, named as in the model directory.

    Without LoRA, every parameter. With LoRA, the weight of each adapted layer with its
    adapters' delta added, computed aside: the policy is not merged and unmerged, so no
    rounding builds up in its base weights over the steps. One tensor at a time.
    """
    if not hasattr(model, "get_base_model"):
        for name, param in model.named_parameters():
            yield name, param.detach()
        return
    from peft.tuners.lora import LoraLayer

    for name, module in model.get_base_model().named_modules():
        if not isinstance(module, LoraLayer):
            continue
        layer: Any = module  # each concrete layer class (Linear, Conv1D…) has the methods
        weight = layer.get_base_layer().weight.detach()
        if not layer.merged:
            for adapter in layer.active_adapters:
                if adapter in getattr(layer, "lora_variant", {}):
                    raise NotImplementedError(f"{name}: only plain LoRA adapters reach vLLM")
                if adapter in layer.lora_A:
                    weight = weight + layer.get_delta_weight(adapter).to(weight.dtype)
        yield f"{name}.weight", weight


def engine_model(llm: Any) -> Any:
    """The torch model inside an engine whose worker runs in this process."""
    try:
        return llm.llm_engine.model_executor.driver_worker.model_runner.model
    except AttributeError as exc:
        raise RuntimeError(
            "this vLLM does not keep its model worker in the training process, so the "
            "policy's weights cannot be loaded into it"
        ) from exc


def context_length(cfg: PPOConfig) -> int:
    """Tokens the engine must hold per sequence: the longest prompt plus the longest answer,
    within the model's positions (a smaller cache leaves more of the GPU to training)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(cfg.policy_model)
    positions = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    wanted = cfg.max_prompt_len + cfg.max_new_tokens
    return min(wanted, int(positions)) if positions else wanted


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launcher_env(rank: int, local_rank: int, world_size: int) -> None:
    """torchrun's variables, which vLLM's external launcher reads; those set are kept."""
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("LOCAL_RANK", str(local_rank))
    os.environ.setdefault("WORLD_SIZE", str(world_size))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(free_port())


class VLLMRollouts:
    """A vLLM engine in this process, on its GPU, fed the policy's weights before each use."""

    def __init__(self, cfg: PPOConfig, rank: int = 0, local_rank: int = 0, world_size: int = 1):
        from vllm import LLM, SamplingParams  # only where choose_backend found it

        launcher_env(rank, local_rank, world_size)
        self.params_cls = SamplingParams
        self.llm = LLM(
            model=str(cfg.policy_model),
            seed=cfg.seed + rank,  # each process samples its own prompts
            gpu_memory_utilization=cfg.vllm_gpu_memory,  # the rest holds the models training
            max_model_len=context_length(cfg),
            dtype="bfloat16" if cfg.bf16 else "auto",
            # the worker in this process (one per training process), so its model is reachable
            distributed_executor_backend="external_launcher",
        )

    def generate(
        self, policy: Any, tok: Any, prompts: Sequence[str], cfg: PPOConfig
    ) -> dict[str, torch.Tensor]:
        """The engine's responses to the prompt ids `generate` would get, as its tensors."""
        batch = prompt_batch(tok, prompts, cfg.max_prompt_len)
        ids = [
            row[m.bool()].tolist()
            for row, m in zip(batch["input_ids"], batch["attention_mask"], strict=True)
        ]
        params = self.params_cls(
            n=1,
            max_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=1.0,
            # only the tokenizer's eos ends an answer, as in `generate` (not every end token a
            # generation config lists); the engine returns it with the answer, as generate does
            ignore_eos=True,
            stop_token_ids=[tok.eos_token_id],
        )
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
        answers = [out.outputs[0].token_ids for out in outputs]
        responses, rmask = response_batch(answers, tok, cfg.max_new_tokens)
        device = next(policy.parameters()).device
        return {
            "prompt_ids": batch["input_ids"].to(device),
            "prompt_mask": batch["attention_mask"].to(device),
            "response_ids": responses.to(device),
            "response_mask": rmask.to(device),
        }

    def sync(self, policy: Any) -> None:
        """Load the policy's current weights into the engine, and drop the prompt KV blocks
        it cached under the old ones (the same prompts come back in later passes)."""
        engine_model(self.llm).load_weights(policy_weights(policy))
        self.llm.reset_prefix_cache()


def make_rollouts(backend: str, cfg: PPOConfig, accelerator: Any) -> Rollouts:
    """The engine `choose_backend` picked, for this training process."""
    if backend == "vllm":
        return VLLMRollouts(
            cfg, accelerator.process_index, accelerator.local_process_index,
            accelerator.num_processes,
        )
    return HFRollouts()
