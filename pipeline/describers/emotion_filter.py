"""Remove every sentence or clause of a motion description that names or implies an emotion.

A description is a second view of a clip that the trainer aligns with the video; if it says
"she looks happy" the model can learn the label from the text. `filter_emotion` drops the
offending clause when the rest of the sentence still reads as a sentence, and the whole
sentence otherwise:

    >>> filter_emotion("The man, clearly terrified, opens his mouth wide. He looks happy.").text
    'The man opens his mouth wide.'

What counts as an emotion word is data, not code: `prompts/emotion_lexicon.txt` (emotion
words and phrases) and `prompts/facial_action_words.txt` (facial actions whose names suggest
a class, such as "smile" or "frown"; removed too unless `action_words=False`; the file gives
the reasons). Each headword there also matches the forms `inflections` derives from it.
Matching is case-insensitive and whole-word, where a word is a run of letters: hyphens,
apostrophes, digits and underscores separate words, so "Fear-stricken" and "anger's" hold
"fear" and "anger". Text is NFKC-normalised and stripped of invisible format characters
(zero-width spaces, soft hyphens) first, so they cannot hide a word.

The guarantee, checked before returning: the filtered text contains no lexicon word or
phrase in any derived form. The clause heuristics may drop more than strictly needed; they
never keep a match.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pipeline.resources import PROMPTS_DIR

LEXICON_FILE = PROMPTS_DIR / "emotion_lexicon.txt"
ACTION_WORDS_FILE = PROMPTS_DIR / "facial_action_words.txt"
# the light filter of the `reference` describer setting: emotion names and the words FineCLIPER's
# refinement figure removes, nothing more (`light=True`)
LIGHT_LEXICON_FILE = PROMPTS_DIR / "emotion_lexicon_light.txt"

_WORD = re.compile(r"[^\W\d_]+")  # letters only
_VOWELS = frozenset("aeiou")
_SENTENCE_BREAK = re.compile(r"[.!?…\n]")  # a phrase never spans two sentences

# Suffixes of `inflections`: a first derivation, then optionally one ending on top of it
# (fear → fearful → fearfully, sad → sadden → saddened, happy → happiness).
_FIRST_SUFFIXES = ("s", "ed", "ing", "er", "est", "ly", "ness", "ful", "less", "ment", "y", "en", "ish")
_SECOND_SUFFIXES = ("s", "ed", "ing", "er", "est", "ly", "ness")
_ADJECTIVE_SUFFIXES = ("er", "est", "ly", "ness")


# --- inflections ------------------------------------------------------------------------------

def _attach(stem: str, suffix: str) -> set[str]:
    """Spellings of `stem` + `suffix` under the regular English rules. Over-generating is safe
    (a non-word matches nothing), so where a rule may or may not apply both spellings are kept."""
    forms = {stem + suffix}
    ends_consonant_y = len(stem) > 1 and stem[-1] == "y" and stem[-2] not in _VOWELS
    if suffix == "s":
        if stem.endswith(("s", "x", "z", "ch", "sh")):
            forms = {stem + "es"}
        elif ends_consonant_y:
            forms = {stem[:-1] + "ies"}
        return forms
    if suffix[0] in _VOWELS or suffix == "y":
        if stem.endswith("e"):
            forms.add(stem[:-1] + suffix)                       # scare → scared, scary
        if ends_consonant_y and not suffix.startswith("i"):
            forms.add(stem[:-1] + "i" + suffix)                 # happy → happier, worried
        if (len(stem) >= 3 and stem[-1] not in _VOWELS and stem[-1] not in "wxy"
                and stem[-2] in _VOWELS and stem[-3] not in _VOWELS):
            forms.add(stem + stem[-1] + suffix)                 # sad → sadder, sob → sobbing
        if stem.endswith("c"):
            forms.add(stem + "k" + suffix)                      # panic → panicked
        return forms
    if ends_consonant_y:
        forms.add(stem[:-1] + "i" + suffix)                     # happy → happily, happiness
    if suffix == "ly":
        if stem.endswith("le"):
            forms.add(stem[:-1] + "y")                          # horrible → horribly
        if stem.endswith("ic"):
            forms.add(stem + "ally")                            # ecstatic → ecstatically
    return forms


def inflections(word: str, kind: str = "all") -> set[str]:
    """The forms a lexicon headword matches: itself and, unless `kind` is "exact", its derived
    forms ("adj": comparative, superlative, adverb and -ness only)."""
    word = word.lower()
    if kind == "exact":
        return {word}
    if kind == "adj":
        return {word}.union(*(_attach(word, s) for s in _ADJECTIVE_SUFFIXES))
    first = {word}.union(*(_attach(word, s) for s in _FIRST_SUFFIXES))
    return first.union(*(_attach(form, s) for form in first for s in _SECOND_SUFFIXES))


# --- the lexicon ------------------------------------------------------------------------------

@dataclass(frozen=True)
class LexiconEntry:
    """One line of a lexicon file: a headword (with its derivation kind) or a phrase."""

    words: tuple[str, ...]
    kind: str          # "all", "adj", "exact"; phrases are always "exact"
    source: str        # file name, for messages


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    surface: str


@dataclass(frozen=True)
class Lexicon:
    """Every form to remove: single words in a set, phrases as word tuples."""

    entries: tuple[LexiconEntry, ...]
    words: frozenset[str]
    phrases: frozenset[tuple[str, ...]]
    phrase_starts: frozenset[str]
    longest_phrase: int
    sha256: str

    def find(self, text: str) -> list[Match]:
        """Every word or phrase of the lexicon in `text`, as character spans, left to right."""
        tokens = [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]
        found = []
        for i, (token, start, end) in enumerate(tokens):
            if token in self.words:
                found.append(Match(start, end, text[start:end]))
                continue
            if token not in self.phrase_starts:
                continue
            for length in range(min(self.longest_phrase, len(tokens) - i), 1, -1):
                window = tokens[i:i + length]
                if tuple(t for t, _, _ in window) in self.phrases and not _SENTENCE_BREAK.search(
                        text, start, window[-1][1]):
                    stop = window[-1][2]
                    found.append(Match(start, stop, text[start:stop]))
                    break
        return found


def parse_lexicon_line(line: str, source: str) -> LexiconEntry | None:
    body = line.split("#", 1)[0].strip()
    if not body:
        return None
    kind = "all"
    if body.endswith("="):
        kind, body = "exact", body[:-1]
    elif body.endswith("[adj]"):
        kind, body = "adj", body[:-len("[adj]")]
    words = tuple(w.lower() for w in _WORD.findall(normalise(body)))
    if not words:
        raise ValueError(f"{source}: entry {line.strip()!r} holds no word")
    return LexiconEntry(words, "exact" if len(words) > 1 else kind, source)


def read_entries(path: Path) -> list[LexiconEntry]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = parse_lexicon_line(line, path.name)
        if entry is not None:
            entries.append(entry)
    return entries


def lexicon_sha256(action_words: bool = True, light: bool = False) -> str:
    """SHA-256 of the lexicon files in use (emotion words, then action words when used)."""
    digest = hashlib.sha256()
    for path in _lexicon_files(action_words, light):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _lexicon_files(action_words: bool, light: bool = False) -> tuple[Path, ...]:
    if light:
        return (LIGHT_LEXICON_FILE,)
    return (LEXICON_FILE, ACTION_WORDS_FILE) if action_words else (LEXICON_FILE,)


@lru_cache(maxsize=4)
def load_lexicon(action_words: bool = True, light: bool = False) -> Lexicon:
    """The lexicon from prompts/, read once per process (`light`: the short list of emotion names)."""
    entries = tuple(e for path in _lexicon_files(action_words, light) for e in read_entries(path))
    words: set[str] = set()
    phrases: set[tuple[str, ...]] = set()
    for entry in entries:
        if len(entry.words) == 1:
            words |= inflections(entry.words[0], entry.kind)
        else:
            phrases.add(entry.words)
    return Lexicon(entries=entries, words=frozenset(words), phrases=frozenset(phrases),
                   phrase_starts=frozenset(p[0] for p in phrases),
                   longest_phrase=max((len(p) for p in phrases), default=1),
                   sha256=lexicon_sha256(action_words, light))


# --- sentences and clauses --------------------------------------------------------------------

def normalise(text: str) -> str:
    """NFKC, without invisible format characters (zero-width space, soft hyphen, …)."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


