//! The `quiver` CLI against a real server: create, import (.fvecs, .npy, .jsonl), search,
//! get, count, delete, describe, drop, and a non-zero exit with the server's message on error.

use quiver_client::vecfile::{write_fvecs, write_npy};
use quiver_tests::{ServerProcess, quiver, quiver_json, temp_dir, vectors};

#[tokio::test]
async fn cli_tour() {
    let dir = temp_dir("cli");
    let server = ServerProcess::start(&dir.join("data"), &[]);
    let a = server.addr.as_str();
    let data: Vec<f32> = vectors(8, 1500, 8).into_iter().flatten().collect();
    let fvecs = dir.join("v.fvecs");
    write_fvecs(&fvecs, &data[..1000 * 8], 8).unwrap();
    let npy = dir.join("v.npy");
    write_npy(&npy, &data[1000 * 8..], 8).unwrap();
    let jsonl = dir.join("v.jsonl");
    std::fs::write(&jsonl, "{\"id\": \"doc-a\", \"vector\": [1,0,0,0,0,0,0,0], \"payload\": {\"kind\": \"special\"}}\n{\"id\": 77777, \"vector\": [0,1,0,0,0,0,0,0]}\n").unwrap();

    let info = quiver_json(
        a,
        &["collection", "create", "t", "--dim", "8", "--metric", "l2"],
    );
    assert_eq!(info["dim"], 8);
    let r = quiver_json(
        a,
        &["import", "t", fvecs.to_str().unwrap(), "--batch", "128"],
    );
    assert_eq!(r["imported"], 1000);
    let r = quiver_json(
        a,
        &["import", "t", npy.to_str().unwrap(), "--start-id", "1000"],
    );
    assert_eq!(r["imported"], 500);
    let r = quiver_json(a, &["import", "t", jsonl.to_str().unwrap()]);
    assert_eq!(r["imported"], 2);
    assert_eq!(quiver_json(a, &["count", "t"])["count"], 1502);

    // The human form prints a progress summary and a table.
    let out = quiver(a, &["import", "t", fvecs.to_str().unwrap(), "--quiet"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("imported 1000 vectors"),
        "{out:?}"
    );

    // Row 1200 of the data is point 1200 (from the .npy file): its own nearest neighbour.
    let q = serde_json::to_string(&data[1200 * 8..1201 * 8]).unwrap();
    let hits = quiver_json(a, &["search", "t", "--vector", &q, "-k", "3"]);
    assert_eq!(hits["hits"][0]["id"], 1200);
    assert!(hits["hits"][0]["score"].as_f64().unwrap() < 1e-6);
    let hits = quiver_json(
        a,
        &[
            "search",
            "t",
            "--vector-file",
            npy.to_str().unwrap(),
            "--row",
            "200",
            "-k",
            "1",
        ],
    );
    assert_eq!(hits["hits"][0]["id"], 1200);
    let hits = quiver_json(
        a,
        &[
            "search",
            "t",
            "--vector",
            &q,
            "--filter",
            r#"{"must":[{"key":"kind","match":"special"}]}"#,
            "--with-payload",
        ],
    );
    assert_eq!(hits["hits"].as_array().unwrap().len(), 1);
    assert_eq!(hits["hits"][0]["id"], "doc-a");
    assert_eq!(hits["hits"][0]["payload"]["kind"], "special");

    let got = quiver_json(a, &["get", "t", "doc-a", "77777", "5", "--with-vector"]);
    assert_eq!(got.as_array().unwrap().len(), 3);
    assert_eq!(got[2]["vector"].as_array().unwrap().len(), 8);
    assert_eq!(
        quiver_json(a, &["delete", "t", "doc-a", "77777"])["deleted"],
        2
    );
    assert_eq!(quiver_json(a, &["count", "t"])["count"], 1500);
    let d = quiver_json(a, &["collection", "describe", "t"]);
    assert_eq!(d["points"], 1500);
    assert_eq!(d["metric"], "l2");

    // Errors: non-zero exit, the server's message on stderr.
    let out = quiver(a, &["search", "nope", "--vector", "[1,2]"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("collection 'nope' does not exist"), "{err}");
    let out = quiver(a, &["search", "t", "--vector", "[1,2]"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dimension 2"),
        "{out:?}"
    );

    assert_eq!(quiver_json(a, &["collection", "drop", "t"])["dropped"], "t");
    assert_eq!(
        quiver_json(a, &["collection", "list"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The documents tour of the README: create with a model, ingest a folder, search by text, ask.
#[tokio::test]
async fn cli_documents_tour() {
    let dir = temp_dir("clidocs");
    let notes = dir.join("notes");
    std::fs::create_dir_all(notes.join("sub")).unwrap();
    std::fs::write(
        notes.join("keys.md"),
        "# API keys\n\nTo rotate the API keys, start the server with a new QUIVER_API_KEY and \
         restart the clients with the new key.\n",
    )
    .unwrap();
    std::fs::write(
        notes.join("sub/backup.txt"),
        "Backups are snapshots: run quiver snapshot create to write one, and snapshot restore \
         to load it into a new collection.",
    )
    .unwrap();
    std::fs::write(notes.join("ignored.bin"), [0u8, 159, 146, 150]).unwrap();
    let server = ServerProcess::start(&dir.join("data"), &[]);
    let a = server.addr.as_str();
    let info = quiver_json(
        a,
        &[
            "collection",
            "create",
            "notes",
            "--model",
            "all-minilm-l6-v2",
        ],
    );
    assert_eq!(info["dim"], 384);
    let done = quiver_json(a, &["ingest", "notes", notes.to_str().unwrap()]);
    assert_eq!(
        (done["documents"].as_u64(), done["chunks"].as_u64()),
        (Some(2), Some(2)),
        "{done}"
    );
    let hits = quiver_json(
        a,
        &[
            "search-text",
            "notes",
            "how do I restore a backup?",
            "-k",
            "1",
        ],
    );
    assert_eq!(
        hits["hits"][0]["payload"]["doc_id"], "sub/backup.txt",
        "{hits}"
    );
    assert_eq!(
        hits["hits"][0]["payload"]["metadata"]["path"],
        "sub/backup.txt"
    );
    let answer = quiver_json(a, &["ask", "notes", "How do I rotate the API keys?"]);
    assert_eq!(answer["citations"][0]["doc_id"], "keys.md", "{answer}");
    assert!(!answer["answer"].as_str().unwrap().is_empty());
    // Documents sent to a plain vector collection: a clear error and a non-zero exit.
    quiver_json(a, &["collection", "create", "plain", "--dim", "4"]);
    let out = quiver(a, &["ingest", "plain", notes.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no embedding model"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
