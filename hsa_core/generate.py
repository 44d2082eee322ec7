"""Generation: prefill the prompt, then decode one token at a time against the chunk memory.

Each step reports, per HSA layer, which chunks the position that produced the token read."""

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from hsa_core.memory import MemoryView
from hsa_core.model import HSAModel, Selections


@dataclass
class LayerSelection:
    """One HSA layer's picks for one token, per KV head: (Hkv, K) each."""

    ids: torch.Tensor  # memory chunk id (the memory's `ids`), -1 for an empty slot or a prompt chunk
    own: torch.Tensor  # ordinal of the chunk of the prompt/answer itself, -1 otherwise
    weights: torch.Tensor


@dataclass
class Step:
    token: int
    layers: list[LayerSelection]
    logprob: float  # log p(token) under the model, at temperature 1: how sure the model was of it


def _last_position(sel: Selections, memory: MemoryView | None) -> list[LayerSelection]:
    out = []
    for idx, w in zip(sel.indices, sel.weights, strict=True):
        idx, w = idx[0, -1].cpu(), w[0, -1].float().cpu()  # (Hkv, K)
        is_ext = (idx >= 0) & (idx < sel.n_external)
        ids = torch.full_like(idx, -1)
        if memory is not None:
            ids[is_ext] = memory.ids.cpu()[idx[is_ext]]
        own = torch.where(idx >= sel.n_external, idx - sel.n_external, -1)
        out.append(LayerSelection(ids, own, w))
    return out


def sample(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> int:
    """Greedy at temperature 0, else a draw from softmax(logits / temperature)."""
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, -1)
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.no_grad()  # not inference_mode: the GPU SWA path caches its mask by tensor version
def generate(
    model: HSAModel,
    prompt_ids: torch.Tensor,
    memory: MemoryView | None = None,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    stop_ids: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
    top_k: int | None = None,
) -> Iterator[Step]:
    """Yield one Step per new token; stops after max_new_tokens or on a token in stop_ids (yielded).
    top_k overrides the config's chunks per token and HSA layer."""
    if prompt_ids.dim() != 1 or prompt_ids.numel() == 0:
        raise ValueError(f"prompt_ids must be a non-empty 1-D tensor, got shape {tuple(prompt_ids.shape)}")
    n_ext = memory.landmarks.shape[0] if memory is not None else 0
    state = model.new_state(1)
    ids = prompt_ids[None].to(next(model.parameters()).device)
    for _ in range(max_new_tokens):
        sel = Selections(n_ext)
        logits = model(ids, memory=memory, state=state, selections=sel, last_only=True, top_k=top_k)
        token = sample(logits[0, -1], temperature, generator)
        logprob = float(torch.log_softmax(logits[0, -1].float(), -1)[token])
        yield Step(token, _last_position(sel, memory), logprob)
        if token in stop_ids:
            return
        ids = torch.tensor([[token]], device=ids.device)