# A sentence ends at . ! ? … (and any closing quote or bracket) before a space, the end, or a
# capital or opening quote — "happy.He smiles" is two sentences, "0.5 s" is not split.
_SENTENCE_END = re.compile(r"""[.!?…]+["'”’)\]]*(?=\s|$|[A-Z"“‘(\[])""")

# Words that can open a clause that stands on its own: a subject (determiner, pronoun, or a
# face part named without a determiner, as in "brows rise").
_SUBJECTS = ("the", "her", "his", "their", "its", "a", "an", "this", "that", "these", "those", "she", "he",
             "they", "it", "both", "each", "one", "there", "eyes", "brows", "eyebrows", "lips", "mouth", "jaw",
             "head", "face", "cheeks", "forehead", "nose", "chin", "eyelids", "lids", "gaze")
_SUBJECT_ALT = "|".join(_SUBJECTS)
# Clause breaks: punctuation and dashes always; subordinating words always; coordinating
# words only before a new subject ("the lips part and the jaw drops", not "rise and fall").
_CLAUSE_BREAK = re.compile(
    rf"(\s*[,;:]\s*(?:(?:and|but|yet|so|then|and then)\s+(?=(?:{_SUBJECT_ALT})\b))?"
    r"|\s+[–—-]+\s+|\s*—\s*"
    r"|\s+(?:while|whereas|although|though|as if|as though|suggesting|indicating|conveying|"
    r"revealing|expressing|reflecting|which|giving (?:the|an?) (?:impression|appearance))\b\s*"
    rf"|\s+(?:and|but|yet|so|as|then|and then)\s+(?=(?:{_SUBJECT_ALT})\b))",
    re.IGNORECASE)
