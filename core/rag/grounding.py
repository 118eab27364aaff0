"""Grounding by construction: no number, date, version or quoted name reaches the user unless a cited passage holds it.

The model's reply is checked sentence by sentence as it streams (:class:`GroundedWriter`). A sentence is shown only
once it is complete and each of its *claims* (:func:`claims`: numbers with their unit, Chinese numerals, names
that carry digits or capitals such as ``GPT-3`` or ``RoBERTa``, quoted strings) is found in a passage of the
prompt; the sentence then cites the passages that hold them (its words pick among them). A sentence with a claim
that no passage holds is never shown: it is left out, and the answer ends with a marked, verbatim quotation of the
passage sentence that best answers the question. So every sentence of an answer is either the model's words,
checked, or a passage's words, quoted; :class:`Segment` says which.

Numbers are compared by value after normalising their form: ``6,144`` = ``6144``, ``1.0`` = ``1``, ``六`` = ``6``,
``十二`` = ``12``; a number written with fewer decimals matches the passage's rounded value (``215M`` for
``215.127 M``); a unit, when the answer gives one, must be the passage's (``50K`` is not ``50``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from core.rag.citations import CITE, Citation, passage_sentences, split_sentences, word_coverage
from core.rag.context import QUESTION_WORDS
from knowledge.lexical import tokenize

_NAME = re.compile(r"(?<![A-Za-z0-9_.])[A-Za-z][A-Za-z0-9]*(?:[-_./][A-Za-z0-9]+)*")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])(\d+(?:[,，]\d{3})*(?:\.\d+)?)\s?(%|[KkMmBbTtGg](?:iB|B)?(?![A-Za-z])|万|亿|千)?")
_ZH_NUMERAL = re.compile(r"[零〇一二两三四五六七八九十百千万亿]+")
_ZH_MEASURE = "个层块张种次倍年月天小时位维条步头项类部卡"
_QUOTED = re.compile(r"“([^”]{1,40})”|\"([^\"]{1,40})\"|「([^」]{1,40})」|《([^》]{1,40})》|`([^`]{1,40})`")
_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_UNITS = {"十": 10, "百": 100, "千": 1000}
_SCALE = {"万": Decimal(10_000), "亿": Decimal(100_000_000), "千": Decimal(1000)}
REFUSAL_PHRASES = ("没有找到答案", "没有找到相关", "do not contain the answer", "does not contain the answer")
"""Phrases of the templates' "not in the passages" reply (prompts/answer.yaml)."""
COMMON_CAPS = frozenset({"I", "OK", "AI", "A"})
"""Capitalised words that are not names worth checking."""


@dataclass(frozen=True)
class Claim:
    """Something an answer states that a passage must hold: a number (``value`` and ``unit``) or a name."""

    text: str
    kind: str  # "number" or "name"
    value: Decimal | None = None
    unit: str = ""


@dataclass(frozen=True)
class Segment:
    """A piece of the answer text: ``kind`` is ``"model"`` (the model's words, checked) or ``"quote"`` (a passage's
    words, verbatim); ``citations`` are the numbers of the passages it cites."""

    text: str
    kind: str = "model"
    citations: tuple[int, ...] = ()


def placed(segment: Segment, *, after_text: bool) -> Segment:
    """``segment`` as it follows what was shown before: a quotation after other text starts on a line of its own."""
    if after_text and segment.kind == "quote" and not segment.text[:1].isspace():
        return Segment("\n" + segment.text, segment.kind, segment.citations)
    return segment


def zh_number(text: str) -> int | None:
    """The value of a Chinese numeral (``十二`` 12, ``两千`` 2000, ``三万`` 30000), or None if it is not one."""
    total, section, digit = 0, 0, None
    for ch in text:
        if ch in _DIGITS:
            digit = _DIGITS[ch] if digit is None else digit * 10 + _DIGITS[ch]
        elif ch in _UNITS:
            section += (1 if digit is None else digit) * _UNITS[ch]
            digit = None
        elif ch in "万亿":
            total += (section + (digit or 0)) * (10_000 if ch == "万" else 100_000_000)
            section, digit = 0, None
        else:
            return None
    return total + section + (digit or 0)


