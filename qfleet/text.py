"""Untrusted text (labels, attributes, titles that came from telemetry) made safe for where it is shown.

Telemetry is written by whoever can reach the collector, so its strings are data, never markup or terminal
control: :func:`for_terminal` makes control characters visible, :func:`markdown_literal` makes a string render
as exactly itself in CommonMark (and Streamlit's Markdown, whose extras — ``:emoji:``, ``$math$``,
``:color[...]`` — are made of ASCII punctuation too). HTML exports use :func:`html.escape`.
"""

from __future__ import annotations

import re

__all__ = ["for_terminal", "markdown_literal"]

# C0 controls, DEL, C1 controls, and the Unicode bidirectional overrides/isolates (which reorder what a
# reader sees: "Trojan Source", CVE-2021-42574), plus line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# CommonMark: any ASCII punctuation may be backslash-escaped, and an escaped one is always literal.
_PUNCT = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")


def _visible(m: re.Match[str]) -> str:
    c = m.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c, f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def for_terminal(s: object) -> str:
    """``s`` as one line a terminal shows literally: control characters (escape sequences, newlines, bidi
    overrides) become visible escapes.

    >>> for_terminal("node\\x1b[2J-1\\nfake line")
    'node\\\\x1b[2J-1\\\\nfake line'
    """
    return _CONTROL.sub(_visible, str(s))


def markdown_literal(s: object) -> str:
    """``s`` escaped so CommonMark (and Streamlit) renders it as exactly its characters on one line: no links,
    images, emphasis, HTML, math or emoji; control characters shown as escapes.

    >>> markdown_literal("[click](http://x) ![t](http://x/p.png) <b>")
    '\\\\[click\\\\]\\\\(http\\\\:\\\\/\\\\/x\\\\) \\\\!\\\\[t\\\\]\\\\(http\\\\:\\\\/\\\\/x\\\\/p\\\\.png\\\\) \\\\<b\\\\>'
    """
    return _PUNCT.sub(r"\\\1", for_terminal(s))
