"""Retrieval baseline: answer a prompt with the code of the most similar training utterance.

TF-IDF over lower-cased word unigrams and bigrams (sublinear term frequency, smoothed idf,
L2-normalised vectors) and cosine similarity, with an inverted index in plain Python/numpy.
The top-k answer is the codes of the nearest training utterances, without repeats (the CF train
set has only 292 distinct codes for 712 utterances). It is the floor any model must beat.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

_WORD_RE = re.compile(r"\w+")


def terms(text: str) -> list[str]:
    """Lower-cased word unigrams and bigrams of an utterance."""
    words = _WORD_RE.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def _weights(counts: Counter, idf: dict) -> dict:
    vec = {t: (1.0 + math.log(c)) * idf[t] for t, c in counts.items() if t in idf}
    norm = math.sqrt(sum(w * w for w in vec.values()))
    return {t: w / norm for t, w in vec.items()} if norm else {}


class TfidfRetriever:
    """Nearest-utterance search over (utterance, code) pairs."""

    def __init__(self, utterances: list[str], codes: list[str]):
        if len(utterances) != len(codes) or not codes:
            raise ValueError("need as many codes as utterances, and at least one")
        self.codes = list(codes)
        docs = [Counter(terms(u)) for u in utterances]
        df = Counter(t for d in docs for t in d)
        n = len(docs)
        self.idf = {t: math.log((1 + n) / (1 + f)) + 1.0 for t, f in df.items()}
        postings: dict[str, tuple[list, list]] = {}
        for i, d in enumerate(docs):
            for t, w in _weights(d, self.idf).items():
                ids, ws = postings.setdefault(t, ([], []))
                ids.append(i)
                ws.append(w)
        self.postings = {t: (np.array(ids), np.array(ws)) for t, (ids, ws) in postings.items()}

    @classmethod
    def from_examples(cls, examples) -> "TfidfRetriever":
        """Index examples with `.nl` and `.code`."""
        return cls([e.nl for e in examples], [e.code for e in examples])

    def scores(self, query: str) -> np.ndarray:
        """Cosine similarity of the query to every indexed utterance."""
        out = np.zeros(len(self.codes))
        for t, w in _weights(Counter(terms(query)), self.idf).items():
            ids, ws = self.postings[t]
            out[ids] += w * ws  # ids are unique within a posting list
        return out

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The k nearest distinct codes with their similarity, best first (ties: index order)."""
        sims = self.scores(query)
        found: dict[str, float] = {}
        for i in np.argsort(-sims, kind="stable"):
            found.setdefault(self.codes[i], float(sims[i]))
            if len(found) == k:
                break
        return list(found.items())
