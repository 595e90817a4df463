"""The ABC folk tunes bundled with music21 as works, with the humans credited on each: read them
(``iter_tunes``); ``interop/abc_corpus.py`` registers them. This module needs nothing but the standard library.

The corpus ships inside the music21 wheel (``music21/corpus/<collection>/*.abc``); it is found with
``importlib.util.find_spec`` and never imported, so music21's own dependencies need not be installed.

A tune is the lines from its ``X:`` line to the first blank line or the next ``X:`` line (ABC 2.1); a
file's header applies its credit and licence lines to every tune in the file. Each tune's people are
credited as ``composer`` (``C:``), ``transcriber`` (``Z:``, "transcribed/contributed by", a copyright
line in the header) or ``collector`` ("collected by/from"); a tune with no composer is traditional.
``clean_person_name`` turns a credit line into a human name, or None when it names nobody (an origin, a
style, an editorial note), removing contact details, which are also removed from the tune's text. A
"non-commercial" licence (``essenFolksong``) marks the tune ``non_commercial``.

See docs/concepts/registry.md, "The demo's corpus: ABC tunes from music21".
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from endcredits.errors import LimitExceededError, NotFoundError, ValidationError
from endcredits.limits import CREDITS_PER_WORK_MAX, NAME_LENGTH_MAX, TITLE_LENGTH_MAX

ROLE_SCHEME = "endcredits"
ROLE_CODES: tuple[str, ...] = ("composer", "transcriber", "collector")
"""Every ``role_code`` this reader emits."""

ABC_FILE_BYTES_MAX = 16 * 1024 * 1024
"""Largest ABC file read (the largest in the music21 corpus is about 250 KB)."""

NAME_TOKENS_MAX = 6
"""Most words in one person's name ("Dan G. Petersen" has three)."""


@dataclass(frozen=True)
class AbcCredit:
    name: str
    """A cleaned human name; never an e-mail address, URL or phone number."""
    role_scheme: str
    """Always ``"endcredits"``."""
    role_code: str
    """One of ``ROLE_CODES``: composer (``C:``), transcriber (``Z:``), collector ("collected by")."""


@dataclass(frozen=True)
class AbcTune:
    text: str
    """The tune as ABC text, from its ``X:`` line to its end, with contact details removed."""
    title: str
    """The first ``T:`` line; empty when the tune has none."""
    source: str
    """``<collection>/<file>.abc#<X number>``; unique in the corpus."""
    collection: str
    """The collection directory, e.g. ``ryansMammoth``."""
    credits: tuple[AbcCredit, ...]
    traditional: bool
    """True when no composer is named."""
    non_commercial: bool
    """True when the encoding is licensed for non-commercial use only."""
    license_note: str | None


# Text typed on DOS (the Essen collection) and later read as Latin-1 carries C1 control characters
# (U+0080-U+009F) where the DOS code page had letters: U+0081 was "ü", U+0084 "ä", U+0094 "ö".
_C1_AS_DOS = {c: bytes([c]).decode("cp850") for c in range(0x80, 0xA0)}


