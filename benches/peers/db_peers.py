#!/usr/bin/env python3
"""Vector-database peers on the same files as `quiver-bench hnsw`: Chroma and Milvus Lite, both
embedded in this Python process (no server of their own), driven through their client APIs.

Each engine gets a fresh collection in a temporary directory, HNSW with the given m and
ef_construction where the engine honours them; the load is timed (insert, then whatever index
build the engine does before its first search), then one query per call on one thread for each
ef, k = 10, the way an application calls a database (--max-queries N: only the first N, for
engines too slow for the whole set; every row says how many it searched). Prints one JSON line per (engine, ef) with
the keys of `hnsw_peers.py`; with --json OUT, also writes the rows as one JSON array. Distances
are l2. Milvus Lite reports the index type it built ("index_type"): when it is not HNSW the
ef sweep is moot and only one row is printed.
Install: pip install chromadb milvus-lite pymilvus numpy
"""
import argparse, json, os, shutil, sys, tempfile, time
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


def chroma(a, base, queries, gt, efs, tmp, emit):
    import chromadb
    from chromadb.api.client import SharedSystemClient

    path = os.path.join(tmp, "chroma")
    client = chromadb.PersistentClient(path=path)
    n, dim = base.shape
    threads = os.cpu_count()
    col = client.create_collection(
        "bench",
        configuration={"hnsw": {"space": "l2", "ef_construction": a.ef_construction,
                                "max_neighbors": a.m, "ef_search": efs[0], "num_threads": threads}},
    )
    batch = min(client.get_max_batch_size(), 5000)
    t = time.perf_counter()
    for s in range(0, n, batch):
        e = min(n, s + batch)
        col.add(ids=[str(i) for i in range(s, e)], embeddings=base[s:e])
    # The first query waits for anything the engine still builds.
    col.query(query_embeddings=queries[:1], n_results=10, include=[])
    build_s = time.perf_counter() - t
    for ef in efs:
        # A changed ef_search reaches the index only when the collection is loaded again: drop
        # the process's cached system, reopen, and load with one untimed query.
        col.modify(configuration={"hnsw": {"ef_search": ef}})
        SharedSystemClient.clear_system_cache()
        client = chromadb.PersistentClient(path=path)
        col = client.get_collection("bench")
        col.query(query_embeddings=queries[:1], n_results=10, include=[])
        found = []
        t = time.perf_counter()
        for q in queries:
            r = col.query(query_embeddings=q[None, :], n_results=10, include=[])
            found.append([int(x) for x in r["ids"][0]])
        secs = time.perf_counter() - t
        emit({"engine": "chroma", "version": version("chromadb"), "n": n, "dim": dim, "m": a.m,
              "ef_construction": a.ef_construction, "build_threads": threads, "build_s": build_s,
              "ef": ef, "queries": len(queries), "qps_1_thread": len(queries) / secs, "recall_at_10": recall(found, gt)})


def milvus(a, base, queries, gt, efs, tmp, emit):
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(os.path.join(tmp, "milvus.db"))
    n, dim = base.shape
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
    index = client.prepare_index_params()
    index.add_index(field_name="vec", index_type="HNSW", metric_type="L2",
                    params={"M": a.m, "efConstruction": a.ef_construction})
    client.create_collection("bench", schema=schema, index_params=index)
    batch = 5000
    t = time.perf_counter()
    for s in range(0, n, batch):
        e = min(n, s + batch)
        client.insert("bench", [{"id": i, "vec": base[i]} for i in range(s, e)])
    client.flush("bench")
    client.load_collection("bench")
    client.search("bench", data=[queries[0]], limit=10)
    build_s = time.perf_counter() - t
    desc = client.describe_index("bench", "vec")
    index_type = desc.get("index_type", "?")
    for ef in efs if index_type == "HNSW" else efs[:1]:
        found = []
        t = time.perf_counter()
        for q in queries:
            r = client.search("bench", data=[q], limit=10,
                              search_params={"metric_type": "L2", "params": {"ef": ef}})
            found.append([int(h["id"]) for h in r[0]])
        secs = time.perf_counter() - t
        emit({"engine": "milvus-lite", "version": version("milvus-lite"), "index_type": index_type,
              "n": n, "dim": dim, "m": a.m, "ef_construction": a.ef_construction, "build_s": build_s,
              "ef": ef, "queries": len(queries), "qps_1_thread": len(queries) / secs, "recall_at_10": recall(found, gt)})
    client.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--ef", default="16,32,64,128")
    ap.add_argument("--engines", default="chroma,milvus")
    ap.add_argument("--json", help="also write the rows to this file as one JSON array")
    ap.add_argument("--max-queries", type=int, default=0,
                    help="search only the first N queries (0: all); recall is over those")
    a = ap.parse_args()
    base, queries, gt = read_fvecs(a.base), read_fvecs(a.queries), read_ivecs(a.gt)
    if a.max_queries > 0:
        queries, gt = queries[:a.max_queries], gt[:a.max_queries]
    efs = [int(x) for x in a.ef.split(",")]
    rows = []

    def emit(row):
        rows.append(row)
        print(json.dumps(row), flush=True)

    failed = 0
    for name in a.engines.split(","):
        tmp = tempfile.mkdtemp(prefix=f"quiver-peer-{name}-")
        try:
            {"chroma": chroma, "milvus": milvus}[name](a, base, queries, gt, efs, tmp, emit)
        except Exception as e:  # one engine failing must not hide the others' rows
            failed += 1
            print(f"{name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
