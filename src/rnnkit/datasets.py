"""Datasets by name: what each is, where it comes from, and a verified local copy.

``rnnkit data list`` prints :func:`format_list`; ``rnnkit data get NAME``
calls :func:`get`, which returns the folder holding the dataset's files.

Every file is pinned: the URLs name a commit, and the file must match the
sha256 given here, so ``get`` returns the same bytes on every machine or none
at all.  A file is downloaded to a temporary name next to its final one,
hashed while it streams, and renamed into place only once its checksum
matched; an interrupted or corrupt download leaves nothing behind.  Each file
has a primary URL (raw.githubusercontent.com at the pinned commit) and at
least one mirror (jsDelivr's GitHub mirror at the same commit), tried in
order.

The cache is ``$RNNKIT_DATA`` when set, else ``$XDG_CACHE_HOME/rnnkit/data``
(``~/.cache/rnnkit/data``); dataset ``NAME`` lives in ``<cache>/NAME/``.  A
folder that already holds the verified files (for instance a copy laid out
the same way, read-only or not) is used as it is: nothing is downloaded
twice.

Only stdlib and tqdm: ``import rnnkit`` must stay light.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import IO, Optional

from rnnkit.errors import ConfigError, DataError

ENV_VAR = "RNNKIT_DATA"
TIMEOUT_S = 30.0  # per connection attempt and per read
_CHUNK = 1 << 16


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset, as it lies in the dataset's folder.

    ``urls`` are tried in order (primary first, then mirrors).  When
    ``gzipped`` is true they serve the file gzip-compressed: the download must
    match ``download_sha256`` and its gunzipped bytes ``sha256``.
    """

    name: str
    sha256: str
    size: int  # bytes of the file in the folder (after gunzip)
    urls: tuple[str, ...] = ()
    gzipped: bool = False
    download_sha256: Optional[str] = None


@dataclass(frozen=True)
class Dataset:
    """A dataset the results use: what it is, its licence, and its files."""

    name: str  # also the folder name under the cache
    title: str
    description: str
    licence: str
    source: str  # repository and commit the files come from
    files: tuple[DataFile, ...]
    notes: str = ""  # how to get what cannot be downloaded, or a caveat
    aliases: tuple[str, ...] = field(default=())

    @property
    def size(self) -> int:
        """Bytes of all files once in place."""
        return sum(f.size for f in self.files)

    @property
    def downloadable(self) -> bool:
        return all(f.urls for f in self.files)


# --------------------------------------------------------------------------- the catalog

def _github(repo: str, commit: str, path: str) -> tuple[str, ...]:
    """The file at ``repo@commit``: raw.githubusercontent.com first, then jsDelivr's mirror."""
    return (
        f"https://raw.githubusercontent.com/{repo}/{commit}/{path}",
        f"https://cdn.jsdelivr.net/gh/{repo}@{commit}/{path}",
    )


_SHAKESPEARE = ("karpathy/char-rnn", "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e")
_MR = ("yoonkim/CNN_sentence", "23e0e1f7355705bb083043fda05c031b15acb38c")
_EWT = ("UniversalDependencies/UD_English-EWT", "15d613d8447b3478787d4c278730a1e48a945efb")
_M30K = ("multi30k/dataset", "a3d2e0d26b56f3846f66a952536ffed4e401d05a")
_CMUDICT = ("cmusphinx/cmudict", "0f8072f814306c5ee4fbf992ed853601b12c01f9")
_CNTK = ("microsoft/CNTK", "0ba41da07b9cef9e25c80777f48dbf0c041bbeee")
_NAMES = ("hungds1996/LSTM-with-pytorch", "9f362e53d6ce41d12c2a54550a15fcc9612fa828")
_CONLL = ("synalp/NER", "c0ea07c81ec3512b5047dcd804b0ac2b10a3bdfc")

