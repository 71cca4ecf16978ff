#!/usr/bin/env python3
"""BM25 peer for `quiver-bench bm25`: the same lines, the same queries, in process.

bm25s (pip install bm25s) indexes the first N lines of a text file and answers, one query at a
time, the first WORDS words of the text after "term: " of the lines that follow, top k. Prints
QPS and latency percentiles (nearest rank), and writes them as JSON with --json.
"""
import argparse, json, math, time

import bm25s

ap = argparse.ArgumentParser()
ap.add_argument("texts")
ap.add_argument("--n", type=int, default=100_000)
ap.add_argument("--queries", type=int, default=1000)
ap.add_argument("--words", type=int, default=4)
ap.add_argument("--k", type=int, default=10)
ap.add_argument("--json")
a = ap.parse_args()

lines = [l.rstrip("\n") for l in open(a.texts, encoding="utf-8") if l.strip()]
corpus, rest = lines[: a.n], lines[a.n :][: a.queries]
queries = [" ".join((l.split(": ", 1)[1] if ": " in l else l).split()[: a.words]) for l in rest]
t = time.perf_counter()
retriever = bm25s.BM25(k1=1.2, b=0.75)
retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
build = time.perf_counter() - t


def one(q):
    toks = bm25s.tokenize([q], stopwords="en", show_progress=False)
    if not toks.vocab:
        return 0
    docs, _ = retriever.retrieve(toks, k=a.k, show_progress=False, n_threads=1)
    return len(docs[0])


for q in queries:  # warm-up, as quiver-bench does
    one(q)
ms = []
t = time.perf_counter()
for q in queries:
    s = time.perf_counter()
    one(q)
    ms.append((time.perf_counter() - s) * 1e3)
wall = time.perf_counter() - t
ms.sort()
pct = lambda p: ms[max(1, math.ceil(p / 100 * len(ms) - 1e-9)) - 1]
out = {"engine": "bm25s", "version": bm25s.__version__, "points": a.n, "queries": len(queries),
       "build_s": build, "qps": len(queries) / wall,
       "latency_ms": {"p50": pct(50), "p95": pct(95), "p99": pct(99)}}
print(json.dumps(out))
if a.json:
    json.dump(out, open(a.json, "w"), indent=2)
