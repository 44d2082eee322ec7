"""Attention kernels, one folder per op, each with its PyTorch reference beside the fast code."""

from kernels.hsa import hsa_attention
from kernels.swa import sliding_window_attention

__all__ = ["hsa_attention", "sliding_window_attention"]
