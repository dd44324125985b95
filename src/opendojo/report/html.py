"""A self-contained HTML report: figures are embedded as base64 PNG, so the file needs no network.

The report is a list of sections; each section holds paragraphs, captioned figures and tables, in order.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; background: #f4f5f7;
       color: #1d2230; }
header { background: #111827; color: #f9fafb; padding: 28px 48px; }
header h1 { margin: 0 0 6px 0; font-size: 28px; }
header p { margin: 0; color: #cbd5e1; }
main { max-width: 1180px; margin: 0 auto; padding: 18px 32px 48px 32px; }
section { background: #fff; border-radius: 10px; padding: 18px 26px; margin: 22px 0;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }
h2 { margin-top: 4px; font-size: 21px; border-bottom: 2px solid #e5e7eb; padding-bottom: 6px; }
figure { margin: 16px 0; }
figure img { max-width: 100%; border: 1px solid #e5e7eb; border-radius: 6px; }
figcaption { color: #4b5563; font-size: 14px; margin-top: 6px; }
table { border-collapse: collapse; margin: 12px 0; font-size: 14px; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 5px 12px; text-align: right; }
th { background: #f9fafb; }
td:first-child, th:first-child { text-align: left; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #f9fafb; border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 16px;
        min-width: 150px; }
.card .v { font-size: 22px; font-weight: 600; }
.card .k { font-size: 12px; color: #6b7280; text-transform: uppercase; letter-spacing: .04em; }
.note { color: #6b7280; font-size: 13px; }
"""


@dataclass
class Figure:
    """A PNG with the caption that says what it shows."""

    png: bytes
    caption: str
    name: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[object]]
    caption: str = ""


@dataclass
class Section:
    title: str
    blocks: list[object] = field(default_factory=list)

    def text(self, paragraph: str) -> Section:
        self.blocks.append(("p", paragraph))
        return self

    def note(self, paragraph: str) -> Section:
        self.blocks.append(("note", paragraph))
        return self

    def figure(self, png: bytes, caption: str, name: str) -> Section:
        if not caption.strip():
            raise ValueError(f"figure {name!r} needs a caption saying what it shows")
        self.blocks.append(Figure(png, caption, name))
        return self

    def table(self, header: list[str], rows: list[list[object]], caption: str = "") -> Section:
        self.blocks.append(Table(header, rows, caption))
        return self

    def cards(self, items: dict[str, str]) -> Section:
        self.blocks.append(("cards", items))
        return self


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _render_block(block: object) -> str:
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        return (
            f'<figure id="fig-{html.escape(block.name)}"><img alt="{html.escape(block.caption)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(block.caption)}</figcaption></figure>'
        )
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in block.rows
        )
        cap = f'<p class="note">{html.escape(block.caption)}</p>' if block.caption else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{cap}"
    kind, payload = block
    if kind == "cards":
        cards = "".join(
            f'<div class="card"><div class="v">{html.escape(v)}</div>'
            f'<div class="k">{html.escape(k)}</div></div>'
            for k, v in payload.items()
        )
        return f'<div class="cards">{cards}</div>'
    css = ' class="note"' if kind == "note" else ""
    return f"<p{css}>{html.escape(payload)}</p>"


def render(title: str, subtitle: str, sections: list[Section]) -> str:
    """The report as one HTML string, every figure inlined."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header><main>",
    ]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        parts.extend(_render_block(b) for b in section.blocks)
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "".join(parts)


def write_atomic(path: str | os.PathLike, content: str | bytes) -> Path:
    """Write a file so that readers see the old or the new content, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def figure_names(sections: list[Section]) -> list[str]:
    return [b.name for s in sections for b in s.blocks if isinstance(b, Figure)]
