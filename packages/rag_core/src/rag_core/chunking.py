"""Split text into overlapping chunks sized in model tokens (or characters), with line ranges.

A chunk ends at the best break near its size limit (a blank line, then a line end, then a
sentence end), and the next chunk starts `overlap` units before it ends.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

Span = tuple[int, int]
WORD = re.compile(r"\S+")
SENTENCE_END = (".", "!", "?", ":", ";")


@dataclass(frozen=True)
class TextChunk:
    text: str
    line_start: int  # 1-based, inclusive
    line_end: int


class Chunker:
    """Chunks of at most `size` tokens of `tokenize` (or `size` characters without one).

    `tokenize(text)` returns each token's character span; `signature` names the settings, so
    a store can tell which documents were chunked differently and must be re-chunked.
    """

    def __init__(
        self,
        size: int,
        overlap: int,
        tokenize: Callable[[str], list[Span]] | None = None,
        name: str = "chars",
    ):
        if size <= 0 or not 0 <= overlap < size:
            raise ValueError(
                f"Chunk size must be > 0 and overlap in [0, size): got {size} and {overlap}."
            )
        self.size, self.overlap, self.tokenize = size, overlap, tokenize
        self.signature = f"{name}:{size}:{overlap}"

    def split(self, text: str) -> list[TextChunk]:
        if self.tokenize is not None:
            spans = [s for s in self.tokenize(text) if s[1] > s[0]]

            def measure(i: int, j: int) -> int:
                return j - i
        else:
            spans = [m.span() for m in WORD.finditer(text)]

            def measure(i: int, j: int) -> int:
                return spans[j - 1][1] - spans[i][0]

        line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

        def line_of(offset: int) -> int:
            return bisect.bisect_right(line_starts, offset)

        chunks = []
        for i, j in _windows(text, spans, measure, self.size, self.overlap):
            start, end = spans[i][0], spans[j - 1][1]
            chunks.append(TextChunk(text[start:end], line_of(start), line_of(end - 1)))
        return chunks


def _windows(text: str, spans: list[Span], measure, size: int, overlap: int):
    """Yield (i, j): chunk = units i..j-1."""
    n, i = len(spans), 0
    while i < n:
        j = i + 1
        while j < n and measure(i, j + 1) <= size:
            j += 1
        if j < n:
            # Prefer a natural break in the last 40% of the window.
            lowest = i + max(1, (j - i) * 6 // 10)
            best = max(range(lowest, j + 1), key=lambda b: (_break_strength(text, spans, b), b))
            if _break_strength(text, spans, best) > 0:
                j = best
        yield i, j
        if j >= n:
            return
        k = j
        while k - 1 > i and measure(k - 1, j) <= overlap:
            k -= 1
        while k < j and _break_strength(text, spans, k) == 0:  # start on a word
            k += 1
        i = k


def _break_strength(text: str, spans: list[Span], b: int) -> int:
    """How good a cut just before unit b is: 4 paragraph, 3 line, 2 sentence, 1 word, 0 none."""
    gap = text[spans[b - 1][1] : spans[b][0]]
    if not gap:
        return 0
    if gap.count("\n") >= 2:
        return 4
    if "\n" in gap:
        return 3
    return 2 if text[spans[b - 1][1] - 1] in SENTENCE_END else 1