def corpus_dir() -> Path:
    """The music21 corpus directory, located without importing music21."""
    fix = "run `make demo` or `pip install --no-deps music21==10.5.1`"
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(f"the music21 package (the ABC corpus) is not installed; {fix}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "corpus"
        if candidate.is_dir() and next(candidate.rglob("*.abc"), None) is not None:
            return candidate
    raise NotFoundError(f"music21 is installed without its corpus of .abc files; {fix}")


def iter_tunes(corpus: Path | None = None, *, limit: int | None = None) -> Iterator[AbcTune]:
    """Yield every tune under ``corpus`` (default: ``corpus_dir()``), files in sorted path order.

    ``corpus`` is the music21 corpus directory, or one collection's directory inside it.
    """
    if limit is not None and limit < 0:
        raise ValidationError(f"limit must be >= 0, got {limit}; pass None to read every tune")
    root = corpus_dir() if corpus is None else corpus
    if not root.is_dir():
        raise NotFoundError(f"ABC corpus directory {root} does not exist; pass the music21 corpus directory")
    paths = sorted(root.rglob("*.abc"), key=lambda p: p.relative_to(root).as_posix())
    count = 0
    for path in paths:
        for tune in _read_file(root, path):
            if limit is not None and count >= limit:
                return
            yield tune
            count += 1


# Names -------------------------------------------------------------------------------------------

_PARTICLES = frozenset({"de", "des", "du", "del", "della", "di", "da", "van", "von", "der", "den", "la", "le", "y"})
_HONORIFICS = {"mr": "Mr.", "mrs": "Mrs.", "dr": "Dr.", "rev": "Rev."}

# Whole values (lower case, dots dropped) that name an origin, a style or nobody.
_NOT_PERSONS = frozenset(
    {
        "irish", "scotch", "scottish", "scots", "welch", "welsh", "gaelic", "french", "english", "german",
        "american", "italian", "spanish", "virginian", "west india", "highland", "negroe", "trad",
        "traditional", "anon", "anonymous", "unknown", "various", "none", "none listed", "n/a", "folk",
    }
)  # fmt: skip
# Words that never occur in a person's name in this corpus, so a value that contains one is not a name.
_NOT_NAME_WORDS = frozenset(
    {
        "air", "airs", "tune", "tunes", "reel", "reels", "jig", "jigs", "hornpipe", "strathspey", "march",
        "waltz", "polka", "song", "dance", "version", "setting", "set", "regt", "regiment", "ornament",
        "ornaments", "fermata", "abc", "abcmus", "midi", "trad", "traditional", "anon", "unknown",
    }
)  # fmt: skip

# Spelling variants of one person seen in the corpus -> the one name they are credited under.
# Keys are the name in lower case with everything but letters removed.
_ALIASES: dict[str, str] = {
    "trishonei": "Trish O'Neil",
    "trishsonei": "Trish O'Neil",
    "jbwalsh": "John B. Walsh",
    "johnwalsh": "John B. Walsh",
    "aleeworman": "A. Lee Worman",
    "leeworman": "A. Lee Worman",
    "foneill": "Francis O'Neill",
    "joneill": "James O'Neill",
    "ocarolan": "Turlough O'Carolan",
    "franklivingstone": "Frank Livingston",
    "zekebacus": "Zeke Backus",
    "jhand": "James Hand",
    "jashand": "James Hand",
    "echristie": "Edwin Christie",
    "gitracy": "G. L. Tracy",
    "rnagle": "R. B. Nagle",
    "neilgow": "Niel Gow",
    "ngow": "Niel Gow",
    "josquin": "Josquin des Prez",
    "josquindepre": "Josquin des Prez",
    "macnamara": "McNamara",
    "tuohy": "Touhy",
    "ptuohy": "P. Touhy",
    "croninl": "Cronin",
    "crenin": "Cronin",
    "kenned": "Kennedy",
    "harnett": "Hartnett",
    "oreily": "O'Reilly",
    "mahoney": "Mahony",
    "mrsfitzgerad": "Mrs. Fitzgerald",
}

# Collections whose C: field names collectors and source musicians rather than composers.
_COLLECTOR_C_FIELD = frozenset({"oneills1850"})
_COMPOSERS_IN_COLLECTOR_FIELD = frozenset({"Turlough O'Carolan"})

# Typing slips in the corpus that no general rule can undo.
_RAW_FIXES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bSafranekrjs(?=:)"), "Safranek rjs"),
    (re.compile(r"\btranscribed be\b", re.IGNORECASE), "Transcribed by"),
    (re.compile(r"(?<=\bO);(?=[A-Z])"), "'"),
    (re.compile(r"\bsO'Nei\b"), "O'Nei"),
)

