"""General (non-domain) English text that exists offline: for replay and for measuring forgetting.

CPT needs general text twice: mixed into training (*replay*, so the model keeps seeing the kind of text it
was pretrained on) and held out (to measure how much general ability the CPT cost). Without network access
the machine still carries plenty of real English prose:

- ``package-readmes``: the long descriptions (PyPI READMEs) of every installed distribution, taken from
  ``importlib.metadata``; markdown/reStructuredText noise (code blocks, badges, tables, link-only lines,
  directives, heading underlines) is removed lightly and documents shorter than 500 characters after
  cleaning are skipped. Sorted by distribution name, so the result only changes when the environment does;
  this project's own distribution is left out (its README changes with the product, and is not general text).
- ``stdlib-docstrings``: docstrings of a fixed list of standard-library modules and of their public
  classes, methods and functions (``inspect.getdoc``), one document per module; doctest lines are dropped.
- a path: a ``.txt`` file (documents separated by blank lines), a ``.jsonl``/``.jsonl.gz`` file (a ``text``
  field per row) or a folder of those (sorted).

The two built-in sources differ on purpose: replay draws from one and the general held-out evaluation from
the other. Replay drawn from the held-out's own source flatters the forgetting figure: the model would be
rehearsing the very distribution it is tested on. Both are technical English, narrower than web text, which
is the trade-off for being available with no download.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.io import iter_text_rows

SOURCES = ("package-readmes", "stdlib-docstrings")
MIN_README_CHARS = 500
MIN_DOCSTRING_CHARS = 200

# Stable, prose-rich modules; the list is fixed so the text only changes with the Python version.
STDLIB_MODULES = (
    "abc", "argparse", "array", "asyncio", "base64", "bisect", "calendar", "cmd", "codecs", "collections",
    "concurrent.futures", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "email.message", "enum", "fileinput", "fnmatch", "fractions", "ftplib", "functools", "getopt",
    "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html.parser", "http.client", "http.cookiejar",
    "imaplib", "inspect", "io", "ipaddress", "itertools", "json", "locale", "logging", "mailbox", "mimetypes",
    "numbers", "operator", "optparse", "os", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched",
    "secrets", "selectors", "shelve", "shlex", "shutil", "smtplib", "socket", "socketserver", "sqlite3",
    "statistics", "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit",
    "tokenize", "traceback", "turtle", "typing", "unittest", "urllib.parse", "urllib.request", "uuid",
    "warnings", "wave", "weakref", "xml.dom.minidom", "zipfile",
)  # fmt: skip

class GeneralTextConfig(BaseModel):
    """A source of general (not domain) text, for replay or for measuring forgetting."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(
        "package-readmes",
        description="'package-readmes' (installed packages' long descriptions), 'stdlib-docstrings', "
        "or a path to a .txt/.jsonl file or folder",
    )
    max_chars: int = Field(200_000, ge=1000)


def general_texts(cfg: GeneralTextConfig) -> list[str]:
    """Deterministic general-text documents from ``cfg.source``, at most ``cfg.max_chars`` characters in all."""
    source = cfg.source.strip()
    if source == "package-readmes":
        docs = _package_readmes()
    elif source == "stdlib-docstrings":
        docs = _stdlib_docstrings()
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"general text source {source!r}: no such file or folder (built-in sources: {', '.join(SOURCES)})"
            )
        docs = _from_path(path)
    return _cap(docs, cfg.max_chars)