_CMUDICT_LICENSE_SHA = "bd4ce8e44170a5f9f481310ca85c51de3c4f851a65e679b40e603b143bd3542a"

# (file, bytes, sha256) of names/<Language>.txt
_NAME_FILES = (
    ("Arabic", 13190, "6f424a8dbe51cbbbabab7a57d38b617210125e4e3991f3c657cb79b8f104bafc"),
    ("Chinese", 1247, "49263ef55a8cb1740e841d65cad8214b2f9b5b869bc534c811746422496fa91e"),
    ("Czech", 3919, "145bbbd6d0816578f03388e92c264d39ef1c60df920b081d371fa5c5cc055a8e"),
    ("Dutch", 2351, "924f32b635170eae561f84538632138fc07d4c8bbd70ba3fb980de1ecc4d2af3"),
    ("English", 27125, "9cca037066d3d5989e24bc01801416162de506b5e28e15b7c092a47905d29bf2"),
    ("French", 2178, "81e65b36c60ed5b89a17422f6edcadbb89546f38ad69e960e64e7ba682012a95"),
    ("German", 5610, "7449cd590b97a733e18d613a4155decd77ec35dc5f8aadd7a82204dce4f051db"),
    ("Greek", 1981, "3555b5186de7f401e6d991b088e9e644ca3099116477818c25ab5793801389e6"),
    ("Irish", 1858, "cf8c7013256252a88d2503127b87282a11f21b2ff6db1bded68834c19a1ec058"),
    ("Italian", 5657, "f88414c27d0606a11a678b4859277828c2565d6cc4d9ee932deef6e94f3b35e4"),
    ("Japanese", 7622, "e0e717e114fec3e7eade4d9dabe0067c475f43147e36a22b47902ee76ad9e67f"),
    ("Korean", 423, "cd54221ccb362a6cba4c78828838cf3268a0e59744767a37cf6ec4b74036b136"),
    ("Polish", 1165, "45bab898af2f60ed3a728bbf6980e28821011a7caa53227553b5785903a40826"),
    ("Portuguese", 554, "50a8735f41f4f73757c8ce5b16cb0275cd86b2b214bcbc8c9805f508cb131c53"),
    ("Russian", 85605, "43b3e64ce351f77f1ac9e0cdf7566012d127f4371875fd25208845b5c9d6f7c3"),
    ("Scottish", 752, "78d0252711d87d948ea86fe34826c51d2d794a8e52d15b5d6f7b6244d45d62dd"),
    ("Spanish", 2284, "1bcb462ed3316756a85781d68232bddae04498fdddd5d9219c53fd1fbdeba7a7"),
    ("Vietnamese", 339, "4761c0de374ebdfd7dea7faa6fbac707d96cad9a6fc91d3626c462cbd08b6c76"),
)

# (split.lang, bytes, sha256 of the text, sha256 of the upstream .gz)
_M30K_FILES = (
    ("train.en", 1801238, "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
     "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f"),
    ("train.de", 2110398, "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
     "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6"),
    ("val.en", 63297, "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
     "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28"),
    ("val.de", 75981, "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
     "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a"),
    ("test_2016_flickr.en", 62076, "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
     "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9"),
    ("test_2016_flickr.de", 70649, "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
     "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"),
)