def _unit(raw: str | None) -> str:
    if not raw:
        return ""
    u = raw.upper()
    return {"GIB": "G", "GB": "G", "KB": "K", "MB": "M", "TB": "T"}.get(u, u if u in {"K", "M", "B", "T", "G", "%"} else raw)


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(re.sub(r"[,，]", "", text))
    except InvalidOperation:
        return None


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _norm_name(text: str) -> str:
    return re.sub(r"[\s\-_./·]", "", text).casefold()


def claims(text: str, *, passage: bool = False) -> list[Claim]:
    """The numbers and names stated in ``text`` (citation markers and list numbers aside).

    With ``passage`` every Chinese numeral counts (a passage's ``一种`` supports an answer's ``1 种``); in an answer
    only those that say a quantity do (``十二层``, ``两种``; not the ``一`` of ``一种方法``)."""
    text = CITE.sub(" ", text)
    text = re.sub(r"(?m)^\s*\d{1,2}[.)、]\s", " ", text)  # list item numbers
    out: list[Claim] = []
    spans: list[tuple[int, int]] = []
    for m in _QUOTED.finditer(text):
        inner = next(g for g in m.groups() if g is not None)
        out.append(Claim(inner, "name"))
    for m in _NAME.finditer(text):
        word = m.group(0)
        mixed = any(c.isdigit() for c in word)
        caps = sum(c.isupper() for c in word) >= 2 or (word[1:] != word[1:].lower() and word not in COMMON_CAPS)
        if (mixed or caps) and word not in COMMON_CAPS:
            out.append(Claim(word, "name"))
            spans.append(m.span())
    for m in _NUMBER.finditer(text):
        if any(a <= m.start() < b for a, b in spans):
            continue
        value = _decimal(m.group(1))
        unit = _unit(m.group(2))
        if value is not None and unit in _SCALE:  # 350万 = 3500000: compared by value with 三百五十万
            value, unit = value * _SCALE[unit], ""
        if value is not None:
            out.append(Claim(m.group(0).strip(), "number", value, unit))
    for m in _ZH_NUMERAL.finditer(text):
        word = m.group(0)
        following = text[m.end() : m.end() + 1]
        scaled = len(word) >= 2 and any(c in "十百千万亿" for c in word)
        counted = len(word) == 1 and word in "二两三四五六七八九十" and following != "" and following in _ZH_MEASURE
        number = zh_number(word)
        if number and (passage or scaled or counted):
            out.append(Claim(word, "number", Decimal(number)))
    return out


class PassageFacts:
    """What a passage holds, prepared once: its numbers (value, unit) and its text normalised for names."""

    def __init__(self, text: str) -> None:
        self.numbers = [(c.value, c.unit) for c in claims(text, passage=True) if c.value is not None]
        self.plain = _norm_name(text)

    def holds(self, claim: Claim) -> bool:
        """Whether this passage states ``claim``."""
        if claim.kind == "name":
            return _norm_name(claim.text) in self.plain
        assert claim.value is not None
        for value, unit in self.numbers:
            if claim.unit and unit != claim.unit:
                continue
            if value == claim.value:
                return True
            exponent = claim.value.as_tuple().exponent
            if isinstance(exponent, int) and -exponent < _places(value):  # written with fewer decimals: rounded
                try:
                    if value.quantize(Decimal(1).scaleb(exponent)) == claim.value:
                        return True
                except InvalidOperation:
                    pass
        return False


def unsupported(text: str, passages: Sequence[str]) -> list[str]:
    """The claims of ``text`` that none of ``passages`` holds (empty: the text is grounded)."""
    facts = [PassageFacts(p) for p in passages]
    return [c.text for c in claims(text) if not any(f.holds(c) for f in facts)]


