"""Source2Synth's document sources: .txt / .md files, and the entity links between them.

`load_documents` reads the files and finds which documents mention which others: explicit links (`[[Title]]`,
`[[Title|shown]]`, `[text](other.md)`), shared entity names (another document's title or alias as whole words),
or both. A malformed document is reported as `Skipped` and the rest still load.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from collections.abc import Sequence

from libs.source2synth import sources
from libs.train.errors import ConfigError

MATCHERS = ("links", "names", "links+names")
DOCUMENT_EXTENSIONS = (".txt", ".md")


@dataclasses.dataclass(frozen=True)
class Document:
    title: str  # first "# " heading, else the file stem with _ and - as spaces
    path: str
    text: str  # the body (without the title heading and aliases lines)
    links: tuple[str, ...]  # titles of other loaded documents this one links to, in order of first mention
    aliases: tuple[str, ...] = ()  # other names of the entity (an `aliases: A, B` line under the title)



_TITLE_RE = re.compile(r"#[ \t]+(.*?)[ \t#]*")
_ALIASES_RE = re.compile(r"aliases:(.*)", re.IGNORECASE)
_LINK_RE = re.compile(r"\[\[(?P<target>[^\[\]|\n]+)(?:\|(?P<shown>[^\[\]\n]*))?\]\]"
                      r"|!?\[(?P<text>[^\[\]\n]*)\]\((?P<url><[^<>\n]*>|[^()\s]*)(?:\s+\"[^\"\n]*\")?\)")
_HEADING_RE = re.compile(r"\s*#{1,6}(?:\s|$)")
_SENTENCE_END_RE = re.compile(r"([.!?]+)[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREVIATIONS = frozenset((
    "Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Prof", "Gen", "Col", "Lt", "Sgt", "Capt", "Cpt", "Mt", "Ft", "No",
    "Nos", "Inc", "Ltd", "Co", "Corp", "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov",
    "Dec", "Fig", "Figs", "Vol", "Rev", "Hon", "Gov", "Sen", "Rep", "Ave", "Blvd", "vs", "cf", "al", "approx", "ca",
))
_DOTTED_RE = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}|[A-Z]")  # U.S, e.g, Ph.D, initials


def _norm(name: str) -> str:
    return " ".join(name.split()).casefold()


def _links_and_plain(text: str) -> tuple[str, list[tuple[int, str, str]]]:
    """The text without link markup, and each link's (position in that text, kind "wiki"|"file", target)."""
    parts, refs, last, length = [], [], 0, 0
    for match in _LINK_RE.finditer(text):
        before = text[last:match.start()]
        parts.append(before)
        length += len(before)
        if match.group("target") is not None:
            target = match.group("target").strip()
            shown = match.group("shown")
            replacement, ref = (shown if shown and shown.strip() else target), ("wiki", target.split("#")[0])
        else:
            replacement, ref = match.group("text"), ("file", match.group("url").strip("<>"))
        refs.append((length, *ref))
        parts.append(replacement)
        length += len(replacement)
        last = match.end()
    parts.append(text[last:])
    return "".join(parts), refs


def plain_text(text: str) -> str:
    """The body with link markup removed: [[T|shown]] -> shown, [[T]] -> T, [text](x.md) -> text."""
    return _links_and_plain(text)[0]