CATALOG: tuple[Dataset, ...] = (
    Dataset(
        name="tinyshakespeare",
        title="Tiny Shakespeare",
        description="40,000 lines of Shakespeare's plays, 1,115,394 characters (65 distinct); "
                    "character-level language modelling. No official split.",
        licence="public domain (repository MIT)",
        source="karpathy/char-rnn@6f9487a6fe5b",
        files=(DataFile("input.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                        1115394, _github(*_SHAKESPEARE, "data/tinyshakespeare/input.txt")),),
        aliases=("shakespeare",),
    ),
    Dataset(
        name="names",
        title="Surnames by language",
        description="20,074 surnames in 18 files <Language>.txt, one per line (the PyTorch "
                    "char-RNN tutorial's data); one-to-many generation and names -> language.",
        licence="unknown (none stated)",
        source="hungds1996/LSTM-with-pytorch@9f362e53d6ce",
        files=tuple(DataFile(f"{lang}.txt", sha, size, _github(*_NAMES, f"data/names/{lang}.txt"))
                    for lang, size, sha in _NAME_FILES),
    ),
    Dataset(
        name="mr_polarity",
        title="Sentence polarity v1.0 (MR, Pang & Lee 2005)",
        description="5,331 positive and 5,331 negative movie-review sentences, one per line, "
                    "Latin-1 encoded (--encoding latin-1); papers use 10-fold cross-validation.",
        licence="none stated; cite Pang & Lee 2005",
        source="yoonkim/CNN_sentence@23e0e1f73557",
        files=(
            DataFile("rt-polarity.pos", "2da124ec187a9d5a29c9f04e91c540e02baed5af8868f550a26bd6fd4dbf8bf0",
                     626139, _github(*_MR, "rt-polarity.pos")),
            DataFile("rt-polarity.neg", "4ace77d558c3714723843f1d65b60c01e3417b208180f0728808d76ad0eeeaca",
                     612256, _github(*_MR, "rt-polarity.neg")),
        ),
        aliases=("mr",),
    ),
    Dataset(
        name="ud_english_ewt",
        title="Universal Dependencies English-EWT",
        description="CoNLL-U treebank, train / dev / test: 12,544 / 2,001 / 2,077 sentences; "
                    "part-of-speech tagging (UPOS column, or XPOS for PTB tags).",
        licence="CC BY-SA 4.0",
        source="UniversalDependencies/UD_English-EWT@15d613d8447b",
        files=(
            DataFile("en_ewt-ud-train.conllu", "3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b",
                     14203025, _github(*_EWT, "en_ewt-ud-train.conllu")),
            DataFile("en_ewt-ud-dev.conllu", "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6",
                     1805545, _github(*_EWT, "en_ewt-ud-dev.conllu")),
            DataFile("en_ewt-ud-test.conllu", "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd",
                     1804515, _github(*_EWT, "en_ewt-ud-test.conllu")),
            DataFile("LICENSE.txt", "b3d1b0f4c6ae151f7eb78738f46ebd5ee140f8a7f76501ba26af123140d35ae7",
                     20014, _github(*_EWT, "LICENSE.txt")),
        ),
        notes="The repository builds en_ewt-ud-train.conllu by concatenating, in order, the files listed "
              "in not-to-release/file-lists/files.train from not-to-release/sources/; the released file "
              "at the pinned commit is that concatenation, byte for byte. If neither URL serves it, "
              "clone the repository at the commit, run `cd not-to-release/sources && cat $(cat "
              "../file-lists/files.train) > en_ewt-ud-train.conllu`, and put the result in the "
              "dataset's folder: its sha256 is checked like a download's.",
        aliases=("ud-ewt", "ewt"),
    ),
    Dataset(
        name="conll2003",
        title="CoNLL-2003 English named entities",
        description="Reuters news, one token per line (word POS chunk NER, IOB1): eng.train / "
                    "eng.testa (dev) / eng.testb (test), 14,041 / 3,250 / 3,453 sentences.",
        licence="not redistributable (Reuters RCV1)",
        source="annotations: https://www.clips.uantwerpen.be/conll2003/ner/; text: Reuters RCV1 (NIST)",
        files=(
            DataFile("eng.train", "eac0822f501353f265383ddf1edb0dcd42a1b6eefd3e383d7074db98c38eb41c", 3281528),
            DataFile("eng.testa", "aedc4ccbd1ae9795feaa0e86fe72d195b0258abed9d705b630d1c889276fac1e", 827012),
            DataFile("eng.testb", "0632f32c090ef31c223135b7fee3187a7cf8e65c4015c7866bb7783428cdd9a6", 748096),
        ),
        notes="The text is Reuters RCV1, whose licence does not allow rnnkit to redistribute or fetch it. "
              "Request RCV1 from NIST (https://trec.nist.gov/data/reuters/reuters.html), build eng.train, "
              "eng.testa and eng.testb with the shared task's scripts "
              "(https://www.clips.uantwerpen.be/conll2003/ner/), and put the three files in the folder "
              "printed below; `rnnkit data get conll2003` then checks their sha256 (the results used "
              "these exact files) and prints the folder.",
        aliases=("conll",),
    ),
    Dataset(
        name="multi30k",
        title="Multi30k task 1, German-English (WMT16 multimodal)",
        description="Image descriptions, line-aligned German and English: train / val / "
                    "test_2016_flickr, 29,000 / 1,014 / 1,000 pairs; translation.",
        licence="non-commercial research/education",
        source="multi30k/dataset@a3d2e0d26b56",
        files=tuple(DataFile(name, sha, size, _github(*_M30K, f"data/task1/raw/{name}.gz"),
                             gzipped=True, download_sha256=gz_sha)
                    for name, size, sha, gz_sha in _M30K_FILES),
        aliases=("m30k",),
    ),
    Dataset(
        name="cmudict",
        title="CMU Pronouncing Dictionary",
        description="135,166 pronunciations of 126,052 words ('word PH1 PH2 ...', ARPAbet with "
                    "stress digits); spelling -> phonemes. No official split.",
        licence="BSD-2-Clause-style (CMU)",
        source="cmusphinx/cmudict@0f8072f81430",
        files=(
            DataFile("cmudict.dict", "81917843c7f44ce2b094ac63873c2c7a4cf802040792c455ba3ca406891c3d22",
                     3618488, _github(*_CMUDICT, "cmudict.dict")),
            DataFile("cmudict.phones", "ffb588a5e55684723582c7256e1d2f9fadb130011392d9e59237c76e34c2cfd6",
                     382, _github(*_CMUDICT, "cmudict.phones")),
            DataFile("cmudict.symbols", "408ccaae803641c6d7b626b6299949320c2dbca96b2220fd3fb17887b023b027",
                     281, _github(*_CMUDICT, "cmudict.symbols")),
            DataFile("LICENSE", _CMUDICT_LICENSE_SHA, 1754, _github(*_CMUDICT, "LICENSE")),
            DataFile("README", "00c34e7564f1f6a68de02e12c123d801471da92bc3091f7d89b605f238bf8554",
                     1412, _github(*_CMUDICT, "README")),
        ),
    ),
    Dataset(
        name="cmudict_standard",
        title="CMUdict 0.7b G2P test split (stress removed)",
        description="The test words of the CMUdict 0.7b split that neural G2P papers report on: "
                    "12,855 pronunciations of 11,994 words, 39 phonemes; train on the rest of cmudict.",
        licence="BSD-2-Clause-style (CMU)",
        source="microsoft/CNTK@0ba41da07b9c (Examples/SequenceToSequence/CMUDict/Data)",
        files=(
            DataFile("cmudict-0.7b.test", "ece787fd3d88c7b130d43e7c2307ac11e6dfb4c052d661c37808ec7ed1df8574",
                     321219, _github(*_CNTK, "Examples/SequenceToSequence/CMUDict/Data/cmudict-0.7b.test")),
            DataFile("LICENSE", _CMUDICT_LICENSE_SHA, 1754, _github(*_CMUDICT, "LICENSE")),
        ),
        notes="The training set is every entry of the cmudict dataset whose word is not a test word "
              "(comments dropped, (n) markers stripped, words upper-cased, stress digits removed).",
        aliases=("cmudict-test", "cmudict_test"),
    ),
)


# --------------------------------------------------------------------------- lookup

def catalog() -> list[Dataset]:
    """Every dataset rnnkit knows by name, in the order ``rnnkit data list`` prints them."""
    return list(CATALOG)


def find(name: str, datasets: Optional[list[Dataset]] = None) -> Dataset:
    """The dataset called ``name`` (or one of its aliases; ``-`` and ``_`` are the same)."""
    datasets = catalog() if datasets is None else datasets
    key = name.strip().lower().replace("-", "_")
    for ds in datasets:
        if key in {n.replace("-", "_") for n in (ds.name, *ds.aliases)}:
            return ds
    raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(d.name for d in datasets)} "
                      "(rnnkit data list describes them)")