class GroundedWriter:
    """Checks a streamed reply sentence by sentence and passes on only what is grounded.

    ``feed`` the reply's deltas, then ``close``. Complete sentences whose claims the ``sources`` hold are emitted
    (to ``on_segment``) with the numbers of the passages that hold them; the others are kept in ``dropped``.
    ``close`` adds the quotation (made by ``quote(dropped)``) when a sentence was dropped."""

    def __init__(
        self,
        sources: Sequence[Citation],
        on_segment: Callable[[Segment], None] | None = None,
        *,
        min_coverage: float = 0.3,
        instruction: str = "",
    ) -> None:
        self.sources = list(sources)
        self.instruction = set(tokenize(instruction))
        """Words of the prompt's own instructions: a sentence made only of them ("Copy numbers and names exactly as
        the passages write them.") is the model repeating its prompt, not an answer, and is left out."""
        self.facts = [PassageFacts(c.text) for c in self.sources]
        self.terms = [set(tokenize(c.text + " " + c.section)) for c in self.sources]
        self.on_segment = on_segment
        self.min_coverage = min_coverage
        self.segments: list[Segment] = []
        self.dropped: list[str] = []
        self.raw = ""
        self.refusal = ""
        """The model's "the passages do not contain the answer" sentence: held back until :meth:`close` decides."""
        self._buffer = ""

    def feed(self, delta: str) -> None:
        """Take the next piece of the reply; emit the sentences it completes."""
        self.raw += delta
        self._buffer += delta
        pieces = split_sentences(self._buffer)
        if len(pieces) > 1:
            for sentence in pieces[:-1]:
                self._sentence(sentence)
            self._buffer = pieces[-1]

    def close(
        self, quote: Callable[[list[str]], Segment | None] | None = None, *, need_figure: bool = False, question: str = "",
        quote_refusal: bool = False,
    ) -> None:
        """The reply has ended: check its last sentence, then add the quotation if anything was dropped, if
        ``need_figure`` (the question asks for a number) and the model's words state none, or if the model's words
        say nothing that ``question`` does not already say (it repeated the question as its answer).

        A refusal sentence of the model was held back: with ``quote_refusal`` (the passages were judged to answer
        the question) the quotation replaces it, else it is shown."""
        if self._buffer:
            self._sentence(self._buffer)
            self._buffer = ""
        if self.refusal:
            segment = quote(self.dropped) if quote_refusal and quote is not None else None
            self._emit(segment if segment is not None else Segment(self.refusal, "model"))
            return
        unanswered = bool(self.segments) and (
            (need_figure and not states_figure(self.segments)) or (bool(question) and says_nothing_new(question, self.segments))
        )
        if (self.dropped or unanswered) and quote is not None:
            segment = quote(self.dropped)
            if segment is not None:
                self._emit(segment)

    @property
    def text(self) -> str:
        """The answer as the user sees it."""
        return "".join(s.text for s in self.segments).strip()

    def _emit(self, segment: Segment) -> None:
        segment = placed(segment, after_text=bool(self.segments))
        self.segments.append(segment)
        if self.on_segment is not None:
            self.on_segment(segment)

    def _sentence(self, sentence: str) -> None:
        if not any(ch.isalnum() for ch in CITE.sub("", sentence)):
            return  # markers or punctuation only: nothing to say
        words = set(tokenize(CITE.sub(" ", sentence)))
        if self.instruction and len(words) >= 3 and words <= self.instruction:
            return
        if any(p in sentence for p in REFUSAL_PHRASES):
            self.refusal = self.refusal or CITE.sub("", sentence).strip()
            return
        stated = claims(sentence)
        own = [int(n) for m in CITE.finditer(sentence) for n in re.split(r"[,，、]", m.group(1)) if n.strip().isdigit()]
        own_idx = [i for i, c in enumerate(self.sources) if c.number in own]
        if own_idx and all(any(self.facts[i].holds(c) for i in own_idx) for c in stated):
            self._emit(Segment(sentence, "model", tuple(self.sources[i].number for i in own_idx)))
            return
        bare = CITE.sub("", sentence)
        bare = re.sub(r"\s+([。！？.!?])", r"\1", bare)
        coverage = [word_coverage(bare, t) for t in self.terms]
        chosen: list[int] = []
        for claim in stated:
            holders = [i for i, f in enumerate(self.facts) if f.holds(claim)]
            if not holders:
                self.dropped.append(bare.strip())
                return
            if not any(i in chosen for i in holders):
                chosen.append(max(holders, key=lambda i: coverage[i]))
        if not chosen and coverage:
            best = max(range(len(coverage)), key=lambda i: coverage[i])
            if coverage[best] >= self.min_coverage:
                chosen = [best]
        numbers = tuple(sorted(self.sources[i].number for i in chosen))
        if numbers:
            body = bare.rstrip()
            end = body[-1] if body and body[-1] in "。！？.!?" else ""
            core_text = body[:-1] if end else body
            bare = f"{core_text} [{', '.join(map(str, numbers))}]{end}" + bare[len(body):]
        self._emit(Segment(bare, "model", numbers))


