#!/usr/bin/env bash
# Builds the retrieval set of the hybrid (BM25 + dense) benchmark from two Debian dictionaries:
#   OUT/docs.jsonl       every usable FOLDOC entry (foldoc.sh with no sampling: about 4,700)
#   OUT/questions.jsonl  foldoc.sh's questions (kinds "term" and "paraphrase", 600), plus kind
#                        "wordnet": for each FOLDOC term that names exactly one WordNet 3.0 synset,
#                        that synset's definition, written independently of FOLDOC's, as the query
#                        and the FOLDOC entry as its answer. Some of these pairs are different
#                        senses of one word (FOLDOC's "Acrobat" is Adobe's program, WordNet's an
#                        athlete): no retriever can answer those, and they count for every mode.
# Usage: benches/data/hybrid_set.sh OUT_DIR
set -euo pipefail
OUT="${1:?usage: hybrid_set.sh OUT_DIR}"
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$OUT"
"$HERE/foldoc.sh" "$OUT/foldoc" 100000 600
"$HERE/wordnet.sh" "$OUT/wordnet"
python3 - "$OUT" <<'PY'
import collections, json, os, sys
out = sys.argv[1]
docs = [json.loads(l) for l in open(os.path.join(out, "foldoc", "docs.jsonl"))]
senses = collections.defaultdict(list)
for line in open(os.path.join(out, "wordnet", "glosses.jsonl")):
    g = json.loads(line)
    for w in g["metadata"]["words"]:
        senses[w.lower()].append(g)
extra = []
for d in docs:
    s = senses.get(d["id"].lower(), [])
    if len(s) == 1:
        definition = s[0]["text"].split(": ", 1)[1]
        extra.append({"question": definition, "doc_ids": [d["id"]], "kind": "wordnet"})
with open(os.path.join(out, "docs.jsonl"), "w") as f:
    for d in docs:
        f.write(json.dumps(d) + "\n")
with open(os.path.join(out, "questions.jsonl"), "w") as f:
    for line in open(os.path.join(out, "foldoc", "questions.jsonl")):
        f.write(line)
    for q in extra:
        f.write(json.dumps(q) + "\n")
print(f"hybrid_set.sh: {len(docs)} documents, 600 FOLDOC questions and {len(extra)} WordNet "
      f"definitions in {out}", file=sys.stderr)
PY
