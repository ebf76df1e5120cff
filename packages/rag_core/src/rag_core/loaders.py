"""Document loaders: file -> text, chosen by suffix; plugins add more via `register_loaders`.

A loader raises ValueError for a file it cannot read (binary, undecodable); ingest skips such
files with a warning naming them, and so it does for files that are not regular (a FIFO, a
socket, a device), which it never reads.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

Loader = Callable[[Path], str]
FILE_KINDS = {
    stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device", stat.S_IFDIR: "a folder",
}  # fmt: skip


def read_bytes(path: Path) -> bytes:
    """The bytes of a regular file; ValueError for anything else (a FIFO, a socket, a device),
    whose reading may never end. OSError when it cannot be read."""
    path = Path(path)
    irregular = _irregular(path.stat().st_mode)  # sockets cannot even be opened
    if irregular:
        raise ValueError(irregular)
    # O_NONBLOCK: were it swapped for a FIFO since, opening it still returns at once.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as file:
        irregular = _irregular(os.fstat(file.fileno()).st_mode)
        if irregular:
            raise ValueError(irregular)
        return file.read()


def _irregular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file ({FILE_KINDS.get(stat.S_IFMT(mode), 'a special file')})"


def read_text(path: Path) -> str:
    """UTF-8 text (a BOM is dropped); ValueError for binary or undecodable files."""
    data = read_bytes(path)
    if b"\x00" in data[:8192]:
        raise ValueError("binary file (contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (invalid byte at offset {exc.start})") from None


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, each piece on the source line it came from."""

    SKIP: ClassVar[set[str]] = {"script", "style", "head", "template", "noscript"}
    BLOCK: ClassVar[set[str]] = {
        "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "td",
        "th", "table", "section", "article", "header", "footer", "nav", "blockquote", "pre",
        "hr", "dt", "dd", "title",
    }  # fmt: skip

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.line = 1
        self.skipping = 0
        self.separate = False  # a block boundary since the last text

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        self.separate = self.separate or tag in self.BLOCK

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        self.separate = self.separate or tag in self.BLOCK

    def handle_data(self, data):
        if self.skipping or (self.separate and not data.strip()):
            return
        source_line = self.getpos()[0]
        if source_line > self.line:
            self.parts.append("\n" * (source_line - self.line))
            self.line = source_line
        elif self.separate and self.parts and not self.parts[-1][-1:].isspace():
            self.parts.append(" ")
        self.separate = False
        self.parts.append(data)
        self.line += data.count("\n")


def read_html(path: Path) -> str:
    """The visible text of an HTML file, with line numbers matching the source for citations."""
    parser = _HTMLText()
    parser.feed(read_text(path))
    parser.close()
    return "".join(parser.parts)


BUILTIN_LOADERS: dict[str, Loader] = {
    ".txt": read_text,
    ".text": read_text,
    ".md": read_text,
    ".markdown": read_text,
    ".rst": read_text,
    ".html": read_html,
    ".htm": read_html,
}


class Loaders:
    """Suffix -> loader: the built-in ones, replaced or extended by plugins' loaders.
    Files with other suffixes are read as plain text when named explicitly."""

    def __init__(self, extra: dict[str, Loader] | None = None):
        self._loaders: dict[str, Loader] = {**BUILTIN_LOADERS, **(extra or {})}

    @classmethod
    def from_plugins(cls) -> Loaders:
        """Built-in loaders plus those the enabled plugins registered with `register_loaders`."""
        from rag_core.plugins import get_loaders

        return cls({suffix: loader.load for suffix, loader in get_loaders().items()})

    @property
    def suffixes(self) -> set[str]:
        return set(self._loaders)

    def handles(self, path: Path) -> bool:
        return path.suffix.lower() in self._loaders

    def load(self, path: Path) -> str:
        """The text of `path`; ValueError (with the reason) when it cannot be read as text."""
        load = self._loaders.get(path.suffix.lower(), read_text)
        try:
            text = load(path)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(str(exc) or type(exc).__name__) from None
        if not isinstance(text, str):
            raise ValueError(f"its loader returned {type(text).__name__}, not text")
        return text
