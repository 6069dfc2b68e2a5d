"""What a survey comment says: a sentiment score and its themes (docs/metrics.md, Qualitative
feedback).

* Sentiment: VADER's compound score, -1 (most negative) .. 1 (most positive), from the lexicon
  that ships inside the vaderSentiment package (read once, when the first comment is scored; no
  download at run time). Only the first :data:`MAX_CHARS` characters are scored, which bounds the
  cost of one event.
* Themes: a configurable map theme -> keywords/phrases. A comment is about a theme when one of
  its phrases appears in it as whole words (case-insensitive; a phrase of several words must
  appear as those consecutive words). A comment about none is about :data:`OTHER`.

The comment text itself is never returned, logged or labelled here: only the score and the
theme names, which come from the configuration (a closed set).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from stream_app.vocabulary import DEFAULT_COMMENT_THEMES, OTHER_THEME

OTHER = OTHER_THEME
DEFAULT_THEMES = DEFAULT_COMMENT_THEMES

MAX_CHARS = 2000
_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> tuple[str, ...]:
    """Lower-case words of ``text`` (letters, digits, apostrophes)."""
    return tuple(_WORD.findall(text.lower()))


class ThemeMap:
    """Theme name -> phrases, compiled to word tuples once."""

    def __init__(self, themes: Mapping[str, Sequence[str]]) -> None:
        if OTHER in themes:
            raise ValueError(f"{OTHER!r} is the theme of comments about none; it cannot be configured")
        self.names: tuple[str, ...] = tuple(sorted(themes))
        self._phrases = {t: tuple({words(p) for p in themes[t] if words(p)}) for t in self.names}

    @property
    def labels(self) -> tuple[str, ...]:
        """Every theme a comment can get: the configured ones and ``other``."""
        return (*self.names, OTHER)

    def themes(self, text: str) -> tuple[str, ...]:
        """Sorted themes of a comment; (``other``,) when it names none."""
        ws = words(text[:MAX_CHARS])
        found = tuple(t for t in self.names if any(_contains(ws, p) for p in self._phrases[t]))
        return found or (OTHER,)


def _contains(ws: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(ws[i : i + n] == phrase for i in range(len(ws) - n + 1))


@lru_cache(maxsize=1)
def _analyzer():  # noqa: ANN202 - vaderSentiment has no type hints
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER compound score of a comment, -1 .. 1 (4 decimals, as VADER rounds it)."""
    return float(_analyzer().polarity_scores(text[:MAX_CHARS])["compound"])
