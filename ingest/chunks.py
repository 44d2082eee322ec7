"""Tokenization with provenance: every chunk of S tokens knows its characters, page, page label and box."""

from bisect import bisect_right

import numpy as np

from ingest.extract import Extracted


def chunk_rows(doc: Extracted, spans: list[tuple[int, int]], n_tokens: int, chunk_size: int) -> list[dict]:
    """One `chunks` row per chunk of `chunk_size` tokens (the last one may be short: it is padded at encode),
    given each chunk's character span.

    page: the physical page (1-based) of the chunk's first word, page_end that of its last; bbox: the union
    of the boxes of the chunk's words on its first page, as JSON [x0, y0, x1, y1] in PDF points.
    """
    page_starts = [start for _, _, start in doc.pages]
    words = doc.words
    rows = []
    for i, (c0, c1) in enumerate(spans):
        t0 = i * chunk_size
        row = {
            "token_start": t0,
            "token_end": min(t0 + chunk_size, n_tokens),
            "char_start": c0,
            "char_end": c1,
            "text": doc.text[c0:c1],
            "page": None,
            "page_end": None,
            "page_label": None,
            "bbox": None,
        }
        if page_starts:
            first = doc.pages[max(bisect_right(page_starts, c0) - 1, 0)][0]
            last = doc.pages[max(bisect_right(page_starts, max(c1 - 1, c0)) - 1, 0)][0]
            if words is not None and len(words):
                lo = np.searchsorted(words[:, 1], c0, side="right")  # first word ending after c0
                hi = np.searchsorted(words[:, 0], c1, side="left")  # words starting before c1
                sel = words[lo:hi]
                if len(sel):  # pages of its words: a chunk starting at a page break is on the next page
                    first, last = int(sel[0, 2]), int(sel[-1, 2])
                    sel = sel[sel[:, 2] == first]
                    box = [sel[:, 3].min(), sel[:, 4].min(), sel[:, 5].max(), sel[:, 6].max()]
                    row["bbox"] = "[" + ", ".join(f"{x:.1f}" for x in box) + "]"
            row.update(page=first, page_end=last, page_label=doc.pages[first - 1][1] or None)
        rows.append(row)
    return rows
