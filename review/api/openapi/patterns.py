"""The regular expressions of the API's schemas, written to mean the same everywhere.

JSON Schema's `pattern` is an ECMA-262 regular expression: that is how clients generated
from the document read it. This service checks requests with Python's `re` (jsonschema
and fastjsonschema). The two dialects disagree on some spellings, so the patterns here
avoid them (tests/test_openapi_patterns.py runs each in both, over every code point):

- `\\s` is not the same set: Python's includes U+001C-U+001F and U+0085, ECMA-262's
  includes U+FEFF. Every class here names its characters.
- `$` in Python also matches before a final newline ("abc\\n" matches `^abc$`), and
  fastjsonschema rewrites `$` to `\\Z`, so jsonschema and fastjsonschema would disagree
  too. A pattern ends with END, a look-ahead that only the end of the string satisfies
  in every dialect, or with a class that itself takes a newline.
"""

from __future__ import annotations

END = r"(?![\s\S])"

# What a URL may not hold: C0 controls and the space, DEL and the C1 controls, and every
# other character either dialect counts as white space (the union of both `\s`).
URL_FORBIDDEN = r"\x00-\x20\x7f-\x9f\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"

HTTP_URL = rf"^[Hh][Tt][Tt][Pp][Ss]?://[^{URL_FORBIDDEN}/?#]+[^{URL_FORBIDDEN}]*{END}"

# PostgreSQL cannot store U+0000 in text or jsonb: no string the service keeps holds one.
NO_NUL = r"^[^\x00]*$"

AGENT_SLUG = rf"^[a-z0-9][a-z0-9-]{{0,62}}{END}"
DEFERRAL_ID = rf"^dfr_[0-9A-Z]{{26}}{END}"
DIGEST = rf"^sha256:[0-9a-f]{{64}}{END}"
UNIX_SECONDS = rf"^[0-9]{{1,12}}{END}"
