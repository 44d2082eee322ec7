"""Average two checkpoints of one architecture, weight by weight (`hsa_core.average_models`), and save
the result as bf16, as the shipped files are: the shipped reader, run 12, is run 11 d and its vt
fine-tune lex-f mixed half and half (docs/training-notes.md, seventeenth session).

PYTHONPATH=. python scripts/average_weights.py A B --weight W --out DIR   # (1 - W) * A + W * B
"""

import argparse

import torch

from hsa_core import average_models, save_model

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--weight", type=float, required=True, help="the share of B, from 0 to 1")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    print(save_model(average_models(args.a, args.b, args.weight).to(torch.bfloat16), args.out))
