#!/usr/bin/env bash
# Builds a retrieval and RAG evaluation set for `quiver eval` from FOLDOC, the Free On-line
# Dictionary of Computing (Debian package dict-foldoc, dictd format; GNU FDL, see LICENSE.md in
# benches/data/eval/):
#   OUT/docs.jsonl       {"id": TERM, "text": "TERM: definition", "metadata": {"source": "foldoc",
#                        "category": ...}}, DOCS entries, a deterministic sample
#   OUT/questions.jsonl  {"question", "doc_ids": [TERM], "kind"}, QUESTIONS lines, half of each kind:
#                        term        "What is TERM?" (the exact term: lexical search should find it)
#                        paraphrase  the definition's first sentence with the term, its aliases and
#                                    parentheses removed and common words swapped for synonyms,
#                                    asked as "Which term means: ...?" (no term to match)
# Entries kept: a category tag, a definition of 120 to 1,200 characters whose first sentence has at
# least 8 words, not a bare cross-reference; every Nth of them in term order (N chosen to give DOCS).
# Questions come from every Mth kept document, both kinds from the same document.
# Usage: benches/data/foldoc.sh OUT_DIR [DOCS (default 3000)] [QUESTIONS (default 600)]
#   The set shipped in benches/data/eval was made by: benches/data/foldoc.sh benches/data/eval 400 100
# Set FOLDOC_DEB to a downloaded dict-foldoc .deb to skip the download.
set -euo pipefail
OUT="${1:?usage: foldoc.sh OUT_DIR [DOCS] [QUESTIONS]}"
DOCS="${2:-3000}"
QUESTIONS="${3:-600}"
mkdir -p "$OUT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
if [[ -n "${FOLDOC_DEB:-}" ]]; then
  cp "$FOLDOC_DEB" "$TMP/"
else
  (cd "$TMP" && apt-get download dict-foldoc >/dev/null 2>&1) || {
    echo "foldoc.sh: could not download dict-foldoc with apt-get download" >&2
    exit 1
  }
fi
dpkg-deb -x "$TMP"/dict-foldoc_*.deb "$TMP/x"
python3 - "$TMP/x/usr/share/dictd" "$OUT" "$DOCS" "$QUESTIONS" <<'PY'
import gzip, json, os, re, sys

src, out, want_docs, want_questions = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = gzip.open(os.path.join(src, "foldoc.dict.dz")).read()
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

def b64(s):
    n = 0
    for c in s:
        n = n * 64 + B64.index(c)
    return n

# dictd index: headword TAB offset TAB length (base 64); several headwords share one entry.
entries = {}
for line in open(os.path.join(src, "foldoc.index"), encoding="utf-8"):
    head, off, length = line.rstrip("\n").split("\t")
    entries.setdefault((b64(off), b64(length)), []).append(head)

def clean(s):
    s = re.sub(r"\{([^{}]*?)\s*\([^()\s]*[./][^()\s]*\)\}", r"\1", s)  # {text (url)} -> text
    s = s.replace("{", "").replace("}", "")
    return " ".join(s.split())

def first_sentence(s):
    m = re.search(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)(?<!\b[A-Z])[.!?](?=\s+[A-Z\"(\[]|$)", s)
    return s[: m.end()] if m else s

kept, seen = [], set()
for (off, length), heads in entries.items():
    raw = data[off : off + length].decode("utf-8", "replace")
    top, _, body = raw.partition("\n\n")
    names = [n.strip() for n in top.split("\n") if n.strip()]
    if not names:
        continue
    title = names[0]
    m = re.match(r"\s*<([^>]*)>\s*", body)
    if not m or title.startswith("00-") or "#" in title or len(title) > 40:
        continue
    category = m.group(1).strip()
    paras = [p for p in body[m.end():].split("\n\n")
             if p.strip() and not re.fullmatch(r"\s*\(\d{4}-\d{2}-\d{2}\)\s*", p)]
    definition = re.sub(r"^/[^/ ][^/]*/\s*", "", clean(" ".join(paras)))  # pronunciation
    first = first_sentence(definition)
    if not (120 <= len(definition) <= 1200) or len(first.split()) < 8 or first.startswith("See "):
        continue
    if title.lower() in seen:
        continue
    seen.add(title.lower())
    kept.append({"title": title, "names": sorted(set(names + heads), key=len, reverse=True),
                 "category": category, "definition": definition, "first": first})
kept.sort(key=lambda e: (e["title"].lower(), e["title"]))
step = max(1, len(kept) // want_docs)
docs = kept[::step][:want_docs]

SYNONYMS = {
    "computer": "machine", "computers": "machines", "program": "application",
    "programs": "applications", "programming": "coding", "data": "information",
    "used": "employed", "uses": "employs", "function": "routine", "functions": "routines",
    "method": "technique", "technique": "method", "large": "big", "small": "little",
    "fast": "quick", "developed": "created", "designed": "built", "company": "firm",
    "allows": "permits", "provides": "offers", "device": "unit", "written": "implemented",
    "particular": "specific", "often": "frequently", "usually": "typically",
}

def paraphrase(e):
    s = re.sub(r"\([^()]*\)", " ", e["first"])
    for name in e["names"]:
        s = re.sub(r"(?<!\w)" + re.escape(name) + r"(?!\w)", " ", s, flags=re.I)
    words = []
    for w in s.split():
        core = w.strip(".,;:!?\"'")
        rep = SYNONYMS.get(core.lower())
        if rep:
            rep = rep.capitalize() if core[:1].isupper() else rep
            w = w.replace(core, rep, 1)
        words.append(w)
    for i in range(len(words) - 1):  # articles after the swaps
        if words[i].lower() in ("a", "an"):
            an = words[i + 1][:1].lower() in "aeiou"
            words[i] = ("an" if an else "a") if words[i].islower() else ("An" if an else "A")
    s = re.sub(r"\s+([,.;:])", r"\1", " ".join(words)).strip(" .,;:")
    if len(s.split()) < 6 or "[" in s or any(n.lower() in s.lower() for n in e["names"] if len(n) > 2):
        return None
    return "Which term means: " + s[0].lower() + s[1:] + "?"

pairs = [(d, paraphrase(d)) for d in docs]
pairs = [(d, p) for d, p in pairs if p]
qstep = max(1, len(pairs) // max(1, want_questions // 2))
picked = pairs[::qstep][: want_questions // 2]
with open(os.path.join(out, "docs.jsonl"), "w") as f:
    for d in docs:
        f.write(json.dumps({"id": d["title"], "text": f"{d['title']}: {d['definition']}",
                            "metadata": {"source": "foldoc", "category": d["category"]}},
                           ensure_ascii=False) + "\n")
with open(os.path.join(out, "questions.jsonl"), "w") as f:
    for d, p in picked:
        f.write(json.dumps({"question": f"What is {d['title']}?", "doc_ids": [d["title"]],
                            "kind": "term"}, ensure_ascii=False) + "\n")
        f.write(json.dumps({"question": p, "doc_ids": [d["title"]], "kind": "paraphrase"},
                           ensure_ascii=False) + "\n")
print(f"foldoc.sh: {len(kept)} usable entries, {len(docs)} documents, "
      f"{2 * len(picked)} questions in {out}", file=sys.stderr)
PY