def data_root(dir: Optional[Path] = None) -> Path:
    """Where datasets live: ``dir``, else ``$RNNKIT_DATA``, else ``~/.cache/rnnkit/data``."""
    if dir is not None:
        return Path(dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "rnnkit" / "data"


def _human(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _state(ds: Dataset, root: Path) -> str:
    folder = root / ds.name
    present = sum((folder / f.name).is_file() for f in ds.files)
    if present == len(ds.files):
        return "here"
    if not ds.downloadable:
        return "instructions"
    return f"{present}/{len(ds.files)} files" if present else "-"


def format_list(dir: Optional[Path] = None, datasets: Optional[list[Dataset]] = None) -> str:
    """The table ``rnnkit data list`` prints: name, size, licence, whether it is in the cache, what it is."""
    datasets = catalog() if datasets is None else datasets
    root = data_root(dir)
    rows = [("name", "size", "files", "local", "licence", "what")]
    for ds in datasets:
        rows.append((ds.name, _human(ds.size), str(len(ds.files)), _state(ds, root), ds.licence, ds.title))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    lines.append("")
    lines.append(f"cache: {root} (set {ENV_VAR} or pass --dir to use another folder)")
    lines.append("get one with: rnnkit data get NAME   (prints the folder holding its files)")
    return "\n".join(line.rstrip() for line in lines)


def describe(name: str) -> str:
    """Several lines about one dataset: what, licence, source, files and URLs."""
    ds = find(name)
    out = [f"{ds.name}: {ds.title}", f"  {ds.description}", f"  licence: {ds.licence}",
           f"  source: {ds.source}", f"  size: {_human(ds.size)} in {len(ds.files)} files"]
    for f in ds.files:
        out.append(f"    {f.name}  {f.size:,} B  sha256 {f.sha256}")
        out.extend(f"      {u}{'  (gzip)' if f.gzipped else ''}" for u in f.urls)
    if ds.notes:
        out.append(f"  note: {ds.notes}")
    return "\n".join(out)


# --------------------------------------------------------------------------- fetching

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _AttemptFailed(Exception):
    """One URL did not give the file; the message says why."""


def get(name: str, dir: Optional[Path] = None, progress: bool = True,
        datasets: Optional[list[Dataset]] = None) -> Path:
    """The folder holding dataset ``name``'s verified files, downloading what is missing.

    ``dir`` is the data root (default :func:`data_root`): the dataset lives in
    ``dir/NAME``.  Files already there are checked against their sha256 and
    used as they are; missing ones are downloaded from their URLs in order,
    verified and renamed into place.  Raises ``ConfigError`` for an unknown
    name and ``DataError`` when a file cannot be had (with every URL tried and
    what went wrong), when a file in the folder does not match its checksum, or
    for a dataset that rnnkit may not download (the error says how to get it).
    """
    ds = find(name, datasets)
    folder = data_root(dir) / ds.name
    missing = []
    for f in ds.files:
        path = folder / f.name
        if path.is_file():
            got = sha256_file(path)
            if got != f.sha256:
                raise DataError(
                    f"{path} is not the {ds.name} file rnnkit expects: sha256 {got}, expected {f.sha256}. "
                    "Remove it (or point --dir / RNNKIT_DATA elsewhere) and run `rnnkit data get "
                    f"{ds.name}` again.")
        else:
            missing.append(f)
    if not missing:
        return folder
    unavailable = [f.name for f in missing if not f.urls]
    if unavailable:
        raise DataError(f"{ds.name}: {', '.join(unavailable)} not in {folder}, and rnnkit does not download "
                        f"them. {ds.notes}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data folder {folder}: {e.strerror or e}") from None
    for f in missing:
        _fetch(ds, f, folder, progress)
    return folder


def _fetch(ds: Dataset, f: DataFile, folder: Path, progress: bool) -> None:
    """Download ``f`` into ``folder``, trying each URL in turn; ``DataError`` if none gives it."""
    failures = []
    for url in f.urls:
        try:
            _fetch_one(url, f, folder / f.name, progress)
            return
        except _AttemptFailed as e:
            failures.append(f"{url}: {e}")
    tried = "\n  ".join(failures)
    extra = f"\n{ds.notes}" if ds.notes else ""
    raise DataError(f"could not download {f.name} of {ds.name}; tried {len(failures)} URL(s):\n  {tried}{extra}")


def _fetch_one(url: str, f: DataFile, dest: Path, progress: bool) -> None:
    """Stream ``url`` to a temporary file beside ``dest``, verify, (gunzip), rename into place."""
    expected_download = f.download_sha256 if f.gzipped else f.sha256
    tmp = _temp_beside(dest, ".part")
    try:
        with open(tmp, "wb") as out:
            got = _download(url, out, label=f.name, progress=progress)
        if got != expected_download:
            raise _AttemptFailed(f"checksum mismatch: expected sha256 {expected_download}, got {got}")
        if f.gzipped:
            plain = _temp_beside(dest, ".gunzip")
            try:
                got = _gunzip(tmp, plain)
                if got != f.sha256:
                    raise _AttemptFailed(f"checksum mismatch after gunzip: expected sha256 {f.sha256}, got {got}")
                os.replace(plain, dest)
            finally:
                plain.unlink(missing_ok=True)
        else:
            os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _temp_beside(dest: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    return Path(name)


def _download(url: str, out: IO[bytes], label: str, progress: bool) -> str:
    """Write ``url``'s body to ``out``; its sha256.  ``_AttemptFailed`` on any network failure."""
    h = hashlib.sha256()
    received = 0
    request = urllib.request.Request(url, headers={"User-Agent": "rnnkit"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = _bar(total, label, progress)
            try:
                while True:
                    block = resp.read(_CHUNK)
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    received += len(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
    except urllib.error.HTTPError as e:
        raise _AttemptFailed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _AttemptFailed(f"unreachable ({e.reason})") from None
    except (HTTPException, socket.timeout, OSError) as e:
        what = type(e).__name__ if not str(e) else f"{type(e).__name__}: {e}"
        raise _AttemptFailed(f"transfer interrupted after {received:,} bytes ({what})") from None
    if total is not None and received != total:
        raise _AttemptFailed(f"transfer interrupted: got {received:,} of {total:,} bytes")
    return h.hexdigest()


def _bar(total: Optional[int], label: str, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                file=sys.stderr, leave=False)


def _gunzip(src: Path, dest: Path) -> str:
    """Decompress ``src`` into ``dest``; the sha256 of what was written."""
    h = hashlib.sha256()
    try:
        with gzip.open(src, "rb") as inp, open(dest, "wb") as out:
            for block in iter(lambda: inp.read(1 << 20), b""):
                out.write(block)
                h.update(block)
    except (OSError, EOFError) as e:
        raise _AttemptFailed(f"not a valid gzip file ({e})") from None
    return h.hexdigest()


__all__ = ["CATALOG", "DataFile", "Dataset", "ENV_VAR", "catalog", "data_root", "describe", "find",
           "format_list", "get", "sha256_file"]
