"""Pictures of evidence: the region of a PDF page around a chunk, with the chunk highlighted."""

from pathlib import Path

import pymupdf
from PIL import Image


def render_chunk(path: str | Path, page: int, bbox: list[float] | None, dpi: int = 110) -> Image.Image:
    """The part of `page` (1-based) around `bbox` (PDF points), the box highlighted; the whole page
    when there is no box. Raises FileNotFoundError or ValueError naming the file when it cannot."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the source file is no longer there")
    with pymupdf.open(path) as doc:
        if not doc.is_pdf or not 1 <= page <= doc.page_count:
            raise ValueError(f"{path}: no PDF page {page}")
        pg = doc[page - 1]
        clip = pg.rect
        if bbox:
            box = pymupdf.Rect(bbox)
            orange, yellow = (0.9, 0.3, 0.0), (1.0, 0.85, 0.1)
            pg.draw_rect(box + (-2, -2, 2, 2), color=orange, fill=yellow, fill_opacity=0.35, width=1.2)
            # the page's full width, a band of text around the chunk
            top, bottom = max(pg.rect.y0, box.y0 - 160), min(pg.rect.y1, box.y1 + 160)
            clip = pymupdf.Rect(pg.rect.x0, top, pg.rect.x1, bottom)
        pix = pg.get_pixmap(dpi=dpi, clip=clip)
        return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