_CONJUNCTION_START = re.compile(r"^(?:and|but|yet|so|or|then)\b", re.IGNORECASE)
_MIN_WORDS = 3  # a partly removed sentence shorter than this is dropped whole


def split_sentences(text: str) -> list[str]:
    sentences = []
    for block in re.split(r"\n\s*", text):
        start = 0
        for end in _SENTENCE_END.finditer(block):
            sentences.append(block[start:end.end()])
            start = end.end()
        sentences.append(block[start:])
    return [s.strip() for s in sentences if s.strip()]


def _split_clauses(body: str) -> list[tuple[str, str]]:
    """(separator before it, clause text) pairs; the first separator is empty."""
    parts = _CLAUSE_BREAK.split(body)
    clauses: list[tuple[str, str]] = []
    separator = ""
    for i, part in enumerate(parts):
        if i % 2:
            separator += part
        elif part.strip():
            clauses.append(("" if not clauses else separator, part.strip()))
            separator = ""
    return clauses


def _stands_alone(clause: str) -> bool:
    first = _WORD.match(clause)
    return bool(first) and first.group().lower() in _SUBJECTS


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _trim_sentence(sentence: str, lexicon: Lexicon) -> tuple[str | None, list[str]]:
    """(what is left of `sentence` or None, the clauses removed) for one sentence with a match."""
    ending = re.search(r"[.!?…]+[\"'”’)\]]*$", sentence)
    terminal = ending.group() if ending else ""
    body = sentence[:len(sentence) - len(terminal)]
    clauses = _split_clauses(body)
    bad = [bool(lexicon.find(text)) for _, text in clauses]
    if all(bad) or len(clauses) < 2:
        return None, [sentence]
    first = 0
    if bad[0]:
        # Without its main clause a sentence keeps only a later clause with its own subject.
        first = next((i for i in range(1, len(clauses)) if not bad[i] and _stands_alone(clauses[i][1])), None)
        if first is None:
            return None, [sentence]
    removed = [clauses[i][1] for i in range(first)]
    kept = [clauses[first][1]]
    previous_dropped_comma = False
    for i in range(first + 1, len(clauses)):
        separator, text = clauses[i]
        if bad[i]:
            removed.append(text)
            previous_dropped_comma = separator.strip() == ","
            continue
        if previous_dropped_comma and separator.strip() == "," and not (
                _stands_alone(text) or _CONJUNCTION_START.match(text)):
            separator = " "   # a parenthetical went: "The man, clearly X, opens" → "The man opens"
        kept.append(separator + text)
        previous_dropped_comma = False
    result = _capitalise("".join(kept).strip(" ,;:—–-")) + (terminal or ".")
    if len(_WORD.findall(result)) < _MIN_WORDS or lexicon.find(result):
        return None, [sentence]
    return result, removed


@dataclass
class FilterResult:
    text: str                                           # what remains, sentences joined by one space
    removed: list[str] = field(default_factory=list)    # removed sentences and clauses, in order
    matched: list[str] = field(default_factory=list)    # the lexicon words and phrases found


def filter_emotion(text: str, action_words: bool = True, light: bool = False) -> FilterResult:
    """`text` without the sentences or clauses that name or imply an emotion (see module doc).
    `action_words=False` keeps facial-action words such as "smile" (for ablations); `light=True`
    uses only prompts/emotion_lexicon_light.txt (the emotion names: the `reference` describer setting)."""
    lexicon = load_lexicon(action_words, light)
    text = normalise(text)
    matched = sorted({m.surface.lower() for m in lexicon.find(text)})
    kept: list[str] = []
    removed: list[str] = []
    for sentence in split_sentences(text):
        if not lexicon.find(sentence):
            kept.append(" ".join(sentence.split()))
            continue
        trimmed, dropped = _trim_sentence(sentence, lexicon)
        removed += dropped
        if trimmed is not None:
            kept.append(" ".join(trimmed.split()))
    # A phrase can straddle two kept sentences once they are joined; drop whatever still matches.
    output = " ".join(kept)
    while (leftovers := lexicon.find(output)):
        spans, position = [], 0
        for sentence in kept:
            spans.append((position, position + len(sentence)))
            position += len(sentence) + 1
        hit = leftovers[0]
        doomed = {i for i, (s, e) in enumerate(spans) if s < hit.end and hit.start < e}
        removed += [kept[i] for i in sorted(doomed)]
        kept = [s for i, s in enumerate(kept) if i not in doomed]
        output = " ".join(kept)
    assert not lexicon.find(output), "emotion filter left a lexicon match"
    return FilterResult(text=output, removed=removed, matched=matched)
