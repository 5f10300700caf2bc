//! The web UI: the pages `/graph` (expression browser: table and graph), `/tsdb-status` and
//! `/status`, and their assets under `/assets/`, all embedded in the binary. The pages are plain
//! HTML with one JavaScript module per concern (web/assets/js) and read only the public HTTP API,
//! with relative URLs so that they work behind a proxy that adds a path prefix. uPlot (the graph) is
//! embedded when the build found it installed by npm (see build.rs); without it `/graph` serves the
//! table view and says how to get the graph.
//!
//! `--web.page-title` replaces "Strata" in the pages' titles and headers.
//!
//! Every answer carries a weak `ETag` (a hash of the content) and `Cache-Control: no-cache`: browsers
//! keep the files and revalidate them with `If-None-Match` (304), so an upgraded binary's UI is
//! picked up on the next load.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

mod uplot {
    include!(concat!(env!("OUT_DIR"), "/uplot.rs"));
}

/// Path of uPlot's script under `/assets/`.
const UPLOT_JS_PATH: &str = "vendor/uPlot.iife.min.js";
/// Path of uPlot's stylesheet under `/assets/`.
const UPLOT_CSS_PATH: &str = "vendor/uPlot.min.css";

/// One embedded file.
struct Asset {
    content_type: &'static str,
    body: Bytes,
    /// Weak entity tag: the same bytes may be sent gzip-compressed or not.
    etag: HeaderValue,
}

impl Asset {
    fn new(content_type: &'static str, body: impl Into<Bytes>) -> Asset {
        let body = body.into();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.as_ref().hash(&mut h);
        let etag = HeaderValue::from_str(&format!("W/\"{:016x}\"", h.finish()))
            .unwrap_or_else(|_| HeaderValue::from_static("W/\"0\""));
        Asset { content_type, body, etag }
    }
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! web_file {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)).as_slice()
    };
}

/// The pages' sources, by URL path.
const PAGES: [(&str, &[u8]); 3] = [
    ("/graph", web_file!("graph.html")),
    ("/tsdb-status", web_file!("tsdb-status.html")),
    ("/status", web_file!("status.html")),
];

/// The name the pages carry unless `--web.page-title` gives another.
const DEFAULT_TITLE: &str = "Strata";

/// The pages with `title` in their `<title>` and header.
fn pages(title: &str) -> Vec<(&'static str, Asset)> {
    let title = escape_html(title);
    PAGES
        .iter()
        .map(|&(path, html)| {
            let html = String::from_utf8_lossy(html)
                .replace(&format!("<title>{DEFAULT_TITLE} · "), &format!("<title>{title} · "))
                .replace(
                    &format!("<span class=\"brand\">{DEFAULT_TITLE}</span>"),
                    &format!("<span class=\"brand\">{title}</span>"),
                );
            (path, Asset::new(HTML, html))
        })
        .collect()
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The files under `/assets/`, by path below it.
static ASSETS: LazyLock<Vec<(&'static str, Asset)>> = LazyLock::new(|| {
    let mut assets = vec![
        ("strata.css", Asset::new(CSS, web_file!("assets/strata.css"))),
        ("js/api.js", Asset::new(JS, web_file!("assets/js/api.js"))),
        ("js/format.js", Asset::new(JS, web_file!("assets/js/format.js"))),
        ("js/promql-words.js", Asset::new(JS, web_file!("assets/js/promql-words.js"))),
        ("js/autocomplete.js", Asset::new(JS, web_file!("assets/js/autocomplete.js"))),
        ("js/table.js", Asset::new(JS, web_file!("assets/js/table.js"))),
        ("js/chart.js", Asset::new(JS, web_file!("assets/js/chart.js"))),
        ("js/graph-page.js", Asset::new(JS, web_file!("assets/js/graph-page.js"))),
        ("js/tsdb-status.js", Asset::new(JS, web_file!("assets/js/tsdb-status.js"))),
        ("js/status.js", Asset::new(JS, web_file!("assets/js/status.js"))),
    ];
    if let Some(js) = uplot::UPLOT_JS {
        assets.push((UPLOT_JS_PATH, Asset::new(JS, js)));
    }
    if let Some(css) = uplot::UPLOT_CSS {
        assets.push((UPLOT_CSS_PATH, Asset::new(CSS, css)));
    }
    assets
});

