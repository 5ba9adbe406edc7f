"""Plain-text helpers for instructions and filters: words, stopwords, key phrases.

Key phrases are found the way RAKE does it, without a tagger: runs of content
words between stopwords and punctuation are candidate phrases (nouns and their
modifiers mostly end up there), scored by how often their words occur.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter

STOPWORDS = frozenset("""
a about above across after again against all almost also although always am among an and another any
anyone anything are aren't around as at away back be became because become becomes been before being
below best better between both but by can can't cannot could couldn't did didn't do does doesn't doing
don't done down during each either else enough especially even ever every everyone everything few
first for from further get gets getting give given go goes going gone got had hadn't has hasn't have
haven't having he her here hers herself him himself his how however i i'd i'll i'm i've if in
instead into is isn't it it's its itself just keep know last least less let let's like likely lot
lots made make makes making many may maybe me might mine more most much must my myself need needs
never new next no nor not nothing now of off often oh ok okay on once one ones only onto or other
others otherwise our ours ourselves out over own per perhaps put quite rather really right said same
say says see seen shall she should shouldn't since so some something sometimes still such sure take
than that that's the their theirs them themselves then there there's these they they're thing things
think this those though through thus to today together too took toward towards try under until up
upon us use used uses using very via want wants was wasn't way ways we we're we've well went were
weren't what what's when where whether which while who whom whose why will with within without won't
would wouldn't yes yet you you'd you'll you're you've your yours yourself yourselves
""".split())

# Common verbs that would otherwise end a phrase ("the pipeline consists"): no tagger, so a list.
PHRASE_BREAKERS = frozenset("""
allows applies becomes begins brings builds comes consists contains covers creates describes explains
feels finds follows gives helps includes keeps leads looks means moves needs offers provides reads
requires runs seems shows starts stays takes tells tries turns works writes
""".split())

WORD = re.compile(r"[^\W\d_][\w'+#.-]*[\w+#]|[^\W\d_]")  # words in any script, starting with a letter
# Phrase boundaries: sentence and clause punctuation, brackets, quotes, line breaks.
BOUNDARY = re.compile(r"[.,;:!?()\[\]{}\"“”‘’…|/\\\n\t–—]+|\s-\s|\*\*|__|`")
URL = re.compile(r"https?://\S+|www\.\S+")
MARKUP = re.compile(r"[#*_>`~=]+")


def words(text: str) -> list[str]:
    return WORD.findall(text)


def first_sentence(text: str, max_chars: int = 160) -> str:
    flat = " ".join(MARKUP.sub(" ", URL.sub(" ", text)).split())
    match = re.match(r"(.+?[.!?])(\s|$)", flat)
    sentence = match.group(1) if match else flat
    if len(sentence) > max_chars:
        sentence = sentence[:max_chars].rsplit(" ", 1)[0] + "…"
    return sentence


def _content_word(word: str) -> bool:
    lower = word.lower()
    return (lower not in STOPWORDS and lower not in PHRASE_BREAKERS and len(lower) > 2
            and not lower.endswith("ly")
            and not lower.replace(".", "").replace("-", "").isdigit())


def key_phrases(text: str, limit: int = 3, max_words: int = 3) -> list[str]:
    """The text's most telling noun-ish phrases, most telling first, in their commonest spelling."""
    candidates: list[list[str]] = []
    plain = unicodedata.normalize("NFKC", text)
    for fragment in BOUNDARY.split(MARKUP.sub(" ", URL.sub(" ", plain))):
        run: list[str] = []
        for word in words(fragment) + [""]:
            if word and _content_word(word):
                run.append(word)
                continue
            while run and run[-1].lower().endswith("ed"):  # "the article provided": a verb, not a noun
                run.pop()
            if run:
                # The head of an English noun phrase is at its end: keep the last words, each once.
                candidates.append(list(dict.fromkeys(run[-max_words:])))
            run = []
    if not candidates:
        return []
    word_freq = Counter(w.lower() for phrase in candidates for w in phrase)
    phrase_freq = Counter(" ".join(w.lower() for w in phrase) for phrase in candidates)
    spelling: dict[str, Counter[str]] = {}
    for phrase in candidates:
        spelling.setdefault(" ".join(w.lower() for w in phrase), Counter())[" ".join(phrase)] += 1

    def score(key: str) -> float:
        parts = key.split()
        # Repeated phrases and phrases of frequent words win; a longer phrase only wins if its words recur.
        return phrase_freq[key] * sum(word_freq[p] for p in parts) / len(parts) ** 0.5

    chosen: list[str] = []
    covered: set[str] = set()
    for key in sorted(phrase_freq, key=lambda k: (-score(k), k)):
        parts = set(key.split())
        if parts <= covered:
            continue
        chosen.append(_preferred_spelling(spelling[key]))
        covered |= parts
        if len(chosen) == limit:
            break
    return chosen


def _preferred_spelling(spellings: Counter[str]) -> str:
    # Prefer the lower-case form unless the text always capitalises it (names, acronyms).
    best = max(spellings.items(), key=lambda item: (item[1], item[0].islower(), item[0]))[0]
    lowered = best.lower()
    return lowered if lowered in spellings else best


def join_phrases(phrases: list[str]) -> str:
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]
