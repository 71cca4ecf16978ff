#!/usr/bin/env python3
"""Embedding throughput of sentence-transformers (PyTorch, CPU) on the same model files and texts
as `quiver-bench embed`, for the side-by-side table in benches/RESULTS.md.

Usage: embed_peers.py MODEL_DIR TEXTS.txt [--limit N] [--threads T] [--batch B] [--check-dim]
MODEL_DIR holds config.json, model.safetensors and tokenizer.json (scripts/models.sh installs
them); sentence-transformers builds the same mean-pooling model from them. Prints one JSON line.
"""
import argparse, json, time

import torch
from sentence_transformers import SentenceTransformer, models

p = argparse.ArgumentParser()
p.add_argument("model_dir")
p.add_argument("texts")
p.add_argument("--limit", type=int, default=10000)
p.add_argument("--threads", type=int, default=torch.get_num_threads())
p.add_argument("--batch", type=int, default=64)
a = p.parse_args()

torch.set_num_threads(a.threads)
texts = [l.rstrip("\n") for l in open(a.texts, encoding="utf-8")][: a.limit]
word = models.Transformer(a.model_dir, max_seq_length=256)
pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
model = SentenceTransformer(modules=[word, pool], device="cpu")
enc = model.tokenizer(texts, truncation=True, max_length=256)
tokens = sum(len(ids) for ids in enc["input_ids"])
model.encode(texts[:256], batch_size=a.batch, normalize_embeddings=True)  # warm-up
t = time.perf_counter()
vecs = model.encode(texts, batch_size=a.batch, normalize_embeddings=True)
secs = time.perf_counter() - t
print(json.dumps({
    "peer": "sentence-transformers", "version": __import__("sentence_transformers").__version__,
    "torch": torch.__version__, "threads": a.threads, "batch": a.batch, "texts": len(texts),
    "tokens": tokens, "seconds": round(secs, 3), "texts_per_s": round(len(texts) / secs, 1),
    "tokens_per_s": round(tokens / secs, 1), "dim": int(vecs.shape[1]),
}))
