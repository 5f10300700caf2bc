//! CORS on the API, as Prometheus's `--web.cors.origin`: a request to `/api/v1/…` with an `Origin`
//! header gets the allowed methods and headers, and `Access-Control-Allow-Origin` echoing the origin
//! when it matches the regex (anchored at both ends); `OPTIONS` on an API path is answered with 204.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Prometheus's default: every origin.
pub const DEFAULT_ORIGIN: &str = ".*";

/// The compiled `--web.cors.origin`.
#[derive(Debug, Clone)]
pub struct Cors {
    origin: regex::Regex,
}

/// A `--web.cors.origin` that is no regular expression.
#[derive(Debug, thiserror::Error)]
#[error("--web.cors.origin={pattern:?} is not a valid regular expression: {source}")]
pub struct BadOrigin {
    pattern: String,
    source: regex::Error,
}

impl Cors {
    /// Compiles `pattern`, anchored like Prometheus's `^(?:pattern)$`.
    pub fn new(pattern: &str) -> Result<Cors, BadOrigin> {
        let origin = regex::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|source| BadOrigin { pattern: pattern.to_owned(), source })?;
        Ok(Cors { origin })
    }

    /// Whether `origin` is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        self.origin.is_match(origin)
    }
}

/// Middleware adding the CORS headers to API responses and answering preflight requests.
pub async fn layer(State(cors): State<Arc<Cors>>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp =
        if req.method() == Method::OPTIONS { StatusCode::NO_CONTENT.into_response() } else { next.run(req).await };
    let Some(origin) = origin else { return resp };
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Accept, Authorization, Content-Type, Origin"),
    );
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Date"));
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if origin.to_str().is_ok_and(|o| cors.allows(o)) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_matched_whole() {
        let cors = Cors::new(r"https?://foo\.com").unwrap();
        assert!(cors.allows("http://foo.com"));
        assert!(cors.allows("https://foo.com"));
        assert!(!cors.allows("http://foo.com.evil"));
        assert!(!cors.allows("xhttp://foo.com"));
        assert!(Cors::new(DEFAULT_ORIGIN).unwrap().allows("http://anything"));
        assert!(Cors::new("(").is_err());
    }
}