def _parse_document(path: str) -> tuple[str, list[str], str]:
    """(title, aliases, body) of one file."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        lines = raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise sources.SkipFile(f"not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    title, aliases = None, []
    for i, line in enumerate(lines):
        match = _TITLE_RE.fullmatch(line)
        if match and match.group(1).strip():
            title = match.group(1).strip()
            del lines[i]
            alias_match = _ALIASES_RE.fullmatch(lines[i].strip()) if i < len(lines) else None
            if alias_match:
                aliases = [a.strip() for a in alias_match.group(1).split(",") if a.strip()]
                del lines[i]
            break
    title = title or " ".join(re.sub(r"[_-]+", " ", sources.file_stem(path)).split())
    body = "\n".join(lines).strip()
    if not body:
        raise sources.SkipFile("empty body")
    return title, aliases, body


def load_documents(paths: Sequence[str], matcher: str = "links") -> tuple[dict[str, Document], list[sources.Skipped]]:
    """Loads .txt and .md files (or directories of them, sorted, non-recursive) and their links to each other:
    "links" (wiki links [[Title]] / [[Title|shown]] and markdown links [text](other.md)), "names" (another
    document's title or alias as whole words, case-insensitive) or "links+names". Returns ({title: Document},
    skipped); an empty dict when nothing could be loaded."""
    if matcher not in MATCHERS:
        raise ConfigError(f"unknown document link matcher {matcher!r}; expected one of {', '.join(MATCHERS)}")
    skipped: list[sources.Skipped] = []
    parsed: dict[str, tuple[str, list[str], str]] = {}  # normalised title -> (path, aliases, body)
    titles: dict[str, str] = {}  # normalised title -> title
    for path in sources.expand_paths(paths, DOCUMENT_EXTENSIONS):
        try:
            if os.path.splitext(path)[1].lower() not in DOCUMENT_EXTENSIONS:
                raise sources.SkipFile(f"unsupported extension (expected one of {', '.join(DOCUMENT_EXTENSIONS)})")
            title, aliases, body = _parse_document(path)
            if _norm(title) in parsed:
                raise sources.SkipFile(f"title {title!r} is already used by {parsed[_norm(title)][0]}")
        except sources.SkipFile as e:
            skipped.append(sources.Skipped(path, str(e)))
            continue
        parsed[_norm(title)] = (path, aliases, body)
        titles[_norm(title)] = title

    by_name = dict(titles)  # normalised title or alias -> title (titles win over aliases)
    for key, (_, aliases, _) in parsed.items():
        for alias in aliases:
            by_name.setdefault(_norm(alias), titles[key])
    by_path = {os.path.abspath(path): titles[key] for key, (path, _, _) in parsed.items()}
    names_re = None
    if "names" in matcher and by_name:
        alternatives = sorted(by_name, key=len, reverse=True)
        names_re = re.compile(r"(?<!\w)(?:" + "|".join(r"\s+".join(map(re.escape, n.split())) for n in alternatives)
                              + r")(?!\w)", re.IGNORECASE)

    documents = {}
    for key, (path, aliases, body) in parsed.items():
        plain, refs = _links_and_plain(body)
        mentions: list[tuple[int, str | None]] = []
        if "links" in matcher.split("+"):
            for position, kind, target in refs:
                resolved = by_name.get(_norm(target)) if kind == "wiki" else _resolve_file(path, target, by_path)
                mentions.append((position, resolved))
        if names_re is not None:
            mentions += [(m.start(), by_name.get(_norm(m.group(0)))) for m in names_re.finditer(plain)]
        links = []
        for _, title in sorted(mentions, key=lambda mention: mention[0]):
            if title is not None and title != titles[key] and title not in links:
                links.append(title)
        documents[titles[key]] = Document(titles[key], path, body, tuple(links), tuple(aliases))
    return documents, skipped


def _resolve_file(path: str, url: str, by_path: dict[str, str]) -> str | None:
    """The title of the loaded document a markdown link points to (relative to the linking file), else None."""
    if not url or url.startswith("#") or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", url):
        return None
    target = urllib.parse.unquote(re.split(r"[#?]", url)[0])
    return by_path.get(os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), target)))


def passages(doc: Document) -> list[str]:
    """Paragraphs of the plain text (blank-line separated, headings dropped, whitespace collapsed)."""
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", plain_text(doc.text)):
        kept = [line for line in block.splitlines() if not _HEADING_RE.match(line)]
        paragraph = " ".join(" ".join(kept).split())
        if paragraph:
            paragraphs.append(paragraph)
    return paragraphs


def sentences(text: str) -> list[str]:
    """Sentences of `text` (whitespace collapsed): split after . ! ? followed by a space and a capital or digit,
    except after common abbreviations (Dr., St., No.), dotted acronyms (U.S., e.g.) and initials (J. R.)."""
    text = " ".join(text.split())
    result, start = [], 0
    for match in _SENTENCE_END_RE.finditer(text):
        if match.group(1) == ".":
            word = text[start:match.start()].rsplit(" ", 1)[-1].lstrip("\"'([")
            if word in _ABBREVIATIONS or _DOTTED_RE.fullmatch(word):
                continue
        result.append(text[start:match.end()].strip())
        start = match.end()
    if text[start:].strip():
        result.append(text[start:].strip())
    return result
