"""`clrbench leaderboard --format html`: one self-contained page (sortable boards, embedded
plots), checked as HTML and, where chromium is installed, in a real headless browser."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clrbench.cli import app
from clrbench.records import Record, write_record

runner = CliRunner()


def _results(tmp_path: Path) -> Path:
    for cid, vals in (("a<b>&c", (60.0, 70.0)), ("second", (80.0, 50.0))):
        for task, v in zip(("digits", "shapes"), vals, strict=True):
            write_record(tmp_path, Record(cid, task, "linear", "top1", "ok", v, 0.5, 1, 1, {"path": cid}, {}, [],
                                          {}, {}, {}, "s", {}, {}))
    return tmp_path


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _page(tmp_path: Path) -> str:
    res = runner.invoke(app, ["leaderboard", "--results", str(_results(tmp_path)), "--format", "html"])
    assert res.exit_code == 0, res.output
    return res.output


def test_html_is_one_self_contained_page(tmp_path: Path) -> None:
    html = _page(tmp_path)
    page = _Page()
    page.feed(html)
    tags = [t for t, _ in page.tags]
    assert html.startswith("<!DOCTYPE html>") and tags.count("table") == 1 and "script" in tags
    imgs = [a["src"] or "" for t, a in page.tags if t == "img"]
    assert imgs and all(s.startswith("data:image/png;base64,") for s in imgs)
    assert base64.b64decode(imgs[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [a for t, a in page.tags if (a.get("src") or a.get("href") or "").startswith(("http", "//"))]
    assert "a&lt;b&gt;&amp;c" in html and "<b>&c" not in html  # user text is escaped
    heads = [d for d in page.text if d in ("digits", "shapes", "mean", "rank")]
    assert heads[:4] == ["digits", "shapes", "mean", "rank"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt-get install chromium)")
def test_html_sorts_in_a_headless_browser(tmp_path: Path) -> None:
    out = tmp_path / "board.html"
    out.write_text(_page(tmp_path / "results"))
    for col, first in ((1, "second"), (2, "a<b>&c")):  # digits: second is best; shapes: a<b>&c is
        dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                              f"file://{out}#sort={col}"], capture_output=True, text=True, timeout=120).stdout
        assert 'data-ready="yes"' in dom  # the script ran to its end without an error
        body = dom.split("<tbody>", 1)[1]
        labels = re.findall(r'<tr class="[^"]*"><td title="[^"]*">([^<]*)</td>', body)
        assert labels[0].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == first
