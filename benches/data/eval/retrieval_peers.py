#!/usr/bin/env python3
"""Reference retrieval figures for an evaluation set, beside `quiver eval --retrieval-only`.

Ranks the documents of DOCS.jsonl for each question of QUESTIONS.jsonl three ways, in-process:
  dense   all-MiniLM-L6-v2 in sentence-transformers (one vector per whole document, truncated at
          256 word pieces; Quiver embeds chunks of at most 200 tokens), exact cosine;
  bm25    rank_bm25's BM25Okapi (k1 1.5, b 0.75) over lower-cased alphanumeric tokens;
  hybrid  reciprocal rank fusion of the two top-100 lists, score = sum 1 / (60 + rank).
and scores them with the formulas of client/src/eval/metrics.rs (recall@k, MRR, nDCG@k over
distinct documents, binary relevance). Needs: pip install sentence-transformers rank-bm25==0.2.2
Usage: retrieval_peers.py DOCS.jsonl QUESTIONS.jsonl [--k 10] [--model PATH_OR_NAME] [--json]
"""
import argparse, json, math, re, sys, time
from collections import defaultdict

import numpy as np
from rank_bm25 import BM25Okapi
from sentence_transformers import SentenceTransformer


def tokens(s):
    return re.findall(r"[a-z0-9]+", s.lower())


def scores(ranked, relevant, k):
    ranked = ranked[:k]
    found = sum(1 for d in ranked if d in relevant)
    rr = next((1 / (i + 1) for i, d in enumerate(ranked) if d in relevant), 0.0)
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return found / len(relevant), rr, dcg / ideal


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("docs")
    ap.add_argument("questions")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    docs = [json.loads(l) for l in open(a.docs) if l.strip()]
    qs = [json.loads(l) for l in open(a.questions) if l.strip()]
    ids = [str(d["id"]) for d in docs]
    model = SentenceTransformer(a.model, device="cpu")
    t = time.time()
    dv = model.encode([d["text"] for d in docs], batch_size=32, normalize_embeddings=True)
    qv = model.encode([q["question"] for q in qs], batch_size=32, normalize_embeddings=True)
    embed_s = time.time() - t
    bm25 = BM25Okapi([tokens(d["text"]) for d in docs])
    runs = {}
    dense_top = np.argsort(-(qv @ dv.T), axis=1)[:, :100]
    bm25_top = [np.argsort(-bm25.get_scores(tokens(q["question"])))[:100] for q in qs]
    runs["dense"] = [[ids[i] for i in row] for row in dense_top]
    runs["bm25"] = [[ids[i] for i in row] for row in bm25_top]
    fused = []
    for d_row, b_row in zip(dense_top, bm25_top):
        s = defaultdict(float)
        for row in (d_row, b_row):
            for r, i in enumerate(row):
                s[ids[i]] += 1 / (60 + r + 1)
        fused.append(sorted(s, key=lambda d: -s[d]))
    runs["hybrid"] = fused
    report = {"docs": len(docs), "questions": len(qs), "k": a.k, "embed_seconds": embed_s}
    for name, ranked in runs.items():
        groups = defaultdict(list)
        for q, r in zip(qs, ranked):
            m = scores(r, set(map(str, q["doc_ids"])), a.k)
            groups["all"].append(m)
            if q.get("kind"):
                groups[q["kind"]].append(m)
        report[name] = {g: {"questions": len(v), "recall": float(np.mean([x[0] for x in v])),
                            "mrr": float(np.mean([x[1] for x in v])),
                            "ndcg": float(np.mean([x[2] for x in v]))} for g, v in groups.items()}
    if a.json:
        print(json.dumps(report))
        return
    print(f"{len(docs)} documents, {len(qs)} questions, k {a.k}")
    print(f"{'retriever':<8} {'questions':<11} {'recall':>7} {'MRR':>7} {'nDCG':>7}")
    for name in runs:
        for g, x in report[name].items():
            print(f"{name:<8} {g:<11} {x['recall']:7.3f} {x['mrr']:7.3f} {x['ndcg']:7.3f}")


if __name__ == "__main__":
    sys.exit(main())
