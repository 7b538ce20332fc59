"""Markdown for people: escaping in one place, and the Jinja environment that applies it.

Every user string that reaches a generated README, a plan or a PR comment goes through
`esc` (a table cell or heading: one line, no HTML, no pipes, no code spans, no links) or
`code` (inline code a string cannot break out of). Templates (`environment`) escape every
`{{ value }}` with `esc` by default; a value that is already Markdown, made here or by a
renderer from escaped parts, is wrapped in `Markdown` and printed as it is.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any
from urllib.parse import quote

CELL_MAX = 160  # characters of one user string in a cell, before escaping

# Pipes and newlines would split a table row, backticks open code spans, brackets make
# links, "<" / "&" start HTML or entities, and "@" notifies a user or team on GitHub.
_ESCAPES: dict[int, str] = {
    ord("\\"): "\\\\",
    ord("|"): "\\|",
    ord("`"): "\\`",
    ord("["): "\\[",
    ord("]"): "\\]",
    ord("*"): "\\*",
    ord("<"): "&lt;",
    ord(">"): "&gt;",
    ord("&"): "&amp;",
    ord("@"): "@\u200b",  # a zero-width space after "@": no @user or @org/team mention
}
for _c in [*range(0x00, 0x20), 0x7F, 0x85, 0x2028, 0x2029]:
    _ESCAPES[_c] = " "
_ESCAPE_TABLE = str.maketrans(_ESCAPES)
_SAFE_URL_CHARS = ":/?#@!$&'*+,;=%~"
GCS_CONSOLE_BROWSER = "https://console.cloud.google.com/storage/browser/"
GCS_CONSOLE_OBJECT = "https://storage.cloud.google.com/"
_PLAIN_URL = re.compile(r"[A-Za-z0-9:/?#@!$&'*+,;=%~._-]*")


class Markdown(str):
    """Text that is already Markdown (built from escaped parts): printed as it is."""

    __slots__ = ()


def esc(value: object) -> str:
    """Escape a user string for a Markdown table cell or heading (one line, no HTML,
    no pipes, no code spans, no links), cut to a readable length."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > CELL_MAX:
        text = text[: CELL_MAX - 1] + "\u2026"
    return text.translate(_ESCAPE_TABLE).strip()


def code(text: str) -> Markdown:
    """Inline code that a hostile string cannot break out of (no backtick, one line)."""
    text = text.replace("\r", " ").replace("\n", " ").replace("`", "'")
    return Markdown(f"`{text}`")


def link(label: str, url: object, *, folder: bool = False) -> Markdown:
    """`[label](url)`: a short labelled link, never the raw address. An http(s) URL as
    it is; a gs:// URI as its Cloud Console link (the console's browser for a `folder`,
    else the authenticated download of the object); a file:// URI as it is (a local
    run: it opens on the machine that ran it, GitHub shows the label alone); '' for no
    URL or anything else (the address stays in the entry)."""
    if not url or not isinstance(url, str):
        return Markdown("")
    if url.startswith("gs://") and len(url) > 5:
        # the Cloud Console's authenticated links for the same folder or object
        url = (GCS_CONSOLE_BROWSER if folder else GCS_CONSOLE_OBJECT) + url[5:]
    if not url[:8].lower().startswith(("https://", "http://", "file:///")):
        return Markdown("")
    if not _PLAIN_URL.fullmatch(url):
        url = quote(url, safe=_SAFE_URL_CHARS)
    return Markdown(f"[{esc(label)}]({url})")


def relative_link(label: str, path: object, prefix: str = "") -> Markdown:
    """A link to a repository path (from a page `prefix` away from the root), checked
    first: relative, no '..', no scheme; anything else is the escaped label alone."""
    if (isinstance(path, str) and path and not path.startswith(("/", "\\"))
            and "://" not in path and ".." not in path.split("/")):
        return Markdown(f"[{esc(label)}]({prefix}{quote(path, safe='/')})")
    return Markdown(esc(label))


def _finalize(value: Any) -> str:
    if isinstance(value, Markdown):
        return value
    return esc(value)


@cache
def environment(package: str) -> Any:
    """The Jinja environment of a package's `templates/` folder: undefined names are
    errors, and every printed value is escaped unless it is `Markdown`."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        autoescape=False,  # noqa: S701 - Markdown, not HTML: `_finalize` escapes every value
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["code"] = code
    env.filters["link"] = link
    return env


@cache
def _bytecode_cache() -> Any:
    """Compiled templates kept in this user's cache folder (`render.usercache`,
    `jinja/`): compiling the index's templates is ~0.15 s of every process that renders
    one. Jinja drops an entry whose template source changed (it stores the source's
    checksum); the key adds this module's source, which sets the options the code is
    compiled with."""
    import hashlib

    import jinja2

    from render.usercache import cache_dir, read_own, write_quietly

    with open(__file__, "rb") as fh:
        salt = hashlib.sha256(fh.read() + jinja2.__version__.encode()).hexdigest()[:16]

    class Cache(jinja2.BytecodeCache):
        def get_cache_key(self, name: str, filename: str | None = None) -> str:
            return str(super().get_cache_key(f"{salt}:{name}", filename))

        def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            raw = read_own(cache_dir("jinja") / f"{bucket.key}.cache")
            if raw is None:
                return
            try:  # checks Jinja's magic and the source checksum, else leaves it empty
                bucket.bytecode_from_string(raw)
            except Exception:  # noqa: BLE001 - a damaged file: compile the template
                bucket.reset()

        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            write_quietly(cache_dir("jinja") / f"{bucket.key}.cache",
                          bucket.bytecode_to_string())

    return Cache()
