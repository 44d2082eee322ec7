"""The SWA+HSA reader: config, model, memory, generation with a selection trace, tokenizer."""

from hsa_core.checkpoint import ModelNotFound, average_models, load_model, save_model
from hsa_core.config import HSAConfig
from hsa_core.memory import ChunkMemory, MemoryView
from hsa_core.model import HSAModel

__all__ = [
    "ChunkMemory",
    "HSAConfig",
    "HSAModel",
    "MemoryView",
    "ModelNotFound",
    "average_models",
    "load_model",
    "save_model",
]
