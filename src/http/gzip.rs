//! Gzip-compressed responses for clients that send `Accept-Encoding: gzip` (Prometheus compresses
//! its API answers and `/metrics` the same way). Bodies are whole strings by the time they leave a
//! handler, so the response body is collected and compressed at once; compression of large bodies
//! runs on the blocking pool. Streamed answers (remote read's framed chunks) and answers that are
//! already encoded (remote read's snappy) are passed on untouched.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;

/// Bodies shorter than this are sent as they are: gzip's header and trailer would outweigh the gain.
const MIN_BYTES: usize = 256;

/// Bodies at least this large are compressed on the blocking pool instead of an async worker.
const BLOCKING_FROM_BYTES: usize = 64 << 10;

/// Middleware: compresses the response when the request accepts gzip and the response is not
/// already encoded.
pub async fn compress(req: Request, next: Next) -> Response {
    let wants_gzip = accepts_gzip(req.headers());
    let resp = next.run(req).await;
    if !wants_gzip || resp.headers().contains_key(header::CONTENT_ENCODING) || is_stream(resp.headers()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a response body to compress it");
            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "cannot read the response body").into_response();
        }
    };
    parts.headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    if bytes.len() < MIN_BYTES {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let compressed = if bytes.len() >= BLOCKING_FROM_BYTES {
        let b = bytes.clone();
        tokio::task::spawn_blocking(move || gzip(&b)).await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    } else {
        gzip(&bytes)
    };
    match compressed {
        Ok(z) => {
            parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(z))
        }
        Err(e) => {
            tracing::warn!(error = %e, "gzip compression failed; answering uncompressed");
            Response::from_parts(parts, Body::from(bytes))
        }
    }
}

/// A streamed answer (remote read's framed chunks) is sent as it is produced, never collected.
fn is_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-streamed-protobuf"))
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4), Compression::fast());
    enc.write_all(data)?;
    enc.finish()
}

/// Whether `Accept-Encoding` lists `gzip` (or `*`) with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            if !coding.eq_ignore_ascii_case("gzip") && coding != "*" {
                return false;
            }
            let q = parts
                .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .map_or(Some(1.0), |q| q.parse::<f64>().ok());
            q.is_some_and(|q| q > 0.0)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(v: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        accepts_gzip(&h)
    }

    #[test]
    fn accept_encoding_is_read_with_qualities() {
        assert!(accepts("gzip"));
        assert!(accepts("deflate, gzip;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("br, deflate"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
