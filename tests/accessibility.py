"""axe-core in the browser tests: the rules a page breaks, serious and critical only.

axe is the npm package `axe-core`, vendored under tests/vendor/axe-core/ with its license
(no CDN). It is evaluated through Playwright (the DevTools protocol), which the page's
CSP (`script-src 'self'`) does not govern, so the page is tested exactly as served.
"""

from __future__ import annotations

from pathlib import Path

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
GRAVE = ("serious", "critical")

_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations
    .filter(v => ["serious", "critical"].includes(v.impact))
    .map(v => `${v.impact} ${v.id}: ${v.help} at ` +
              v.nodes.slice(0, 4).map(n => n.target.join(" ")).join(", "));
}"""


def grave_violations(page) -> list[str]:
    """axe's serious and critical violations on the page as it is now, one line each."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text() + "\n;0")
    return page.evaluate(_RUN)
