"""``data verify`` and ``data download`` on fixtures; downloads only from a loopback server.

The HTTP server binds 127.0.0.1 on a free port and serves fixture bytes from memory, with or
without ``Range`` support, so resuming, md5 checks and the Birdsnap URL-list fetcher are tested
without any network.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures import build_all, build_birdsnap, jpeg_bytes  # tests/transfer

from clrbench.data.cards import load_card, load_cards
from clrbench.data.fetch import (
    FetchError,
    download_file,
    download_task,
    fetch_birdsnap_images,
    missing_message,
    verify_task,
    verify_tasks,
)
from clrbench.data.fetch import download as download_mod
from clrbench.data.fetch.catalog import Recipe, Resource


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        self.server.requests.append((self.path, rng))
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng and self.server.ranges else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("no_proxy", "*")  # loopback only, never through a proxy
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.ranges = {}, [], True
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("data")
    return root, build_all(root)


# ----------------------------------------------------------------------------- verify


def test_verify_passes_on_the_fixtures(built: Any) -> None:
    root, infos = built
    cards = list(load_cards(root / "tasks").values())
    seen: list[tuple[str, int, int | None]] = []
    reports = verify_tasks(cards, root, check_md5=False,
                           progress=lambda label, done, total: seen.append((label, done, total)))
    assert {r.task: (r.status, r.diff) for r in reports} == {n: ("ok", []) for n in infos}
    assert all(r.ok and not r.missing and r.sizes == infos[r.task]["sizes"] for r in reports)
    assert seen[-1] == ("verify", 12, 12)
    bird = next(r for r in reports if r.task == "birdsnap")
    assert bird.notes == ["obtained 10 of 12 listed train images and 5 of 6 test images"]


def test_verify_checks_md5_where_torchvision_publishes_it(built: Any) -> None:
    root, _ = built
    report = verify_task(load_card(root / "tasks" / "cifar10.yaml"), root)
    assert report.status == "differs" and len(report.md5) == 7  # 6 batches + batches.meta
    assert "data_batch_1 has md5" in report.diff[0]  # the fixture is not the official file


def test_verify_fails_with_a_diff_when_a_file_is_missing(tmp_path: Path) -> None:
    build_all(tmp_path, ["pets", "dtd"])
    (tmp_path / "oxford-iiit-pet" / "annotations" / "test.txt").unlink()
    cards = load_cards(tmp_path / "tasks")
    pets, dtd = verify_tasks([cards["pets"], cards["dtd"]], tmp_path, check_md5=False)
    assert pets.status == "missing" and not pets.ok
    assert pets.missing == ["annotations/test.txt"] and "annotations/trainval.txt" in pets.present
    assert "clrbench data download --tasks pets" in pets.diff[0]
    assert dtd.ok  # the other tasks are still checked


def test_verify_reports_sizes_and_classes_that_differ_from_the_card(tmp_path: Path) -> None:
    build_all(tmp_path, ["dtd", "birdsnap"])
    path = tmp_path / "tasks" / "dtd.yaml"
    card = yaml.safe_load(path.read_text())
    card["expected_sizes"]["test"], card["num_classes"] = 7, 4
    card.pop("classes")
    path.write_text(yaml.safe_dump(card))
    report = verify_task(load_card(path), tmp_path)
    assert report.status == "differs"
    assert report.diff == ["3 classes on disk, the card says 4.",
                           "test has 6 images, the card expects 7."]
    # Birdsnap short of its listed images because URLs rotted: partial, not a failure.
    path = tmp_path / "tasks" / "birdsnap.yaml"
    card = yaml.safe_load(path.read_text())
    card["expected_sizes"] = {"train": 9, "val": 3, "test": 6}  # as if every URL had worked
    path.write_text(yaml.safe_dump(card))
    bird = verify_task(load_card(path), tmp_path)
    assert (bird.status, bird.ok, bird.diff) == ("partial", True, [])


def test_missing_message_names_the_command() -> None:
    cards = load_cards()
    msg = missing_message(cards["food101"], Path("/data"))
    assert msg.endswith("`clrbench data download --tasks food101 --root /data` fetches it.")
    assert "/data/food-101/meta/train.json is missing" in msg
    assert "prints the manual steps" in missing_message(cards["cars"], Path("/data"))
    assert "CLRBENCH_DATA" in missing_message(cards["dtd"], None)


# ----------------------------------------------------------------------------- download


def test_download_resumes_a_partial_file(server: Any, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 400
    server.files["/a.bin"] = payload
    dest = tmp_path / "a.bin"
    dest.with_name("a.bin.part").write_bytes(payload[:40000])
    seen: list[int] = []
    md5 = hashlib.md5(payload).hexdigest()
    download_file(f"{server.url}/a.bin", dest, md5, progress=lambda _l, d, _t: seen.append(d))
    assert dest.read_bytes() == payload and not dest.with_name("a.bin.part").exists()
    assert server.requests == [("/a.bin", "bytes=40000-")] and seen[-1] == len(payload)
    download_file(f"{server.url}/a.bin", dest, md5)  # complete and verified: no request
    assert len(server.requests) == 1
    server.ranges = False  # a server that ignores Range sends it all: start over, same bytes
    (tmp_path / "b.bin.part").write_bytes(b"garbage")
    download_file(f"{server.url}/a.bin", tmp_path / "b.bin", md5)
    assert (tmp_path / "b.bin").read_bytes() == payload


def test_download_md5_mismatch_and_failures(server: Any, tmp_path: Path) -> None:
    server.files["/x.tgz"] = b"not what was published"
    with pytest.raises(FetchError, match=r"expected 0+; the file was removed"):
        download_file(f"{server.url}/x.tgz", tmp_path / "x.tgz", "0" * 32)
    assert not list(tmp_path.iterdir())
    with pytest.raises(FetchError, match="HTTP 404"):
        download_file(f"{server.url}/gone.tgz", tmp_path / "gone.tgz")
    closed = f"http://127.0.0.1:{_free_port()}/x.tgz"
    with pytest.raises(FetchError, match="nothing was received; run the command again") as got:
        download_file(closed, tmp_path / "z.tgz", timeout=2)
    assert ".part" not in str(got.value) and not (tmp_path / "z.tgz.part").exists()  # no claim of a kept file
    (tmp_path / "y.tgz.part").write_bytes(b"half")
    with pytest.raises(FetchError, match=r"the 4 bytes received are kept in .*y.tgz.part; run the command again"):
        download_file(closed, tmp_path / "y.tgz", timeout=2)
    assert (tmp_path / "y.tgz.part").read_bytes() == b"half"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_birdsnap_fetcher_is_parallel_checked_logged_and_resumable(server: Any, tmp_path: Path) -> None:
    build_birdsnap(tmp_path, url_base=f"{server.url}/")
    base = tmp_path / "birdsnap"
    images = base / "download" / "images"
    for p in sorted(images.rglob("*.jpg")):
        server.files["/" + p.relative_to(images).as_posix()] = p.read_bytes()
    server.files["/Blue_Jay/103.jpg"] = jpeg_bytes(0)  # a changed photo: wrong md5
    for p in list(images.rglob("*.jpg")):
        p.unlink()
    keep = images / "Mallard" / "205.jpg"  # one obtained by an earlier run: not fetched again
    keep.write_bytes(server.files["/Mallard/205.jpg"])
    got = fetch_birdsnap_images(base, workers=4)
    # 18 listed; 3 never served (404), 1 wrong md5, 1 already there.
    assert (got.listed, got.obtained, got.fetched, got.failed) == (18, 14, 13, 4)
    assert ("/Mallard/205.jpg", None) not in server.requests
    fails = (base / "fail.txt").read_text().splitlines()
    assert sum("HTTP 404" in f for f in fails) == 3 and any("Blue_Jay/103.jpg" in f and "md5" in f
                                                           for f in fails)
    assert len((base / "success.txt").read_text().splitlines()) == 14
    server.requests.clear()
    again = fetch_birdsnap_images(base, workers=4)
    assert (again.obtained, again.fetched) == (14, 0) and len(server.requests) == 4  # failures only


def _tar_gz(folder: Path, arcname: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return buf.getvalue()


def test_download_task_fetches_extracts_and_reports(server: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    build_all(src, ["dtd"])
    server.files["/dtd-r1.0.1.tar.gz"] = blob = _tar_gz(src / "dtd" / "dtd", "dtd")
    res = Resource(f"{server.url}/dtd-r1.0.1.tar.gz", "dtd-r1.0.1.tar.gz",
                   hashlib.md5(blob).hexdigest(), into="dtd")
    recipes = {"dtd": Recipe((res,), "fetch dtd by hand into {data}/dtd"),
               "cars": Recipe((), "cars by hand into {data}", automatic=False)}
    monkeypatch.setattr(download_mod, "recipes", lambda: recipes)
    card, data = load_card(src / "tasks" / "dtd.yaml"), tmp_path / "data"
    report = download_task(card, data)
    assert (report.status, report.ok) == ("downloaded", True), report.message
    assert verify_task(card, data, check_md5=False).status == "ok"
    assert not (data / ".downloads" / "dtd-r1.0.1.tar.gz").exists()  # archive removed once complete
    assert download_task(card, data).status == "present"
    manual = download_task(load_cards()["cars"], data)
    assert (manual.status, manual.message) == ("manual", f"cars: cars by hand into {data}")
    server.files.clear()
    failed = download_task(card, tmp_path / "empty")
    assert failed.status == "failed" and "HTTP 404" in failed.message
    assert failed.message.endswith(f"fetch dtd by hand into {tmp_path / 'empty'}/dtd")
