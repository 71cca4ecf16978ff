//! API keys. With keys configured, every gRPC call but health checking must carry one, in
//! `x-api-key` or `authorization: Bearer <key>`: none or a wrong one is UNAUTHENTICATED; the
//! read-only key may call only reading methods, others are PERMISSION_DENIED. Keys are compared
//! in constant time and never logged.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;

/// A secret that prints as `***`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The configured keys.
#[derive(Debug, Clone)]
pub struct Keys {
    /// May call everything.
    pub admin: Secret,
    /// May call reading methods only.
    pub read_only: Option<Secret>,
}

/// Methods the read-only key may call (full gRPC paths).
const READ_METHODS: &[&str] = &[
    "/quiver.v1.Collections/List",
    "/quiver.v1.Collections/Describe",
    "/quiver.v1.Points/Get",
    "/quiver.v1.Points/Search",
    "/quiver.v1.Points/SearchBatch",
    "/quiver.v1.Points/Scroll",
    "/quiver.v1.Points/Count",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
];

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

impl Keys {
    /// Decides one call from its path and headers.
    pub fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<(), Status> {
        if path.starts_with("/grpc.health.v1.Health/") {
            return Ok(());
        }
        let presented = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            })
            .ok_or_else(|| {
                Status::unauthenticated(
                    "an API key is required (x-api-key or authorization: Bearer)",
                )
            })?;
        let is_admin = constant_time_eq(presented.as_bytes(), self.admin.0.as_bytes());
        let is_reader = self
            .read_only
            .as_ref()
            .is_some_and(|k| constant_time_eq(presented.as_bytes(), k.0.as_bytes()));
        if is_admin {
            Ok(())
        } else if is_reader {
            if READ_METHODS.contains(&path) {
                Ok(())
            } else {
                Err(Status::permission_denied(format!(
                    "the read-only API key may not call {path}"
                )))
            }
        } else {
            Err(Status::unauthenticated("the API key is not valid"))
        }
    }
}

/// Tower layer that applies [`Keys::check`] to every request (a no-op without keys).
#[derive(Clone)]
pub struct AuthLayer {
    keys: Option<Arc<Keys>>,
}

impl AuthLayer {
    /// A layer for these keys, or a pass-through.
    pub fn new(keys: Option<Keys>) -> Self {
        AuthLayer {
            keys: keys.map(Arc::new),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the gRPC routes.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    keys: Option<Arc<Keys>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Some(keys) = &self.keys {
            if let Err(status) = keys.check(req.uri().path(), req.headers()) {
                return Box::pin(async move { Ok(status.into_http()) });
            }
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(k: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", k.parse().unwrap());
        h
    }

    #[test]
    fn keys_and_roles() {
        let keys = Keys {
            admin: Secret("admin-key".into()),
            read_only: Some(Secret("reader".into())),
        };
        let search = "/quiver.v1.Points/Search";
        let upsert = "/quiver.v1.Points/Upsert";
        assert!(keys.check(upsert, &headers("admin-key")).is_ok());
        assert_eq!(
            keys.check(upsert, &headers("reader")).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert!(keys.check(search, &headers("reader")).is_ok());
        assert_eq!(
            keys.check(search, &headers("admin-kez"))
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            keys.check(search, &http::HeaderMap::new())
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        let mut bearer = http::HeaderMap::new();
        bearer.insert("authorization", "Bearer admin-key".parse().unwrap());
        assert!(keys.check(upsert, &bearer).is_ok());
        assert!(
            keys.check("/grpc.health.v1.Health/Check", &http::HeaderMap::new())
                .is_ok()
        );
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"same", b"same"));
        assert_eq!(format!("{:?}", keys.admin), "***");
    }
}
