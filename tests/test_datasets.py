"""rnnkit.datasets: download, verify and cache datasets by name.

Offline: every download comes from an ``http.server`` on 127.0.0.1 that the
test starts, serving small fixture files described by a tiny catalog.
"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from rnnkit import datasets
from rnnkit.datasets import DataFile, Dataset
from rnnkit.errors import ConfigError, DataError

BODY = b"the quick brown fox\njumps over the lazy dog\n" * 200
TEXT = "a little text for a gzipped file\n" * 100
GZ = gzip.compress(TEXT.encode())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """/good/NAME serves the file; /bad/NAME other bytes; /cut/NAME half of it, then hangs up."""

    files: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).requests.append(self.path)
        kind, _, name = self.path.strip("/").partition("/")
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        if kind == "bad":
            body = body[::-1]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "cut":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def server():
    handler = type("Handler", (_Handler,), {"files": {"body.txt": BODY, "text.txt.gz": GZ}, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dead_url():
    """A loopback URL where nothing listens: connecting is refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def tiny(name: str, *urls: str, body: bytes = BODY) -> list[Dataset]:
    return [Dataset(name=name, title="tiny", description="a fixture", licence="none", source="this test",
                    files=(DataFile("body.txt", sha(body), len(body), tuple(urls)),))]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_download_is_verified_and_in_place(server, tmp_path):
    url, handler = server
    folder = datasets.get("tiny", tmp_path, progress=False, datasets=tiny("tiny", f"{url}/good/body.txt"))
    assert folder == tmp_path / "tiny"
    assert (folder / "body.txt").read_bytes() == BODY
    assert leftovers(folder) == ["body.txt"]  # no temporary file left beside it


def test_second_call_is_served_from_the_cache(server, tmp_path):
    url, handler = server
    cat = tiny("tiny", f"{url}/good/body.txt")
    datasets.get("tiny", tmp_path, progress=False, datasets=cat)
    assert len(handler.requests) == 1
    again = datasets.get("tiny", tmp_path, progress=False, datasets=cat)
    assert (again / "body.txt").read_bytes() == BODY
    assert len(handler.requests) == 1  # no request made the second time


def test_checksum_mismatch_leaves_nothing_and_says_expected_and_got(server, tmp_path):
    url, _ = server
    with pytest.raises(DataError) as err:
        datasets.get("tiny", tmp_path, progress=False, datasets=tiny("tiny", f"{url}/bad/body.txt"))
    msg = str(err.value)
    assert "checksum mismatch" in msg
    assert f"expected sha256 {sha(BODY)}" in msg
    assert f"got {sha(BODY[::-1])}" in msg
    assert f"{url}/bad/body.txt" in msg
    assert leftovers(tmp_path / "tiny") == []


def test_interrupted_transfer_leaves_nothing(server, tmp_path):
    url, _ = server
    with pytest.raises(DataError) as err:
        datasets.get("tiny", tmp_path, progress=False, datasets=tiny("tiny", f"{url}/cut/body.txt"))
    assert "interrupted" in str(err.value)
    assert leftovers(tmp_path / "tiny") == []


def test_interrupted_transfer_falls_back_to_the_mirror(server, tmp_path):
    url, handler = server
    cat = tiny("tiny", f"{url}/cut/body.txt", f"{url}/good/body.txt")
    folder = datasets.get("tiny", tmp_path, progress=False, datasets=cat)
    assert (folder / "body.txt").read_bytes() == BODY
    assert handler.requests == ["/cut/body.txt", "/good/body.txt"]


def test_unreachable_host_falls_back_to_the_mirror(server, dead_url, tmp_path):
    url, handler = server
    cat = tiny("tiny", f"{dead_url}/body.txt", f"{url}/good/body.txt")
    folder = datasets.get("tiny", tmp_path, progress=False, datasets=cat)
    assert (folder / "body.txt").read_bytes() == BODY
    assert handler.requests == ["/good/body.txt"]


def test_every_url_unreachable_names_each_url(dead_url, tmp_path):
    first, second = f"{dead_url}/a/body.txt", f"{dead_url}/b/body.txt"
    with pytest.raises(DataError) as err:
        datasets.get("tiny", tmp_path, progress=False, datasets=tiny("tiny", first, second))
    msg = str(err.value)
    assert "could not download body.txt of tiny" in msg
    assert f"{first}: unreachable" in msg and f"{second}: unreachable" in msg
    assert leftovers(tmp_path / "tiny") == []


