"""Rank dumped Bash draws (draws.py) by score, by vote (the evaluator's --rank vote) and by minimum Bayes risk:
each distinct template by its summed similarity (1 - token edit distance / length) to all the draws' templates, so
draws that nearly agree count too; variants: similarity of the raw commands, parsing first.

    PYTHONPATH=. python results/mbr/mbr.py results/mbr/bash_bundle_val_seed0_draws40.json
"""
import json
import sys

from rapidfuzz.distance import Levenshtein

from codefusion.metrics import bash_match, is_valid, program_key
from codefusion.sampler import Candidate, rank


def similarity(a, b):
    """1 - Levenshtein distance over the longer length, on whitespace tokens (templates are space-joined tokens,
    which metrics.code_tokens would split further: `-name` into `-` and `name`)."""
    a, b = a.lstrip("\0").split(), b.lstrip("\0").split()   # "\0" marks bashlex's fallback template
    return 1 - Levenshtein.normalized_distance(a, b)


def mbr(draws, k, raw=False):
    keys = [program_key("bash", t) for t, _ in draws]
    groups = {}
    for (text, score), key in zip(draws, keys):
        groups.setdefault(key, []).append((score, text))
    best = {g: max(members)[1] for g, members in groups.items()}
    if raw:
        utility = {g: sum(similarity(best[g], t) for t, _ in draws) for g in groups}
    else:
        utility = {g: sum(similarity(g, other) for other in keys) for g in groups}
    order = sorted(groups, key=lambda g: (-utility[g], -max(groups[g])[0]))
    return [best[g] for g in order[:k]]


def top_k(rows, ranker, ks=(1, 3, 5)):
    hits = dict.fromkeys(ks, 0)
    for r in rows:
        cands = ranker(r["draws"])
        for k in ks:
            hits[k] += any(bash_match(c, r["gold"]) for c in cands[:k])
    return [round(100 * hits[k] / len(rows), 2) for k in ks]


def candidates(draws):
    return [Candidate(text=t, score=s, tokens=[], token_ids=[], probs=[]) for t, s in draws]


for path in sys.argv[1:]:
    rows = json.load(open(path))["tasks"]
    print(path, len(rows), "tasks; top-1 / 3 / 5")
    print("  by score       ", top_k(rows, lambda d: [c.text for c in rank(candidates(d), 5)]))
    print("  vote           ", top_k(rows, lambda d: [c.text for c in rank(candidates(d), 5, key=lambda t: program_key("bash", t))]))
    print("  MBR, templates ", top_k(rows, lambda d: mbr(d, 5)))
    print("  MBR, commands  ", top_k(rows, lambda d: mbr(d, 5, raw=True)))
    print("  MBR, parsing first", top_k(rows, lambda d: sorted(mbr(d, 40), key=lambda t: not is_valid("bash", t))[:5]))
    distinct = sorted(len({program_key("bash", t) for t, _ in r["draws"]}) for r in rows)
    print("  distinct templates per task, median", distinct[len(distinct) // 2], "of", len(rows[0]["draws"]))
