#!/usr/bin/env python3
"""HNSW peers on the same files as `quiver-bench hnsw`: hnswlib, faiss (IndexHNSWFlat) and
usearch, all in-process.

Build on every core (timed), then search on one thread for each ef, k = 10; prints one JSON
line per (engine, ef) with QPS and recall@10 against the .ivecs ground truth; with --json OUT,
also writes the rows as one JSON array. Distances are l2 (on unit vectors, such as the
real-text set, the same order as cosine).
Install: pip install hnswlib faiss-cpu usearch numpy
"""
import argparse, json, os, resource, time
from importlib.metadata import version

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


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--ef", default="10,16,24,32,48,64,96,128,256")
    ap.add_argument("--engines", default="hnswlib,faiss", help="any of hnswlib,faiss,usearch")
    ap.add_argument("--json", help="also write the rows to this file as one JSON array")
    a = ap.parse_args()
    rows = []

    def emit(row):
        rows.append(row)
        print(json.dumps(row), flush=True)

    base, queries, gt = read_fvecs(a.base), read_fvecs(a.queries), read_ivecs(a.gt)
    n, dim = base.shape
    threads = os.cpu_count()
    efs = [int(x) for x in a.ef.split(",")]
    engines = a.engines.split(",")
    if "hnswlib" in engines:
        import hnswlib
        before = rss_mib()
        idx = hnswlib.Index(space="l2", dim=dim)
        idx.init_index(max_elements=n, ef_construction=a.ef_construction, M=a.m, random_seed=100)
        idx.set_num_threads(threads)
        t = time.perf_counter()
        idx.add_items(base, np.arange(n))
        build_s = time.perf_counter() - t
        mem = (rss_mib() - before) * 1024 * 1024
        idx.set_num_threads(1)
        for ef in efs:
            idx.set_ef(ef)
            t = time.perf_counter()
            labels, _ = idx.knn_query(queries, k=10, num_threads=1)
            secs = time.perf_counter() - t
            emit({"engine": "hnswlib", "version": version("hnswlib"), "n": n, "dim": dim, "m": a.m,
                  "ef_construction": a.ef_construction, "build_threads": threads, "build_s": build_s,
                  "memory_bytes_rss_growth": mem, "ef": ef, "qps_1_thread": len(queries) / secs, "recall_at_10": recall(labels, gt)})
        del idx
    if "faiss" in engines:
        import faiss
        before = rss_mib()
        idx = faiss.IndexHNSWFlat(dim, a.m)
        idx.hnsw.efConstruction = a.ef_construction
        faiss.omp_set_num_threads(threads)
        t = time.perf_counter()
        idx.add(base)
        build_s = time.perf_counter() - t
        mem = (rss_mib() - before) * 1024 * 1024
        faiss.omp_set_num_threads(1)
        for ef in efs:
            idx.hnsw.efSearch = ef
            t = time.perf_counter()
            _, labels = idx.search(queries, 10)
            secs = time.perf_counter() - t
            emit({"engine": "faiss", "version": faiss.__version__, "n": n, "dim": dim, "m": a.m,
                  "ef_construction": a.ef_construction, "build_threads": threads, "build_s": build_s,
                  "memory_bytes_rss_growth": mem, "ef": ef, "qps_1_thread": len(queries) / secs, "recall_at_10": recall(labels, gt)})
        del idx
    if "usearch" in engines:
        import usearch
        from usearch.index import Index
        before = rss_mib()
        idx = Index(ndim=dim, metric="l2sq", dtype="f32", connectivity=a.m,
                    expansion_add=a.ef_construction, expansion_search=efs[0])
        t = time.perf_counter()
        idx.add(np.arange(n, dtype=np.uint64), base, threads=threads)
        build_s = time.perf_counter() - t
        mem = (rss_mib() - before) * 1024 * 1024
        for ef in efs:
            idx.expansion_search = ef
            t = time.perf_counter()
            labels = idx.search(queries, 10, threads=1).keys
            secs = time.perf_counter() - t
            emit({"engine": "usearch", "version": usearch.__version__, "n": n, "dim": dim, "m": a.m,
                  "ef_construction": a.ef_construction, "build_threads": threads, "build_s": build_s,
                  "memory_bytes_rss_growth": mem, "ef": ef, "qps_1_thread": len(queries) / secs,
                  "recall_at_10": recall(labels, gt)})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f)


if __name__ == "__main__":
    main()
