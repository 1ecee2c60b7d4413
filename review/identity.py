"""When two identities are the same person: the key separation of duties compares.

An agent names its principal in `on_behalf_of.id` (text it chose); a reviewer is known
by their username and e-mail. A reviewer may not approve a deferral made on their own
behalf, so the comparison must see through text that only looks different:

1. surrounding white space is trimmed;
2. Unicode NFKC folds compatibility forms (full-width `ａｌｉｃｅ`, ligatures, `ℌ`);
3. case is folded (`Alice` = `alice`, `STRASSE` = `straße`);
4. invisible and format characters are removed anywhere (zero-width spaces and joiners,
   bidi controls, soft hyphens: every character of Unicode category Cf, and C0/C1
   controls);
5. every look-alike character is replaced by its prototype from Unicode's
   confusables.txt (UTS #39's skeleton, from the data the `confusable-homoglyphs`
   package ships), after case folding: Cyrillic `а` and Latin `a` become `a`; `1` and
   `|` become `l`; `0` becomes `o`; `m` becomes `rn`; and since capital `I` is both an
   upper-case `i` and a look-alike of `l`, `i` and `l` count as one letter.

Two identities are the same person when their keys are equal. The skeleton is
deliberately generous, so it errs on the side of "same": a reviewer may find an item
withheld from them that another reviewer can take, never the reverse.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Iterable
from importlib import resources

INVISIBLE_CATEGORIES = {"Cf", "Cc", "Zl", "Zp"}


@functools.lru_cache(maxsize=4096)  # every deferral asks it of its principal, who repeat
def identity_key(text: str) -> str:
    """The form of an identity that separation of duties compares (a pure function of
    `text`, remembered: its Unicode passes were a fiftieth of an intake's Python)."""
    visible = _visible(unicodedata.normalize("NFKC", text).strip())
    key = _skeleton(unicodedata.normalize("NFKC", visible.casefold()))
    # Capital I is both an upper-case i and a look-alike of l, so i and l are one letter
    # here: `ALICE`, `alice` and `aIice` have one key.
    return key.replace("i", "l")


def identity_keys(texts: Iterable[str | None]) -> frozenset[str]:
    """The keys of several identities (a reviewer's username and e-mail), empty ones left out."""
    return frozenset(k for k in (identity_key(t) for t in texts if t) if k)


def _visible(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) not in INVISIBLE_CATEGORIES)


def _skeleton(text: str) -> str:
    prototypes = _prototypes()
    return "".join(prototypes.get(ch, ch) for ch in text)


@functools.cache
def _prototypes() -> dict[str, str]:
    """Each look-alike character -> the prototype Unicode's confusables.txt maps it to.

    The package's data lists, for every character, its look-alikes in both directions:
    a look-alike has one entry (its prototype), a prototype has the look-alikes that map
    to it. So a character with a single entry whose own list names it back (and is the
    longer list, or the lower code point when both have one) is a look-alike of it.
    """
    data = json.loads(
        resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    )
    listed = {char: [glyph["c"] for glyph in glyphs] for char, glyphs in data.items()}
    prototypes: dict[str, str] = {}
    for char, alikes in listed.items():
        if len(char) != 1 or len(alikes) != 1:
            continue
        target = _visible(alikes[0])  # some entries carry bidi marks around the glyph
        back = listed.get(alikes[0])
        if not target or target == char:
            continue
        if back is None or len(back) > 1 or (len(back) == 1 and target < char):
            prototypes[char] = target
    return prototypes
