"""The report as one self-contained HTML page: the Markdown report with a table of contents whose
links are the headings' anchors, every figure embedded as a data URI (no file or network
request), wide tables scrolling inside their own box, and no external CSS, script or font."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping

from markdown.extensions.toc import slugify

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;
margin:0 auto;padding:0 16px 48px;line-height:1.4;color:#222}
h1{font-size:1.6em;margin:.6em 0 .2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.wide{overflow-x:auto;max-width:100%;margin:.5em 0}
table{border-collapse:collapse;font-size:.85em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
td:nth-child(-n+2),#each-site-at-a-glance+.wide td{white-space:nowrap}th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;height:auto}
p.figures{display:flex;flex-wrap:wrap;gap:1%}p.figures img{max-width:49.5%}
p.caption{font-size:.9em;color:#444;margin-top:0}
code{word-break:break-all;font-size:.9em}
details{margin:1em 0}summary{cursor:pointer;font-weight:600}
nav ul{columns:2}
"""
PAGE = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>LocalSOC report</title><style>{style}</style></head><body>{body}</body></html>")
CONTENTS_HEADING = "## Contents"
_IMAGE = re.compile(r'<img alt="([^"]*)" src="([^"]+)"\s*/?>')


def contents_lines(sections: list[str]) -> list[str]:
    """The table of contents of ``sections`` (Markdown lines): a link to every level-2
    heading's anchor (the id the HTML page gives it; GitHub's for report.md)."""
    out = [CONTENTS_HEADING, ""]
    for line in sections:
        if line.startswith("## "):
            title = line[3:].strip()
            out.append(f"- [{title}](#{slugify(title, '-')})")
    return out


def figure_uris(figures: Mapping[str, Mapping[str, bytes]]) -> dict[str, str]:
    """``{relative path: data URI}`` of each figure file, ``figures`` mapping a folder under
    data/08_reporting (figures/study) to its files' bytes by name."""
    kinds = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}
    uris = {}
    for folder, files in figures.items():
        for name, data in (files or {}).items():
            kind = kinds.get(name[name.rfind("."):].lower())
            if kind:
                uris[f"{folder}/{name}"] = (f"data:{kind};base64,"
                                            + base64.b64encode(data).decode("ascii"))
    return uris


def _embed(match: re.Match, uris: Mapping[str, str]) -> str:
    alt, src = match.group(1), html.unescape(match.group(2))
    if src not in uris:
        return f"<em>[figure not drawn: {html.escape(alt)}]</em>"
    return f'<img alt="{alt}" src="{uris[src]}" loading="eager">'


def html_page(text: str, uris: Mapping[str, str]) -> str:
    """The Markdown report ``text`` as a self-contained HTML page: figures from ``uris``
    (``figure_uris``; a figure without one is named, not linked), headings with ids, tables
    in a box that scrolls sideways, paragraphs of several figures side by side."""
    import markdown

    body = markdown.markdown(text, extensions=["tables", "toc", "md_in_html"])
    body = body.replace("<table>", '<div class="wide"><table>').replace(
        "</table>", "</table></div>")
    body = _IMAGE.sub(lambda m: _embed(m, uris), body)
    body = re.sub(r"<p>((?:\s*<img [^>]+>\s*){2,})</p>", r'<p class="figures">\1</p>', body)
    body = body.replace("<p><em>Figure", '<p class="caption"><em>Figure')
    contents = re.search(r'(<h2 id="contents">.*?)(?=<h2 )', body, flags=re.S)
    if contents:
        body = body.replace(contents.group(1), f"<nav>{contents.group(1)}</nav>", 1)
    return PAGE.replace("{style}", STYLE.replace("\n", "")).replace("{body}", body)
