"""The boards as one self-contained HTML page: sortable tables, the heatmaps and the curves.

``clrbench leaderboard --format html > board.html`` gives a file to mail or attach to a
paper's artefacts: no server, no network, no external script or font. Each board is a table
whose columns sort on a click (a few lines of inline JavaScript; ``#sort=N`` in the address
sorts by column N on load), its caption and legend, and the PNG heatmap embedded as base64;
score-vs-epoch curves follow when a run has several evaluated checkpoints. Every piece of
user text (labels, task names, notes) is HTML-escaped.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from clrbench.leaderboard.heatmap import heatmap_png
from clrbench.leaderboard.table import ABBREV, header, short_labels

if TYPE_CHECKING:
    from clrbench.leaderboard.board import Board, Cell, Row

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0}th,td{padding:3px 8px;text-align:right;white-space:nowrap}
th{cursor:pointer;border-bottom:2px solid #444;user-select:none}th:first-child,td:first-child{text-align:left}
tr.published td{color:#666;font-style:italic}tr.baseline td:first-child{font-weight:bold;color:#0a6}
td.best{font-weight:bold;color:#070}td.failed{color:#c00;font-weight:bold}.d{font-size:85%;color:#777}
.sig{color:#06c}tbody tr:hover{background:#f4f4f4}.notes{color:#555;font-size:90%}img{max-width:100%}
"""

# Sort a table by the clicked column (numbers numerically, '-' last); #sort=N sorts column N on load.
_JS = """
function sortBy(table, col, asc){
  const body = table.tBodies[0], rows = Array.from(body.rows);
  const key = r => { const v = parseFloat(r.cells[col].dataset.v ?? r.cells[col].textContent);
                     return isNaN(v) ? null : v; };
  rows.sort((a, b) => { const x = key(a), y = key(b);
    if (x === null && y === null) return 0; if (x === null) return 1; if (y === null) return -1;
    return asc ? x - y : y - x; });
  if (col === 0) rows.sort((a, b) => a.cells[0].textContent.localeCompare(b.cells[0].textContent) * (asc ? 1 : -1));
  rows.forEach(r => body.appendChild(r));
}
document.querySelectorAll('table.board').forEach(t => {
  Array.from(t.tHead.rows[0].cells).forEach((th, i) => th.addEventListener('click', () => {
    const asc = th.dataset.asc !== 'true'; th.dataset.asc = asc; sortBy(t, i, th.dataset.rank ? asc : !asc); }));
});
const m = location.hash.match(/sort=(\\d+)/);
if (m) document.querySelectorAll('table.board').forEach(t => sortBy(t, parseInt(m[1]), false));
document.body.dataset.ready = 'yes';
"""


def _cell(cell: Cell) -> str:
    if cell.value is None:
        bad = cell.status in ("failed", "diverged")
        return f'<td class="{"failed" if bad else ""}" data-v="">{escape(cell.status if bad else "-")}</td>'
    delta = ""
    if cell.delta is not None:
        sig = " sig" if cell.significant else ""
        delta = f' <span class="d{sig}">{cell.delta:+.1f}{"*" if cell.significant else ""}</span>'
    title = f' title="± {cell.stderr:.2f}"' if cell.stderr is not None else ""
    return f'<td class="{"best" if cell.best else ""}" data-v="{cell.value}"{title}>{cell.value:.1f}{delta}</td>'


def _row(row: Row, board: Board, labels: dict[str, str]) -> str:
    cls = "published" if row.kind == "published" else ("baseline" if row.label == board.baseline else "")
    also = f" (also: {', '.join(row.aliases)})" if row.aliases else ""
    label = f'<td title="{escape(row.label + also)}">{escape(labels[row.label])}</td>'
    mean = "" if row.mean is None else f"{row.mean:.1f}"
    rank = "" if row.mean_rank is None else f"{row.mean_rank:.2f}"
    totals = (f'<td class="{"best" if row.best_mean else ""}" data-v="{mean}">{mean or "-"}</td>'
              f'<td class="{"best" if row.best_rank else ""}" data-v="{rank}">{rank or "-"}</td>')
    return f'<tr class="{cls}">{label}{"".join(_cell(row.cells[t]) for t in board.tasks)}{totals}</tr>'


def board_section(board: Board) -> str:
    """One board: heading, sortable table, caption and legend, heatmap."""
    labels, legend = short_labels(board, 40)
    heads = "".join(f'<th title="{escape(t)}">{escape(header(t))}</th>' for t in board.tasks)
    thead = f'<thead><tr><th>model</th>{heads}<th>mean</th><th data-rank="1">rank</th></tr></thead>'
    body = "".join(_row(r, board, labels) for r in board.rows)
    cols = ", ".join(f"{header(t)} = {t}" for t in board.tasks if t in ABBREV)
    notes = [*board.notes, *([f"columns: {cols}."] if cols else []), *(f"rows: {line}" for line in legend),
             *(f"{r.label} is also: {', '.join(r.aliases)} (same weights)." for r in board.rows if r.aliases)]
    png = base64.b64encode(heatmap_png(board)).decode("ascii")
    return (f'<section><h2>{escape(board.protocol)}</h2><table class="board">{thead}<tbody>{body}</tbody></table>'
            f'<ul class="notes">{"".join(f"<li>{escape(n)}</li>" for n in notes)}</ul>'
            f'<img alt="{escape(board.protocol)} heatmap" src="data:image/png;base64,{png}"></section>')


def board_page(boards: Sequence[Board], curve_pngs: Sequence[bytes] = (), title: str = "clrbench leaderboard") -> str:
    """The whole page as a string (UTF-8 HTML5, nothing fetched from elsewhere)."""
    curves = "".join(f'<img alt="score vs epoch" src="data:image/png;base64,{base64.b64encode(p).decode("ascii")}">'
                     for p in curve_pngs)
    sections = "".join(board_section(b) for b in boards)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>"
            "<p>Click a column header to sort. Bold: best of its column. Hover a label for its full name.</p>"
            f"{sections}{'<section><h2>score vs epoch</h2>' + curves + '</section>' if curves else ''}"
            f"<script>{_JS}</script></body></html>\n")
