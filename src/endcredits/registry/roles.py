"""Role vocabularies: what "credited as" may say. Pure data and lookups; no I/O.

A credit's role is a pair (scheme, code), written ``scheme:code``, so that everyone in the credits can
be named and paid by what they did. Four schemes are known: ``credit`` (CRediT, ANSI/NISO
Z39.104-2022), ``ebu`` (a subset of the EBU RoleCode scheme: the film and broadcast crafts; a term's
name is accepted for its id, and ``canonical_role`` turns it into the id), ``cawg`` (the CAWG identity
assertion's named-actor roles) and ``endcredits`` (the roles the others miss, and the payee roles
endcredits writes itself).

A code a known scheme does not list is refused, naming the scheme's codes; a scheme outside the four
only passes when the caller accepts it explicitly (``allow_unknown_scheme=True``). Nothing is guessed.

See docs/concepts/registry.md, "Roles: everyone in the credits" (the rules and the sources).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from endcredits.errors import ValidationError, invariant

_PART = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_SCHEME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")

CODES_IN_MESSAGE_MAX = 40
"""Most codes one error message lists; the rest are counted and ``endcredits roles list`` shows them."""


@dataclass(frozen=True)
class Role:
    scheme: str
    code: str
    label: str

    @property
    def key(self) -> str:
        return f"{self.scheme}:{self.code}"


@dataclass(frozen=True)
class Scheme:
    name: str
    title: str
    source: str
    roles: tuple[Role, ...]
    aliases: Mapping[str, str]  # another accepted code -> the listed code it stands for
    code_set: frozenset[str]

    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.roles)


def _scheme(
    name: str, title: str, source: str, rows: tuple[tuple[str, str], ...], *, name_aliases: bool = False
) -> Scheme:
    roles = tuple(Role(name, code, label) for code, label in rows)
    codes = [r.code for r in roles]
    invariant(
        len(set(codes)) == len(codes) and all(_PART.fullmatch(c) for c in codes),
        f"role scheme {name}: codes must be unique and scheme:code-shaped",
    )
    aliases: dict[str, str] = {}
    if name_aliases:
        for r in roles:
            for part in r.label.split(" / "):
                alias = re.sub(r"[^a-z0-9]+", "_", part.lower()).strip("_")
                if alias and alias not in aliases and alias not in codes and _PART.fullmatch(alias):
                    aliases[alias] = r.code
    return Scheme(name, title, source, roles, aliases, frozenset(codes))


CREDIT = _scheme(
    "credit",
    "CRediT: Contributor Roles Taxonomy (ANSI/NISO Z39.104-2022)",
    "https://credit.niso.org/",
    (
        ("conceptualization", "Conceptualization"),
        ("data-curation", "Data curation"),
        ("formal-analysis", "Formal analysis"),
        ("funding-acquisition", "Funding acquisition"),
        ("investigation", "Investigation"),
        ("methodology", "Methodology"),
        ("project-administration", "Project administration"),
        ("resources", "Resources"),
        ("software", "Software"),
        ("supervision", "Supervision"),
        ("validation", "Validation"),
        ("visualization", "Visualization"),
        ("writing-original-draft", "Writing – original draft"),
        ("writing-review-editing", "Writing – review & editing"),
    ),
)

# Term ids and names from the EBU RoleCode classification scheme (ebu_RoleCodeCS), a subset; see the
# module docstring. Spellings are the scheme's own.
EBU = _scheme(
    "ebu",
    "EBU RoleCode classification scheme (ebu_RoleCodeCS)",
    "http://www.ebu.ch/metadata/cs/ebu_RoleCodeCS.xml",
    (
        ("1", "Accounting Department"),
        ("2", "Aerial Support and Services"),
        ("3", "Animal Department"),
        ("4", "Animation Department"),
        ("5", "Art Department"),
        ("6", "Camera Department"),
        ("7", "Casting Department"),
        ("8", "Catering Department"),
        ("9", "Consultants / Experts"),
        ("10", "Distribution"),
        ("11", "Editing / Montage"),
        ("12", "Grip Department"),
        ("13", "Hair and Makeup / Wig Department"),
        ("14", "IT Department and Services"),
        ("15", "Lighting / Electrical Department"),
        ("16", "Marine"),
        ("17", "Music Department"),
        ("18", "News Department"),
        ("19", "Post-production"),
        ("20", "Production"),
        ("21", "Promotion"),
        ("22", "Script Department"),
        ("23", "Sound Department"),
        ("24", "Stunts Department"),
        ("25", "Talent"),
        ("26", "Transportation Department"),
        ("27", "Visual Effect Department"),
        ("28", "Wardrobe Department"),
        ("29", "Other Crew Roles"),
        ("30", "Other Roles"),
        ("31", "Studio"),
        ("32", "Outside Broadcast Crew"),
        ("33", "Trainers / Coaches"),
        ("34", "Translation / Dubbing / Captioning / Signing"),
        ("35", "Medical Crew"),
        ("36", "Systems"),
        ("37", "Project"),
        ("38", "Martial Arts / Fighting"),
        # Talent
        ("25.1", "Key Character"),
        ("25.2", "Key Talents"),
        ("25.3", "Scenarist"),
        ("25.4", "Essayist"),
        ("25.5", "Sculptor"),
        ("25.6", "Variety Artist"),
        ("25.7", "Voice Over Artist"),
        ("25.8", "Artist / Performer"),
        ("25.9", "Actor / Actress"),
        ("25.10", "Anchor / Moderator / Presenter"),
        ("25.11", "Interviewer"),
        ("25.12", "Interviewed Guest"),
        ("25.13", "Guest"),
        ("25.14", "Host"),
        ("25.15", "Narrator / Storyteller / Reader"),
        ("25.16", "Speaker / Lecturer / Causeur"),
        ("25.17", "Choreographer"),
        ("25.18", "Dancer"),
        ("25.19", "Participant"),
        ("25.20", "Panelist"),
        ("25.21", "Commentator"),
        ("25.22", "Dubber"),
        ("25.23", "Dance Director"),
        ("25.24", "Question Setter"),
        # Stunts
        ("24.2", "Stunt Coordinator"),
        ("24.3", "Stunts / Stunt Performer"),
        ("24.4", "Utility Stunts"),
        ("24.5", "Stunt Double"),
        ("24.6", "Stunt Driver"),
        ("24.7", "Stunt Pilot"),
        # Production, script, direction
        ("20.1", "Producer"),
        ("20.2", "Executive Producer"),
        ("20.5", "Line Producer"),
        ("20.6", "Associate Producer"),
        ("20.7", "Co-Producer"),
        ("20.10", "Production Manager"),
        ("20.16", "Director"),
        ("20.17", "First Assistant Director"),
        ("20.18", "Second Assistant Director"),
        ("20.39", "Runner"),
        ("20.40", "Location Manager"),
        ("20.42", "Location Scout"),
        ("22.2", "Author / Screenplay / Scriptwriter / Adaptor / Dramatiser"),
        ("22.3", "Script Supervisor / Continuity Person"),
        ("22.5", "Playwright"),
        ("10.1.1", "Director"),
        ("10.1.2", "Producer"),
        ("10.1.4", "Writer / Conceptualist"),
        ("7.1", "Casting Director"),
        ("7.4", "Extras Casting"),
        # Camera, lighting, grip
        ("6.1", "Director of Photography"),
        ("6.2.1", "Cinematographer"),
        ("6.2.3", "Camera Operator / Camera Person / Cameraman"),
        ("6.2.4", "First Assistant Camera Operator / Focus Puller"),
        ("6.2.6", "Steadycam Operator"),
        ("6.2.15", "Digital Imaging Technician / DIT"),
        ("6.2.16", "Digital Scaning and Recording"),
        ("6.3.4", "Camera Tracking Artist / Matchmove Artist"),
        ("6.4.1", "Still Photographer"),
        ("15.1", "Lighting Director"),
        ("15.8", "Chief Lighting Technician / Gaffer"),
        ("15.9", "Assistant Chief Lighting Technician / Best Boy"),
        ("15.11", "Lighting Operator / Lighting Technician / Lighting Assistant"),
        ("15.18", "Electrician"),
        ("12.1", "Key Grip"),
        ("12.3", "Grip"),
        ("12.5", "Dolly Grip"),
        # Sound and music
        ("23.1", "Sound Mixer / Mixer"),
        ("23.2", "Sound Supervisor"),
        ("23.3", "Audio Engineer / Sound Engineer / Audio Operator"),
        ("23.5", "First Boom Operator"),
        ("23.8", "Foley Artist"),
        ("23.11", "Sound Recordist / Sound Recorder"),
        ("17.1.1", "Music Director"),
        ("17.1.7", "Composer"),
        ("17.1.9", "Librettist"),
        ("17.1.10", "Lyricist"),
        ("17.1.11", "Orchestrator"),
        ("17.1.12", "Conductor"),
        ("17.1.13", "Music Arranger"),
        ("17.2.1", "Musician / Instrumentalist / Player"),
        ("17.2.6", "Singer / Vocalist"),
        # Editing and post-production
        ("11.1", "Editor / Visual Editor / Film Editor / Video Editor"),
        ("11.14", "Colour Timer"),
        ("11.22", "Audio Editor / Sound Editor / Audio Mixer / Sound Mixer"),
        ("11.24", "Sound Designer / Supervising Sound Editor"),
        ("11.25", "Foley Editor / Sound Effects Editor"),
        ("11.26", "Music Editor"),
        # Visual effects and animation
        ("27.1", "Visual Effects Producer"),
        ("27.5", "Visual Effects Supervisor"),
        ("27.8", "Visual Effects Editor"),
        ("27.13", "Visual Effects Artist"),
        ("27.15", "Digital Visual Effects Artist"),
        ("4.1", "Animation Director"),
        ("4.6", "Storyboard Artist"),
        ("4.19", "Animator"),
        ("4.21", "3D Artist"),
        ("4.26", "Digital Effects Artist"),
        ("4.38", "3D Modeler"),
        ("4.55", "Compositor / Compositing Artist"),
        ("4.56", "Puppeteer"),
        ("5.10.19", "Matte Artist / Bluescreen Editor"),
        # Art, wardrobe, hair and make-up
        ("5.1", "Production Designer"),
        ("5.3.1", "Art Director"),
        ("5.4.1", "Set Decorator / Set Designer"),
        ("5.5.1", "Prop Manager / Prop Master"),
        ("28.1", "Costume Designer"),
        ("28.2", "Tailor"),
        ("28.17", "Costumer"),
        ("28.26", "Stylist"),
        ("13.1.1", "Hair Stylist"),
        ("13.2.2", "Makeup Artist"),
        ("13.2.6", "Effects / Prosthetic"),
        # Other crew and roles
        ("29.13", "Dialogue Coach"),
        ("29.16", "Stand-in"),
        ("29.18", "Body Double"),
        ("29.20", "Fight Director"),
        ("29.27", "Translation"),
        ("29.28", "Subtitles"),
        ("29.30", "Copyright Holder"),
        ("29.32", "Contributor"),
        ("30.2", "Archive Source"),
        ("34.1", "Dubbing Editor"),
        ("34.5", "Caption Author"),
    ),
    name_aliases=True,
)

CAWG = _scheme(
    "cawg",
    "CAWG identity assertion: named actor roles",
    "https://cawg.io/identity/",
    (
        ("creator", "Primary creator or author of the asset"),
        ("contributor", "Secondary creator or author of the asset"),
        ("editor", "Editor of the asset"),
        ("producer", "Producer of the asset"),
        ("publisher", "Publisher of the asset"),
        ("sponsor", "Supported or sponsored the creation of the asset"),
        ("translator", "Adapted the asset from a similar work in another language"),
    ),
)

ENDCREDITS = _scheme(
    "endcredits",
    "endcredits: the roles the other schemes miss",
    "docs/concepts/registry.md",
    (
        ("actor", "Actor (a performer with a speaking or named part)"),
        ("attributed", "Attributed (an attribution line's payee; written by endcredits, not a credit)"),
        ("author", "Author (schema.org CreativeWork author)"),
        ("background_performer", "Background performer (an extra)"),
        ("collector", "Collector (wrote a tune or text down from a player or speaker)"),
        ("composer", "Composer"),
        ("contributor", "Contributor (schema.org CreativeWork contributor without a stated role)"),
        ("creator", "Creator (of a data set or record)"),
        ("data_labeler", "Data labeler (annotated or labelled training data)"),
        ("named_actor", "Named actor (signed a CAWG identity assertion without a role)"),
        ("performer", "Performer"),
        ("rights_holder", "Rights holder (the payee of a work's rights-holder share; written by endcredits)"),
        ("scan_operator", "Scan operator (captured a body, face or object scan)"),
        ("scan_subject", "Scan subject (the person whose body, face or voice was scanned)"),
        ("stunt_performer", "Stunt performer"),
        ("tester", "Tester (tested a game, a product or a model)"),
        ("transcriber", "Transcriber (made the encoding or transcript the model read)"),
        ("unclaimed_work", "Unclaimed work (a work nobody is credited on; written by endcredits)"),
        ("vfx", "VFX (visual effects; the short form of vfx_artist)"),
        ("vfx_artist", "VFX artist"),
    ),
)

SCHEMES: Mapping[str, Scheme] = {s.name: s for s in (CREDIT, EBU, CAWG, ENDCREDITS)}
"""The known schemes by name."""


def split_role(role: str) -> tuple[str, str]:
    """``"scheme:code"`` -> (scheme, code), checking only the shape (lower case, no spaces)."""
    if not isinstance(role, str):
        raise ValidationError(f"role must be text scheme:code, got {type(role).__name__}")
    scheme, sep, code = role.partition(":")
    if not sep or not _SCHEME.fullmatch(scheme) or not _PART.fullmatch(code):
        raise ValidationError(f"role {role!r:.80} must be scheme:code in lower case, such as endcredits:composer")
    return scheme, code


def _listing(scheme: Scheme) -> str:
    codes = scheme.codes()
    shown = ", ".join(codes[:CODES_IN_MESSAGE_MAX])
    more = len(codes) - CODES_IN_MESSAGE_MAX
    tail = f", … ({more} more: `endcredits roles list --scheme {scheme.name}`)" if more > 0 else ""
    return f"{shown}{tail}"


def is_known(scheme: str, code: str) -> bool:
    """True when (scheme, code) is a listed role, an accepted alias, or a CAWG entity-specific role."""
    s = SCHEMES.get(scheme)
    if s is None:
        return False
    if code in s.code_set or code in s.aliases:
        return True
    return scheme == "cawg" and "." in code and _PART.fullmatch(code) is not None


def check_role(scheme: str, code: str, *, allow_unknown_scheme: bool = False) -> tuple[str, str]:
    """(scheme, code) when it is a role endcredits knows; ``ValidationError`` naming the known codes if not.

    A scheme outside ``SCHEMES`` passes only with ``allow_unknown_scheme=True`` (any well-formed code).
    """
    split_role(f"{scheme}:{code}")
    s = SCHEMES.get(scheme)
    if s is None:
        if allow_unknown_scheme:
            return scheme, code
        raise ValidationError(
            f"unknown role scheme {scheme!r} in {scheme}:{code}: use one of {', '.join(SCHEMES)} "
            "(or accept other schemes explicitly with --allow-unknown-scheme)"
        )
    if not is_known(scheme, code):
        raise ValidationError(f"unknown role {scheme}:{code}: scheme {scheme} knows {_listing(s)}")
    return scheme, code


def canonical_role(scheme: str, code: str) -> tuple[str, str]:
    """The listed form of a known role: an EBU term name becomes its term id (``ebu:gaffer`` -> ``ebu:15.8``).

    Any other role, known or not, is returned unchanged.
    """
    s = SCHEMES.get(scheme)
    if s is not None and code in s.aliases:
        return scheme, s.aliases[code]
    return scheme, code


def roles(scheme: str | None = None) -> list[Role]:
    """Every listed role, scheme by scheme in ``SCHEMES`` order, or those of one scheme."""
    if scheme is not None and scheme not in SCHEMES:
        raise ValidationError(f"unknown role scheme {scheme!r}: one of {', '.join(SCHEMES)}")
    return [r for s in SCHEMES.values() if scheme in (None, s.name) for r in s.roles]


__all__ = [
    "CAWG",
    "CREDIT",
    "EBU",
    "ENDCREDITS",
    "SCHEMES",
    "Role",
    "Scheme",
    "canonical_role",
    "check_role",
    "is_known",
    "roles",
    "split_role",
]
