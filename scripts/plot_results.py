"""Plot accuracy against length from a results JSON (the format `hsa eval` writes).

python scripts/plot_results.py docs/data/results-h200.json docs/img/results-h200.png
"""

import json
import sys
from pathlib import Path

from hsa_core.evaluate import Result, plot

if __name__ == "__main__":
    source, target = sys.argv[1:3]
    data = json.loads(Path(source).read_text())
    fields = ("task", "length", "samples", "accuracy", "evidence_recall", "seconds")
    results = [
        Result(**{k: r[k] for k in fields}, strict_accuracy=r.get("strict_accuracy")) for r in data["results"]
    ]
    plot(results, Path(target), title=f"{data.get('model', '')}: accuracy against context length")
