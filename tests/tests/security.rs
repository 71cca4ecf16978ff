//! API keys (admin and read-only) and TLS, against a real server on loopback.

use quiver_client::{Client, ClientError, ConnectOptions, num_id, pb};
use quiver_tests::{ServerProcess, temp_dir};
use tonic::Code;

fn code(e: ClientError) -> Code {
    match e {
        ClientError::Status(s) => s.code(),
        other => panic!("expected a status, got {other}"),
    }
}

async fn with_key(addr: &str, key: Option<&str>) -> Client {
    let options = ConnectOptions {
        api_key: key.map(str::to_string),
        ..Default::default()
    };
    Client::connect_with(addr, &options).await.unwrap()
}

#[tokio::test]
async fn api_keys_gate_every_call() {
    let dir = temp_dir("keys");
    let server = ServerProcess::start(
        &dir,
        &[
            "--api-key",
            "admin-secret-1",
            "--read-only-api-key",
            "reader-secret-2",
        ],
    );
    let a = server.addr.as_str();

    let mut none = with_key(a, None).await;
    assert_eq!(
        code(
            none.collections
                .list(pb::ListCollectionsRequest {})
                .await
                .map_err(ClientError::from)
                .unwrap_err()
        ),
        Code::Unauthenticated
    );
    let mut wrong = with_key(a, Some("admin-secret-2")).await;
    assert_eq!(
        code(wrong.describe("x").await.unwrap_err()),
        Code::Unauthenticated
    );

    let mut admin = with_key(a, Some("admin-secret-1")).await;
    admin
        .create_collection("k", 2, pb::Metric::L2)
        .await
        .unwrap();
    admin
        .upsert(
            "k",
            vec![pb::Point {
                id: Some(num_id(1)),
                vector: vec![1.0, 2.0],
                payload_json: String::new(),
            }],
        )
        .await
        .unwrap();

    let mut reader = with_key(a, Some("reader-secret-2")).await;
    let hits = reader
        .search(pb::SearchRequest {
            collection: "k".into(),
            vector: vec![1.0, 2.0],
            k: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(reader.count("k", None).await.unwrap(), 1);
    let denied = reader
        .upsert(
            "k",
            vec![pb::Point {
                id: Some(num_id(2)),
                vector: vec![1.0, 2.0],
                payload_json: String::new(),
            }],
        )
        .await;
    assert_eq!(code(denied.unwrap_err()), Code::PermissionDenied);
    let denied = reader
        .collections
        .drop(pb::DropCollectionRequest { name: "k".into() })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        admin.count("k", None).await.unwrap(),
        1,
        "the denied write changed nothing"
    );

    // Health checking needs no key, for load balancers.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{a}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();

    let logs = server.logs();
    assert!(
        !logs.contains("admin-secret-1") && !logs.contains("reader-secret-2"),
        "a key was logged"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn tls_on_loopback_with_a_generated_certificate() {
    let dir = temp_dir("tls");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let data = dir.join("data");
    let server = ServerProcess::start(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );

    let options = ConnectOptions {
        tls_ca: Some(ck.cert.pem().into_bytes()),
        tls_domain: Some("localhost".into()),
        ..Default::default()
    };
    let mut c = Client::connect_with(&server.addr, &options).await.unwrap();
    c.create_collection("s", 3, pb::Metric::Cosine)
        .await
        .unwrap();
    c.upsert(
        "s",
        vec![pb::Point {
            id: Some(num_id(7)),
            vector: vec![0.0, 1.0, 0.0],
            payload_json: String::new(),
        }],
    )
    .await
    .unwrap();
    let hits = c
        .search(pb::SearchRequest {
            collection: "s".into(),
            vector: vec![0.0, 1.0, 0.1],
            k: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(hits[0].id, Some(num_id(7)));

    // Plain text is refused: the connection or the first call fails.
    let plain = match Client::connect(&server.addr).await {
        Ok(mut p) => p.describe("s").await.is_err(),
        Err(_) => true,
    };
    assert!(plain, "a plain-text client was served by a TLS server");
    // A client that trusts another authority is refused.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let options = ConnectOptions {
        tls_ca: Some(other.cert.pem().into_bytes()),
        tls_domain: Some("localhost".into()),
        ..Default::default()
    };
    let refused = match Client::connect_with(&server.addr, &options).await {
        Ok(mut p) => p.describe("s").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client with the wrong CA connected");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