/// The UI's routes; `title` is `--web.page-title` (None: "Strata").
pub fn router(title: Option<&str>) -> Router {
    let pages = Arc::new(pages(title.unwrap_or(DEFAULT_TITLE)));
    let mut r = Router::new();
    for (path, _) in PAGES {
        r = r.route(path, get(page).with_state(Arc::clone(&pages)));
    }
    r.route("/", get(root)).route("/assets/*path", get(asset))
}

/// `/` leads to the expression browser, as in Prometheus. The target is relative, so it stays
/// under whatever prefix a proxy put in front.
async fn root() -> Response {
    (StatusCode::FOUND, [(header::LOCATION, "graph")]).into_response()
}

async fn page(
    State(pages): State<Arc<Vec<(&'static str, Asset)>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    match pages.iter().find(|(p, _)| *p == uri.path()) {
        Some((_, a)) => serve(a, &headers),
        None => not_found(uri.path()),
    }
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|(p, _)| *p == path) {
        Some((_, a)) => serve(a, &headers),
        None if path == UPLOT_JS_PATH || path == UPLOT_CSS_PATH => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "uPlot is not embedded in this build of Strata: run `npm ci --prefix web` and rebuild\n",
        )
            .into_response(),
        None => not_found(&format!("/assets/{path}")),
    }
}

fn serve(a: &Asset, req: &HeaderMap) -> Response {
    let fresh = req
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || weak_eq(tag.trim(), a.etag.to_str().unwrap_or("")));
    let headers = [
        (header::ETAG, a.etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, [(header::CONTENT_TYPE, a.content_type)], a.body.clone()).into_response()
}

/// `If-None-Match` compares entity tags weakly (RFC 9110 13.1.2).
fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

fn not_found(path: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("404 page not found: {}\n", tsdb::labels::clip(path)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_is_found_and_typed() {
        for (path, a) in pages(DEFAULT_TITLE).iter().chain(ASSETS.iter()) {
            assert!(!a.body.is_empty(), "{path} is empty");
            let ext = path.rsplit('.').next().unwrap_or("");
            let want = match ext {
                "js" => JS,
                "css" => CSS,
                _ => HTML,
            };
            assert_eq!(a.content_type, want, "{path}");
        }
    }

    /// Pages and scripts address the server relatively (`api/v1/…`, `assets/…`), so that they work
    /// wherever a proxy mounts Strata.
    #[test]
    fn urls_are_relative() {
        for (path, a) in pages(DEFAULT_TITLE).iter().chain(ASSETS.iter()).filter(|(p, _)| !p.starts_with("vendor/")) {
            let text = std::str::from_utf8(&a.body).unwrap_or_default();
            for absolute in ["href=\"/", "src=\"/", "'/api", "\"/api", "`/api", "'/assets", "\"/assets"] {
                assert!(!text.contains(absolute), "{path} has an absolute URL ({absolute}…)");
            }
        }
    }

    #[test]
    fn page_title_replaces_the_name_escaped() {
        for (path, a) in pages("Lab <metrics> & co") {
            let text = std::str::from_utf8(&a.body).unwrap_or_default();
            assert!(text.contains("<title>Lab &lt;metrics&gt; &amp; co · "), "{path}");
            assert!(text.contains("<span class=\"brand\">Lab &lt;metrics&gt; &amp; co</span>"), "{path}");
            assert!(!text.contains(">Strata<") && !text.contains("<title>Strata"), "{path}");
        }
        assert_ne!(pages("a")[0].1.etag, pages("b")[0].1.etag);
    }

    #[test]
    fn entity_tags_compare_weakly() {
        assert!(weak_eq("W/\"ab\"", "\"ab\""));
        assert!(weak_eq("\"ab\"", "W/\"ab\""));
        assert!(!weak_eq("\"ab\"", "\"ac\""));
    }
}
