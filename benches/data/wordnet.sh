#!/usr/bin/env bash
# Builds real-English text sets from WordNet 3.0 (Debian package wordnet-base), for the embedding,
# index and hybrid-retrieval benchmarks:
#   OUT/glosses.txt   one definition per line ("word, synonym: definition"), 117,659 lines
#   OUT/glosses.jsonl the same as documents {"id", "text", "metadata": {"pos", "words"}}
# Usage: benches/data/wordnet.sh OUT_DIR
set -euo pipefail
OUT="${1:?usage: wordnet.sh OUT_DIR}"
mkdir -p "$OUT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && apt-get download wordnet-base >/dev/null 2>&1) || {
  echo "wordnet.sh: could not download wordnet-base with apt-get download" >&2
  exit 1
}
dpkg-deb -x "$TMP"/wordnet-base_*.deb "$TMP/x"
python3 - "$TMP/x/usr/share/wordnet" "$OUT" <<'PY'
import json, os, sys
src, out = sys.argv[1:]
n = 0
with open(os.path.join(out, "glosses.txt"), "w") as txt, open(os.path.join(out, "glosses.jsonl"), "w") as js:
    for pos in ["noun", "verb", "adj", "adv"]:
        for line in open(os.path.join(src, "data." + pos), encoding="latin-1"):
            if line.startswith("  ") or "|" not in line:
                continue
            head, gloss = line.split("|", 1)
            f = head.split()
            offset, count = f[0], int(f[3], 16)
            words = [f[4 + 2 * i].replace("_", " ") for i in range(count)]
            definition = gloss.strip().split('; "')[0].strip()
            text = f"{', '.join(words[:3])}: {definition}"
            txt.write(text.replace("\n", " ") + "\n")
            js.write(json.dumps({"id": f"{pos}-{offset}", "text": text,
                                 "metadata": {"pos": pos, "words": words}}) + "\n")
            n += 1
print(f"wordnet.sh: {n} glosses in {out}", file=sys.stderr)
PY