def _cap(docs: list[str], max_chars: int) -> list[str]:
    """Whole documents in order; the last one cut at a word boundary so the total stays within the cap."""
    out, used = [], 0
    for doc in docs:
        room = max_chars - used
        if room <= 0:
            break
        if len(doc) > room:
            cut = doc[:room]
            out.append(cut[: cut.rfind(" ")] if " " in cut[room // 2 :] else cut)
            break
        out.append(doc)
        used += len(doc)
    return out


# ---------------------------------------------------------------------------------------------------------
# Installed packages' READMEs


def _dist_key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _package_readmes() -> list[str]:
    # This project's own README is not general text, and editing it must not change what a run replays.
    own = {_dist_key(n) for n in importlib.metadata.packages_distributions().get(__name__.split(".")[0], [])}
    by_name: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        meta = dist.metadata
        key = _dist_key(meta.get("Name") or "")
        if not key or key in by_name or key in own:  # the same project installed twice: keep the first seen
            continue
        body = meta.get_payload() if hasattr(meta, "get_payload") else None
        text = body if isinstance(body, str) and body.strip() else (meta.get("Description") or "")
        by_name[key] = text
    docs = []
    for key in sorted(by_name):
        text = clean_markup(by_name[key])
        if len(text) >= MIN_README_CHARS and _mostly_ascii(text):
            docs.append(text)
    return docs


def _mostly_ascii(text: str) -> bool:
    # The replay/held-out text is meant to be English; a README in another script would skew bits-per-byte.
    return sum(ch.isascii() for ch in text) >= 0.95 * len(text)


_FENCE = re.compile(r"^\s*(```|~~~)")
_RST_DIRECTIVE = re.compile(r"^\s*\.\. ")
_UNDERLINE = re.compile(r"^\s*([=\-~^*+#`'\".:_])\1{2,}\s*$")
_TABLE = re.compile(r"^\s*(\||\+[-=+]{2,})")
_URL = r"(https?://|www\.)\S+"
_LINK_ONLY = re.compile(
    rf"^\s*([-*]\s*)?(<?{_URL}>?|\[[^\]]*\]\([^)]*\)|\[[^\]]*\]:\s*\S+|`[^`<]*<[^>]+>`_+|\S+:\s*{_URL})\s*$"
)
_BADGE = re.compile(r"\[!\[|!\[[^\]]*\]\([^)]*\)|shields\.io|badge", re.IGNORECASE)
_HTML_ONLY = re.compile(r"^\s*(<[^>]+>\s*)+$")


def clean_markup(text: str) -> str:
    """Light markdown/reST clean-up: keep prose, drop code, badges, tables, directives and link-only lines."""
    lines = text.replace("\r\n", "\n").replace("\t", "    ").split("\n")
    out: list[str] = []
    in_fence = False
    skip_indented = False  # inside a reST literal block (after '::') or a directive's body
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        stripped = line.strip()
        if skip_indented:
            if not stripped or line[:1] in (" ",):
                continue
            skip_indented = False
        if _RST_DIRECTIVE.match(line):
            skip_indented = True
            continue
        if (
            _UNDERLINE.match(line)
            or _TABLE.match(line)
            or _LINK_ONLY.match(line)
            or _BADGE.search(line)
            or _HTML_ONLY.match(line)
            or stripped.startswith((">>>", "$ ", "... "))
        ):
            continue
        if stripped.endswith("::"):
            # reST: the indented block after '::' is code; the '::' itself renders as ':' (or nothing).
            skip_indented = True
            line = line.rstrip()[:-1] if not stripped == "::" else ""
        line = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", line)  # [text](url) -> text
        line = re.sub(r"`([^`<]+?)\s*<[^>]+>`_+", r"\1", line)  # `text <url>`_ -> text
        line = re.sub(r"<[^>]+>", "", line)  # inline HTML tags
        line = re.sub(r"^\s{0,3}#{1,6}\s+", "", line)  # markdown heading marks
        line = line.replace("**", "").replace("`", "")
        out.append(line.rstrip())
    cleaned = "\n".join(out)
    cleaned = re.sub(r"\n{3,}", "\n\n", cleaned)
    return cleaned.strip()


# ---------------------------------------------------------------------------------------------------------
# Standard-library docstrings


def _stdlib_docstrings() -> list[str]:
    docs = []
    for module_name in STDLIB_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # e.g. a Python built without sqlite3 or tkinter
            continue
        parts = []
        if doc := inspect.getdoc(module):
            parts.append(doc)
        for name in _public_names(module):
            obj = getattr(module, name, None)
            if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                continue
            if getattr(obj, "__module__", None) != module.__name__:
                continue  # re-exported from elsewhere: documented with its own module
            if doc := _own_doc(obj):
                parts.append(f"{name}\n{doc}")
            if inspect.isclass(obj):
                for attr, member in sorted(vars(obj).items()):
                    if attr.startswith("_") or not callable(member):
                        continue
                    if doc := _own_doc(member):
                        parts.append(f"{name}.{attr}\n{doc}")
        text = "\n\n".join(parts)
        text = "\n".join(line for line in text.split("\n") if not line.lstrip().startswith((">>>", "...")))
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
        if len(text) >= MIN_DOCSTRING_CHARS:
            docs.append(text)
    return docs


def _public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return sorted(set(names))


def _own_doc(obj) -> str | None:
    # getdoc inherits docstrings from base classes (object's "Initialize self..." etc.); only keep own text.
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or len(doc.strip()) < 40:
        return None
    return inspect.cleandoc(doc)


# ---------------------------------------------------------------------------------------------------------
# Files and folders


def _from_path(path: Path) -> list[str]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _readable(p))
        if not files:
            raise FileNotFoundError(f"general text folder {path} holds no .txt, .jsonl or .jsonl.gz files")
        return [doc for f in files for doc in _from_file(f)]
    if not _readable(path):
        raise ValueError(f"general text file {path}: expected .txt, .jsonl or .jsonl.gz")
    return _from_file(path)


def _readable(path: Path) -> bool:
    return path.name.endswith((".txt", ".jsonl", ".jsonl.gz"))


def _from_file(path: Path) -> list[str]:
    if path.name.endswith(".txt"):
        text = path.read_text(encoding="utf-8")
        return [d.strip() for d in re.split(r"\n\s*\n", text) if d.strip()]
    return [row["text"].strip() for _, row in iter_text_rows(path) if row["text"].strip()]
