//! The web console: static HTML, CSS and JavaScript compiled into the binary (from
//! `assets/console/`), served at `/` on the admin listener.
//!
//! Owns: the assets and the headers they are served with (Content-Type, a strict
//! Content-Security-Policy, `nosniff`, an ETag with `no-cache`). Never: data. The assets are
//! served without `admin_token` because they hold nothing but code; everything the console
//! shows or does goes through the token-protected `/api/...`, the same API the CLI uses.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// Scripts, styles, images and fetches from this origin only; no inline code, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// One compiled-in file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/console/",
                $file
            )),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!(
        "/console/console.css",
        "console.css",
        "text/css; charset=utf-8"
    ),
    asset!(
        "/console/app.js",
        "app.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/console/api.js",
        "api.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/console/charts.js",
        "charts.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/console/dom.js",
        "dom.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/console/deadletters.js",
        "deadletters.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/console/pages.js",
        "pages.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("/console/favicon.svg", "favicon.svg", "image/svg+xml"),
];

/// Each asset's strong ETag: a hash of its bytes, so a new binary's assets are fetched anew
/// and an unchanged one is answered 304.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let hash = Sha256::digest(a.body);
            HeaderValue::from_str(&format!("\"{}\"", hex::encode(&hash[..12])))
                .expect("hex is a valid header value")
        })
        .collect()
});

/// The console's routes, to merge into the admin router (no state, no token).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for (index, asset) in ASSETS.iter().enumerate() {
        router = router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve(index, &headers) }),
        );
    }
    router
}

fn serve(index: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = ETAGS[index].clone();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|given| given.as_bytes() == etag.as_bytes());
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // Revalidated on every load (cheap: 304), so a new binary's console is used at once.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, asset.body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn fetch(path: &str, etag: Option<&HeaderValue>) -> Response {
        let mut request = Request::get(path);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        router::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_type_a_strict_policy_and_an_etag() {
        for asset in ASSETS {
            let answer = fetch(asset.path, None).await;
            assert_eq!(answer.status(), StatusCode::OK, "{}", asset.path);
            let h = answer.headers();
            assert_eq!(h[header::CONTENT_TYPE], asset.content_type);
            assert!(h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'"));
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::CACHE_CONTROL], "no-cache");
            let etag = h[header::ETAG].clone();
            let again = fetch(asset.path, Some(&etag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{}", asset.path);
        }
    }

    #[test]
    fn the_assets_load_nothing_from_another_origin_and_run_no_inline_code() {
        for asset in ASSETS {
            // The SVG namespace is a name, not a request.
            let text =
                String::from_utf8_lossy(asset.body).replace("http://www.w3.org/2000/svg", "");
            for banned in ["http://", "https://", "//cdn", "eval(", "new Function"] {
                assert!(!text.contains(banned), "{} contains {banned}", asset.path);
            }
            if asset.path == "/" {
                assert!(!text.contains("<script>"), "inline script in index.html");
                assert!(!text.contains("style="), "inline style in index.html");
            }
        }
    }

    #[test]
    fn every_module_the_page_imports_is_served() {
        let paths: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let module = line
                    .split('"')
                    .nth(1)
                    .unwrap_or_else(|| panic!("{line}"))
                    .trim_start_matches("./");
                let path = format!("/console/{module}");
                assert!(paths.contains(&path.as_str()), "{path} not served");
            }
        }
    }
}