def test_gzipped_file_is_checked_both_ways_and_gunzipped(server, tmp_path):
    url, _ = server
    good = DataFile("text.txt", sha(TEXT.encode()), len(TEXT), (f"{url}/good/text.txt.gz",),
                    gzipped=True, download_sha256=sha(GZ))
    cat = [Dataset("gz", "gz", "a fixture", "none", "this test", (good,))]
    folder = datasets.get("gz", tmp_path, progress=False, datasets=cat)
    assert (folder / "text.txt").read_text() == TEXT
    assert leftovers(folder) == ["text.txt"]

    wrong = DataFile("text.txt", "0" * 64, len(TEXT), good.urls, gzipped=True, download_sha256=sha(GZ))
    with pytest.raises(DataError, match="checksum mismatch after gunzip"):
        datasets.get("gz", tmp_path / "other", progress=False,
                     datasets=[Dataset("gz", "gz", "a fixture", "none", "this test", (wrong,))])
    assert leftovers(tmp_path / "other" / "gz") == []


def test_a_folder_holding_the_verified_files_is_used_as_is(tmp_path, dead_url, monkeypatch):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "body.txt").write_bytes(BODY)
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    # the only URL is dead: the folder must be used without a request
    assert datasets.get("tiny", progress=False, datasets=tiny("tiny", f"{dead_url}/body.txt")) == tmp_path / "tiny"


def test_a_wrong_file_already_there_is_reported_not_replaced(tmp_path, dead_url):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "body.txt").write_bytes(b"something else")
    with pytest.raises(DataError, match=f"expected {sha(BODY)}"):
        datasets.get("tiny", tmp_path, progress=False, datasets=tiny("tiny", f"{dead_url}/body.txt"))
    assert (tmp_path / "tiny" / "body.txt").read_bytes() == b"something else"


def test_data_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "env"))
    assert datasets.data_root(tmp_path / "given") == tmp_path / "given"
    assert datasets.data_root() == tmp_path / "env"
    monkeypatch.delenv(datasets.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.data_root() == tmp_path / "xdg" / "rnnkit" / "data"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown dataset 'nope'.*tinyshakespeare"):
        datasets.get("nope")
    assert datasets.find("ud-ewt").name == "ud_english_ewt"
    assert datasets.find("MR").name == "mr_polarity"


def test_conll2003_is_instructions_only(tmp_path):
    with pytest.raises(DataError, match="does not download") as err:
        datasets.get("conll2003", tmp_path, progress=False)
    assert "NIST" in str(err.value)
    assert not (tmp_path / "conll2003").exists() or leftovers(tmp_path / "conll2003") == []


def test_the_catalog_pins_every_file():
    names = {d.name for d in datasets.catalog()}
    assert {"tinyshakespeare", "names", "mr_polarity", "ud_english_ewt", "conll2003", "multi30k",
            "cmudict", "cmudict_standard"} <= names
    for ds in datasets.catalog():
        for f in ds.files:
            assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0
            if ds.name == "conll2003":
                assert f.urls == ()  # its licence does not allow fetching it
                continue
            assert len(f.urls) >= 2, f"{ds.name}/{f.name} needs a mirror"
            for url in f.urls:
                assert url.startswith("https://")
                commit = url.split("/")[5] if "raw.githubusercontent" in url else url.split("@")[1].split("/")[0]
                assert len(commit) == 40, url  # a full commit, never a branch
            if f.gzipped:
                assert f.download_sha256 and all(u.endswith(".gz") for u in f.urls)


def test_format_list_shows_every_dataset_and_what_is_here(tmp_path):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("x")
    table = datasets.format_list(tmp_path)
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["name", "size", "files", "local"]
    for ds in datasets.catalog():
        assert any(line.startswith(ds.name + " ") for line in lines), ds.name
    shakespeare = next(line for line in lines if line.startswith("tinyshakespeare"))
    assert "here" in shakespeare and "1.1 MB" in shakespeare
    assert "instructions" in next(line for line in lines if line.startswith("conll2003"))
    assert str(tmp_path) in table


def test_the_data_command_lists_describes_and_names_unknown_datasets(tmp_path, capsys):
    from rnnkit.cli import main

    assert main(["data", "list", "--dir", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert all(ds.name in listed for ds in datasets.catalog())
    assert main(["data", "info", "tinyshakespeare"]) == 0
    assert "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed" in capsys.readouterr().out
    assert main(["data", "get", "no-such-set", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: unknown dataset 'no-such-set'") and "tinyshakespeare" in err
