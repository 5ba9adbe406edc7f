"""Query expansion: the request as typed, plus rewrites that say only what it is about.

People ask a twin for writing ("Write a LinkedIn post about data contracts and schema
evolution"), not questions. The task wording ("write a LinkedIn post about") says what
to produce, not what to draw on, yet it weighs on the request's embedding and pulls in
passages that merely are posts. So retrieval also searches with:
  - the topic: the request with its task wording taken off ("data contracts and schema evolution");
  - each subject of a topic that joins several ("data contracts", "schema evolution"), so that
    every subject the user named finds passages, not only the one nearest the whole request.
Rewrites are made by rules, in microseconds: on CPU an LLM rewrite would cost seconds per request.
The forms are embedded in one batch, so expanding costs little more than one embedding.
"""
from __future__ import annotations

import re

MAX_SUBJECTS = 3  # more parts than this is a list, not a few subjects: the topic alone is searched

# Leading politeness, then a verb of asking for writing or an opinion, then (optionally) the
# words up to the first preposition that introduces the subject: "write a short post about".
_TASK_WORDING = re.compile(
    r"^(?:(?:please|kindly|can you|could you|would you|will you|help me|i want you to|i'd like you to"
    r"|i would like you to)\s+)*"
    r"(?:write|draft|compose|create|generate|produce|make|give me|share|tell me|explain|summari[sz]e"
    r"|describe|outline|what do you think|what are your thoughts|what's your take|what is your take"
    r"|how do you feel)\b"
    r"(?:[^.?!\n]*?\b(?:about|on|regarding|around|covering|explaining|describing|that|of)\b)?",
    re.IGNORECASE)
_SUBJECT_SEPARATOR = re.compile(r"\s*(?:,|;|\band\b|\bversus\b|\bvs\.?)\s*", re.IGNORECASE)
_EDGE_NOISE = " \t\n\"'`.,;:!?-"


def expand_query(query: str) -> list[str]:
    """The query first, then its topic and the topic's subjects when they differ from what came before."""
    forms = [query.strip()]
    topic = _TASK_WORDING.sub("", forms[0], count=1).strip(_EDGE_NOISE)
    subjects = [part.strip(_EDGE_NOISE) for part in _SUBJECT_SEPARATOR.split(topic)]
    subjects = [part for part in subjects if part]
    candidates = [topic, *subjects] if 1 < len(subjects) <= MAX_SUBJECTS else [topic]
    seen = {_key(forms[0])}
    for form in candidates:
        if form and _key(form) not in seen:
            seen.add(_key(form))
            forms.append(form)
    return forms


def _key(form: str) -> str:
    return form.strip(_EDGE_NOISE).lower()
