#!/usr/bin/env python3
"""IVF-PQ peer on the same files as `quiver-bench ivfpq`: faiss IndexIVFPQ, and the same index
wrapped in IndexRefineFlat for exact re-ranking.

Train and add on every core (each timed), then search on one thread for each (nprobe, rerank)
of the sweep, k = 10, the whole query set in one call (faiss's natural batch; quiver searches
one query at a time), best of --repeat passes. Prints one JSON line per point with QPS and
recall@10 against the .ivecs ground truth, with the same keys as `quiver-bench ivfpq`; with
--json OUT, also writes the rows as one JSON array.
`rerank` is the number of candidates re-ranked exactly (faiss's k_factor = rerank / k); 0 means
the PQ distances alone.
faiss samples 256 points per centroid for each k-means, 10 iterations for the coarse quantizer
and 25 for each sub-quantizer; the quiver defaults follow the same counts.
Install: pip install faiss-cpu numpy
"""
import argparse, json, os, time

import numpy as np


def read_fvecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    return raw.reshape(-1, dim + 1)[:, 1:].view(np.float32).copy()


def read_ivecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    k = raw[0]
    return raw.reshape(-1, k + 1)[:, 1:]


def recall(found, truth):
    return float(np.mean([len(set(f[:10]) & set(t[:10])) / 10.0 for f, t in zip(found, truth)]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--nbits", type=int, default=8)
    ap.add_argument("--nprobe", default="1,2,4,8,16,32,64,128")
    ap.add_argument("--rerank", default="0,10,20,50,100,200")
    ap.add_argument("--repeat", type=int, default=3, help="passes per point; the fastest counts")
    ap.add_argument("--json", help="also write the rows to this file as one JSON array")
    a = ap.parse_args()
    rows = []

    import faiss

    base, queries, gt = read_fvecs(a.base), read_fvecs(a.queries), read_ivecs(a.gt)
    n, dim = base.shape
    k = 10
    threads = os.cpu_count()
    faiss.omp_set_num_threads(threads)
    quantizer = faiss.IndexFlatL2(dim)
    ivf = faiss.IndexIVFPQ(quantizer, dim, a.nlist, a.m, a.nbits)
    t = time.perf_counter()
    ivf.train(base)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    ivf.add(base)
    add_s = time.perf_counter() - t
    # Bytes per vector of the index itself (codes, ids, centroids, codebooks), without the full
    # vectors the refine stage keeps, and the precomputed L2 tables faiss holds in memory.
    serialized = faiss.serialize_index(ivf).size
    precomputed = ivf.precomputed_table.size() * 4
    refined = faiss.IndexRefineFlat(ivf, faiss.swig_ptr(base))
    faiss.omp_set_num_threads(1)
    common = {"version": faiss.__version__, "n": n, "dim": dim, "nlist": a.nlist, "m": a.m, "nbits": a.nbits, "threads": threads,
              "train_s": train_s, "add_s": add_s, "code_bytes_per_vector": ivf.code_size + 8,
              "bytes_per_vector": (serialized + precomputed) / n,
              "serialized_bytes_per_vector": serialized / n,
              "imbalance_factor": ivf.invlists.imbalance_factor()}
    for nprobe in [int(x) for x in a.nprobe.split(",")]:
        ivf.nprobe = nprobe
        for rerank in [int(x) for x in a.rerank.split(",")]:
            if rerank == 0:
                engine, idx = "faiss-ivfpq", ivf
            else:
                engine, idx = "faiss-ivfpq-refine", refined
                refined.k_factor = max(1.0, rerank / k)
            secs = float("inf")
            for _ in range(max(1, a.repeat)):
                t = time.perf_counter()
                _, labels = idx.search(queries, k)
                secs = min(secs, time.perf_counter() - t)
            row = {"engine": engine, **common, "nprobe": nprobe, "rerank": rerank,
                   "repeat": max(1, a.repeat), "qps_1_thread": len(queries) / secs,
                   "recall_at_10": recall(labels, gt)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f)


if __name__ == "__main__":
    main()
