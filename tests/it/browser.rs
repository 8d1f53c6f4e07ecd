//! Headless Chromium driven through the WebDriver protocol (W3C), spoken over HTTP to
//! Debian's `chromedriver` with reqwest: no browser-automation crate, no downloaded browser.
//!
//! Missing `chromium` or `chromedriver` are installed by the test setup (as root, with apt-get;
//! otherwise the test fails, never skips).
//!
//! Waits poll the DOM with a deadline ([`WAIT`]); nothing sleeps a fixed time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::harness::eventually;
use tokio::time::Instant;

/// How long a wait for the page polls before failing.
pub const WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// W3C's key for an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One chromedriver process and one browser session on it; both end on drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    http: reqwest::Client,
    /// The browser's fresh profile (`--user-data-dir`); removed after the browser is gone.
    _profile: tempfile::TempDir,
}

/// Where screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots")
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session.
    pub async fn start() -> Browser {
        static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        INSTALLED.get_or_init(|| {
            crate::harness::ensure_debian_packages(
                "the console's browser tests",
                &[(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")],
            )
        });
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
            probe.local_addr().expect("probe addr").port()
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("reqwest client");
        let profile = tempfile::Builder::new()
            .prefix("hookfan-chromium-")
            .tempdir()
            .expect("profile dir");
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            http,
            _profile: profile,
        };
        eventually(WAIT, &format!("chromedriver answers on {addr}"), || async {
            browser
                .http
                .get(format!("http://{addr}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        let profile_arg = format!("--user-data-dir={}", browser._profile.path().display());
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--no-proxy-server",
            "--window-size=1440,1000",
            profile_arg.as_str(),
        ];
        let created = browser
            .raw(
                reqwest::Method::POST,
                "/session",
                Some(json!({ "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                }}})),
            )
            .await
            .unwrap_or_else(|e| panic!("start a Chromium session: {e}"));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_string();
        browser
    }

    /// One WebDriver command; Err with the driver's error for a WebDriver error.
    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("http://{}{path}", self.addr);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = answer.status();
        let value: Value = answer.json().await.map_err(|e| format!("{url}: {e}"))?;
        if status.is_success() {
            Ok(value["value"].clone())
        } else {
            Err(format!("{url}: {status}: {}", value["value"]))
        }
    }

    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
        .unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// The text of the first element matching `css`, if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            json!([css]),
        )
        .await
        .as_str()
        .map(str::to_string)
    }

    /// Waits until the first element matching `css` exists and its text satisfies `ok`;
    /// returns the text.
    pub async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text(css).await;
            if let Some(text) = text.as_deref().filter(|t| ok(t)) {
                return text.to_string();
            }
            if Instant::now() >= deadline {
                let page = self.text("body").await.unwrap_or_default();
                panic!("{what}: {css} shows {text:?} after {WAIT:?}; the page says:\n{page}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until an element matches `css`.
    pub async fn wait_for(&self, css: &str, what: &str) {
        self.wait_text(css, what, |_| true).await;
    }

    /// Waits until `script` (a function body) returns true.
    pub async fn wait_until(&self, script: &str, what: &str) {
        eventually(WAIT, what, || async {
            self.script(script, json!([])).await == Value::Bool(true)
        })
        .await;
    }

    /// Waits until nothing matches `css`.
    pub async fn wait_gone(&self, css: &str, what: &str) {
        let what = format!("{what}: {css} gone");
        eventually(WAIT, &what, || async { self.text(css).await.is_none() }).await;
    }

    async fn element(&self, css: &str) -> Result<String, String> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        found[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no element reference in {found}"))
    }

    /// Clicks the element matching `css` as a user would (the driver checks it is visible
    /// and not covered), waiting for it to be there and clickable.
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let clicked = match self.element(css).await {
                Ok(id) => {
                    self.command(
                        reqwest::Method::POST,
                        &format!("/element/{id}/click"),
                        Some(json!({})),
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match clicked {
                Ok(_) => return,
                Err(e) if Instant::now() >= deadline => panic!("click {css}: {e}"),
                // Not there yet, replaced by a refresh, or disabled: look again.
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Replaces what the field matching `css` holds with `text`, typed key by key.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self
            .element(css)
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"));
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await
        .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        self.send_keys(&id, text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Focuses the element matching `css` and presses `key` there, as a keyboard user does
    /// (`"\u{E007}"` is Enter, `"\u{E00C}"` Escape).
    pub async fn press(&self, css: &str, key: &str) {
        let id = self
            .element(css)
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"));
        self.send_keys(&id, key)
            .await
            .unwrap_or_else(|e| panic!("press {key:?} on {css}: {e}"));
    }

    /// WebDriver's "Element Send Keys": `text` typed into element `id`.
    async fn send_keys(&self, id: &str, text: &str) -> Result<Value, String> {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await
    }

    /// Writes a PNG of the viewport to `target/console-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 PNG"))
            .expect("decode the screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create the screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        eprintln!("[browser] screenshot {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session (chromedriver closes Chromium), synchronously since Drop cannot
        // await, then stops chromedriver.
        if !self.session.is_empty() {
            if let Ok(mut stream) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    stream,
                    "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.session, self.addr
                );
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