_FIGURE_QUESTION = re.compile(
    r"多少|几[个层块张种次倍年月天位维条步头项]|哪一?年|多大|多长|多久|多高|多快|\bhow (many|much|long|large|big|fast)\b|\b(what|which) year\b|"
    r"\bwhen\b|\b(size|number|count|rate|ratio|percentage|share)\b",
    re.IGNORECASE,
)


def asks_for_figure(question: str) -> bool:
    """Whether ``question`` asks for a number (多少, 几个, 哪一年, how many, what year, ...)."""
    return bool(_FIGURE_QUESTION.search(question))


def states_figure(segments: Sequence[Segment]) -> bool:
    """Whether the model's own segments state any number."""
    return any(c.kind == "number" for s in segments if s.kind == "model" for c in claims(s.text))


def _stem(word: str) -> str:
    """A crude English stem, enough to tell "uses" and "use" apart from new words ("played" -> "play")."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.isascii() and len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


FRAMING_WORDS = frozenset(
    ["passage", "passages", "text", "document", "context", "source", "state", "states", "stated", "say", "says", "said",
     "mention", "mentions", "mentioned", "according", "provided", "given"]
)
"""Words with which the model frames a reply without saying anything ("The passage states that answers are slow on
a CPU."): they are not new words either."""
_FRAMING_STEMS = frozenset(_stem(w) for w in FRAMING_WORDS)


def says_nothing_new(question: str, segments: Sequence[Segment]) -> bool:
    """Whether the model's segments hold no word that the question does not already hold (question words such as
    "what" and framing words such as "the passage states" aside): "Chad DiMera has played Chad DiMera on Days of Our
    Lives." answers nothing."""
    said = {_stem(w) for w in tokenize(" ".join(CITE.sub(" ", s.text) for s in segments if s.kind == "model"))}
    known = {_stem(w) for w in tokenize(question)} | QUESTION_WORDS | _FRAMING_STEMS
    return bool(said) and not (said - known)


def _headed_sentences(text: str) -> list[tuple[str, str]]:
    """The sentences of a passage (:func:`passage_sentences`), each with the markdown heading it opens a section
    under ("" for the others): a FAQ answer's first sentence ("Markdown (.md), text, PDF ...") shares no word with
    the question, its heading ("Which file types can I add?") does."""
    out: list[tuple[str, str]] = []
    heading = ""
    for block in re.split(r"\n(?=#)|(?<=\n)(?=#)", text):
        lines = block.splitlines()
        if lines and lines[0].lstrip().startswith("#"):
            heading, body = lines[0].lstrip("# ").strip(), "\n".join(lines[1:])
        else:
            heading, body = "", block
        for i, sentence in enumerate(passage_sentences(body)):
            out.append((sentence, heading if i == 0 else ""))
    return out


def best_passage_sentence(query: str, sources: Sequence[Citation], *, hint: str = "") -> tuple[Citation, str] | None:
    """The passage sentence that best answers ``query``: most query words (a section's first sentence also counts
    those of its heading), then most ``hint`` words (the dropped sentence's), then the earlier passage. None when
    there are no sources."""
    q = set(tokenize(query)) - QUESTION_WORDS
    h = set(tokenize(hint)) - q
    best: tuple[float, Citation, str] | None = None
    for c in sources:
        for sentence, heading in _headed_sentences(c.text):
            terms = set(tokenize(sentence))
            score = len(q & terms) + 0.5 * len(h & terms) + (0.25 if any(ch.isdigit() for ch in sentence) else 0.0)
            score += 0.9 * len(q & set(tokenize(heading)) - terms)
            if best is None or score > best[0]:
                best = (score, c, sentence)
    return (best[1], best[2]) if best is not None else None