_EMAIL = re.compile(r"\S*@\S*(?:\s+[a-z0-9\-]+\.[a-z]{2,6}\b)?")  # also "norbertp@bdu uva.nl"
_EMAIL_NAME = re.compile(r"(?<![\w.])([A-Za-z]{2,})[._]([A-Za-z]{2,})@")
_ANGLE_CONTACT = re.compile(r"<[^<>]*[@:.][^<>]*(?:>|$)")
_AT_OBFUSCATED = re.compile(r"\S*\(at:*\)\S*", re.IGNORECASE)
_COLON_EMAIL = re.compile(r"[\w.\-]+:+[\w\-][\w.\-:]*\.[A-Za-z]{2,}\b")
_URL = re.compile(r"(?:https?|ftp)://\S*|\bwww\.\S*", re.IGNORECASE)
_DOMAIN = re.compile(r"(?<![\w.'])[a-z0-9][\w\-]*(?:\.[\w\-]+)*\.[a-z]{2,6}(?![\w.])")
_QUOTED_PRINTABLE = re.compile(r"=0D|=0A|=20")
_PHONE = re.compile(r"\+?\d[\d ()\-]{7,}\d")
_VERSION = re.compile(r"\b\d+\.\d+\b")
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATES: tuple[re.Pattern[str], ...] = (
    re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b"),
    re.compile(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b"),
    re.compile(r"\b\d{1,2}(?:st|nd|rd|th)?[ \-]?" + _MONTHS + r"[ \-]?\d{2,4}\b", re.IGNORECASE),
    re.compile(r"\b" + _MONTHS + r"\s+\d{4}\b", re.IGNORECASE),
    re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\b"),
    re.compile(r"\b\d{4,14}\b"),
)
_LATEX = re.compile(r"\\[A-Za-z]+")
_PERFORMER = re.compile(r"\b(?:sung|played|performed|sang)\s+by\b", re.IGNORECASE)
_BY = re.compile(r"\b[Bb][Yy](?:\s+|(?=[A-Z]))")
_COLLECTED_FROM = re.compile(r"\bcollected\s+from\b\s*", re.IGNORECASE)
_LEADING_VERB = re.compile(
    r"^(?:transcri\w*|contributed|corrected|edited|proofread|collected|entered|typed)\b[\s:]*", re.IGNORECASE
)
_PARENTHETICAL = re.compile(r"\([^()]*\)")
_SEPARATOR = re.compile(r"\s+--?\s+|--|[,*;<(|\[{]")
_LETTERS = re.compile(r"[^a-z]")


def clean_person_name(raw: str) -> str | None:
    """The human name in one credit value, or None when it names no person.

    >>> clean_person_name("Contributed by Ray Davies,  ray:davies99.freeserve.co.uk")
    'Ray Davies'
    >>> clean_person_name("FRANK LIVINGSTON."), clean_person_name("Irish.")
    ('Frank Livingston', None)
    """
    text = raw
    for pattern, replacement in _RAW_FIXES:
        text = pattern.sub(replacement, text)
    text = text.split("%", 1)[0]  # an ABC comment
    text = _LATEX.sub(" ", text.replace("\u2019", "'"))
    email_names = [f"{a.capitalize()} {b.capitalize()}" for a, b in _EMAIL_NAME.findall(text)]
    # A contact ends the name: "Paul de Grae <sullgrae:iol.ie> irtrad-l" -> "Paul de Grae | irtrad-l".
    text = _strip_contacts(text, " | ", patterns=_CONTACTS + _NAME_NOISE)
    if _VERSION.search(text):
        return None  # a software signature such as "abc 1.6"
    for pattern in _DATES:
        text = pattern.sub(" ", text)
    text = re.sub(r"(?<=\w):+(?=\w)", "", text)  # "Colbat:h", "nat::ural": a corpus artifact
    text = re.sub(r"\b([Bb][Yy])\s*\(([^()]*)\)", r"\1 \2", text.replace('"', " ")).strip()  # "by (Balfe)"
    while text.startswith("(") and text.endswith(")") and text.count("(") == 1:
        text = text[1:-1].strip()
    text = _PARENTHETICAL.sub(" ", text)
    if _PERFORMER.search(text):
        return None
    explicit = False
    by = _BY.search(text)
    if by is not None:
        text, explicit = text[by.end() :], True
    else:
        collected = _COLLECTED_FROM.search(text)
        if collected is not None:
            text, explicit = text[collected.end() :], True
        else:
            verb = _LEADING_VERB.match(text.strip())
            if verb is not None:
                text, explicit = text.strip()[verb.end() :], True
    name = _name_before_separator(text)
    if name is None:
        return None
    if not name:
        return _canonical(email_names[0]) if email_names else None
    normalized = _normalize_name(name, handle_allowed=explicit)
    return None if normalized is None else _canonical(normalized)


_CONTACTS = (_ANGLE_CONTACT, _EMAIL, _AT_OBFUSCATED, _URL, _COLON_EMAIL)
_NAME_NOISE = (_DOMAIN, _QUOTED_PRINTABLE, _PHONE)  # too eager for free text ("an garran bui.de", "1848-1851")


def _strip_contacts(text: str, replacement: str, *, patterns: tuple[re.Pattern[str], ...]) -> str:
    for pattern in patterns:
        text = pattern.sub(replacement, text)
    return text


def _name_before_separator(text: str) -> str | None:
    """The text before the first separator; None when what follows it reads as a sentence."""
    match = _SEPARATOR.search(text)
    if match is None:
        return text.strip()
    head, rest = text[: match.start()].strip(), text[match.start() :]
    rest = _PARENTHETICAL.sub(" ", rest)
    words = [w for w in re.split(r"[\s,*;<>()|\[\]{}]+", rest) if re.search(r"[A-Za-z]", w)]
    if len(words) > 1:
        return None  # "Ornament (~) is a turn.", "MONEY MUSK. -- First couple join right hands"
    return head


def _normalize_name(name: str, *, handle_allowed: bool) -> str | None:
    name = name.strip(" \t.:;,'-_")
    name = re.sub(r"(?<=[A-Za-z]\.)(?=[A-Za-z])", " ", name)  # "J.B.Walsh" -> "J. B.Walsh" -> ...
    tokens = re.sub(r"\bMc\s+(?=[A-Z])", "Mc", name).split()  # "Mc Fadden" -> "McFadden"
    tokens = [re.sub(r"^o'(?=[A-Z])", "O'", t) for t in tokens]  # "F.o'Neill"
    if not tokens or len(tokens) > NAME_TOKENS_MAX:
        return None
    if len(tokens) == 1 and handle_allowed and re.fullmatch(r"[a-z][a-z0-9_\-]{2,30}", tokens[0]):
        return None if tokens[0] in _NOT_NAME_WORDS else tokens[0]
    if name.lower().replace(".", "") in _NOT_PERSONS:
        return None
    out: list[str] = []
    for index, token in enumerate(tokens):
        word = token.rstrip(".")
        if not word or ".." in token or "_" in token:
            return None
        lower = word.lower()
        if lower in _NOT_NAME_WORDS:
            return None
        if index > 0 and lower in _PARTICLES:
            out.append(lower)
            continue
        if not all(ch.isalpha() or ch in "'-" for ch in word) or not word[0].isalpha():
            return None
        if lower in _HONORIFICS:
            out.append(_HONORIFICS[lower])
            continue
        if (word.isupper() and len(word) > 1) or re.fullmatch(r"Mc[A-Z]{2,}", word):
            word = _title_case(word)
        if not word[0].isupper():
            return None
        abbreviated = len(word) == 1 or (token.endswith(".") and index < len(tokens) - 1)  # "J.", "Jas."
        out.append(word + "." if abbreviated else word)
    result = " ".join(out)
    return result if len(result) <= NAME_LENGTH_MAX else None


def _title_case(word: str) -> str:
    lower = word.lower()
    if lower.startswith("mc") and len(lower) > 2:
        return "Mc" + lower[2:].capitalize()
    return re.sub(r"(^|['\-])([a-z])", lambda m: m.group(1) + m.group(2).upper(), lower)


def _canonical(name: str) -> str:
    unaccented = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return _ALIASES.get(_LETTERS.sub("", unaccented.lower()), name)


# Files and tunes ---------------------------------------------------------------------------------

_X_LINE = re.compile(r"^X:\s*(\S*)")
_FIELD_LINE = re.compile(r"^([A-Za-z]):(.*)$")
_NOTE_CLAUSE = re.compile(r"\b(collected|transcribed|contributed)\s+(?:by|from)\s+[^\"]*", re.IGNORECASE)
_HEADER_CREDIT = re.compile(r"\b(?:copyright\b\s*(?:\(c\)|\u00a9)?|transcriptions?\s+by\b)(.*)$", re.IGNORECASE)
_NON_COMMERCIAL = re.compile(r"non[\s\-]?commercial", re.IGNORECASE)
_GPL = re.compile(r"GNU General Public License", re.IGNORECASE)


def _read_file(root: Path, path: Path) -> Iterator[AbcTune]:
    relative = path.relative_to(root)
    if len(relative.parts) == 1:  # ``root`` is one collection's directory
        relative = Path(root.name) / relative
    collection = relative.parts[0]
    size_bytes = path.stat().st_size
    if size_bytes > ABC_FILE_BYTES_MAX:
        raise LimitExceededError(
            f"ABC file {relative.as_posix()} is {size_bytes} bytes, over {ABC_FILE_BYTES_MAX};"
            " split it into smaller files"
        )
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError:
        content = raw.decode("latin-1")  # older ABC files are Latin-1; every byte decodes
    content = content.translate(_C1_AS_DOS)
    lines = content.splitlines()

    first_x = next((i for i, line in enumerate(lines) if _X_LINE.match(line)), len(lines))
    header = lines[:first_x]
    header_text = "\n".join(header)
    header_credits: list[AbcCredit] = []
    for line in header:
        match = _HEADER_CREDIT.search(line.lstrip("% "))
        if match is not None:
            name = clean_person_name(match.group(1))
            if name is not None:
                header_credits.append(AbcCredit(name, ROLE_SCHEME, "transcriber"))
    directory_license = _directory_license(path.parent)
    notes: list[str] = []
    if directory_license is not None:
        notes.append(directory_license)
    if _GPL.search(header_text):
        notes.append(f"GNU General Public License, version 2 or later (header of {relative.as_posix()})")
    file_non_commercial = directory_license is not None or _NON_COMMERCIAL.search(header_text) is not None

    index = first_x
    while index < len(lines):
        if not _X_LINE.match(lines[index]):
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() and not _X_LINE.match(lines[end]):
            end += 1
        yield _make_tune(
            lines[index:end],
            relative=relative,
            collection=collection,
            header_credits=header_credits,
            non_commercial=file_non_commercial,
            notes=notes,
        )
        index = end


def _directory_license(directory: Path) -> str | None:
    """A note when the directory's license.txt restricts use to non-commercial; else None."""
    license_path = directory / "license.txt"
    if not license_path.is_file():
        return None
    if _NON_COMMERCIAL.search(license_path.read_text(encoding="utf-8", errors="replace")) is None:
        return None
    return f"non-commercial use only ({directory.name}/license.txt)"


def _make_tune(
    lines: list[str],
    *,
    relative: Path,
    collection: str,
    header_credits: list[AbcCredit],
    non_commercial: bool,
    notes: list[str],
) -> AbcTune:
    x_match = _X_LINE.match(lines[0])
    number = x_match.group(1) if x_match is not None else ""
    title = ""
    found: list[AbcCredit] = []
    for line in lines:
        field = _FIELD_LINE.match(line)
        if field is None:
            continue
        key, value = field.group(1), field.group(2)
        if key == "T" and not title:
            title = value.strip()[:TITLE_LENGTH_MAX]
        elif key == "C":
            found.extend(_c_credit(value, collection))
        elif key == "Z":
            found.extend(_credits_from_value(value, role="transcriber"))
        elif key == "N":
            for clause in _NOTE_CLAUSE.finditer(value):
                role = "collector" if clause.group(1).lower() == "collected" else "transcriber"
                found.extend(_credits_from_value(clause.group(0), role=role))
    found.extend(header_credits)

    credits: list[AbcCredit] = []
    seen: set[tuple[str, str]] = set()
    for credit in found:
        if (credit.name, credit.role_code) not in seen:
            seen.add((credit.name, credit.role_code))
            credits.append(credit)
    if len(credits) > CREDITS_PER_WORK_MAX:
        raise LimitExceededError(
            f"tune {relative.as_posix()}#{number} has {len(credits)} credits, over {CREDITS_PER_WORK_MAX};"
            " check the file"
        )
    text = "\n".join(_strip_line_contacts(line) for line in lines) + "\n"
    tune_non_commercial = non_commercial or _NON_COMMERCIAL.search(text) is not None
    tune_notes = list(notes)
    if not non_commercial and tune_non_commercial:
        tune_notes.append("non-commercial use only (tune header)")
    return AbcTune(
        text=text,
        title=title,
        source=f"{relative.as_posix()}#{number}",
        collection=collection,
        credits=tuple(credits),
        traditional=not any(c.role_code == "composer" for c in credits),
        non_commercial=tune_non_commercial,
        license_note="; ".join(tune_notes) if tune_notes else None,
    )


def _c_credit(value: str, collection: str) -> list[AbcCredit]:
    name = clean_person_name(value)
    if name is None:
        return []
    if (
        re.search(r"\bcollected\b", value, re.IGNORECASE)
        or collection in _COLLECTOR_C_FIELD
        and name not in _COMPOSERS_IN_COLLECTOR_FIELD
    ):
        role = "collector"
    else:
        role = "composer"
    return [AbcCredit(name, ROLE_SCHEME, role)]


def _credits_from_value(value: str, *, role: str) -> list[AbcCredit]:
    """Credits in one Z: or N: value: the main name plus any "(amended by NAME)" clause."""
    credits: list[AbcCredit] = []
    candidates = [value] + [m.group(0) for m in _PARENTHETICAL.finditer(value) if _BY.search(m.group(0))]
    for candidate in candidates:
        name = clean_person_name(candidate)
        if name is not None:
            collected = re.search(r"\bcollected\b", candidate, re.IGNORECASE) is not None
            credits.append(AbcCredit(name, ROLE_SCHEME, "collector" if collected else role))
    return credits


def _strip_line_contacts(line: str) -> str:
    """Remove contact details from a field or comment line; music lines are returned unchanged."""
    if line.startswith("%"):
        head, value = "", line
    elif _FIELD_LINE.match(line):
        head, value = line[:2], line[2:]
    else:
        return line
    # Z: lines hold only credits, so bare domains ("jchambers.casc.com") go too; other fields keep theirs.
    patterns = _CONTACTS + (_DOMAIN, _QUOTED_PRINTABLE) if head == "Z:" else _CONTACTS
    cleaned = _strip_contacts(_RAW_FIXES[0][0].sub(_RAW_FIXES[0][1], value), " ", patterns=patterns)
    return head + re.sub(r"[ \t]{2,}", " ", cleaned).rstrip() if cleaned != value else line


__all__ = ["ROLE_CODES", "ROLE_SCHEME", "AbcCredit", "AbcTune", "clean_person_name", "corpus_dir", "iter_tunes"]
