//! The Stream webhook fixtures (`../shared/fixtures`).

#[allow(unused_imports)]
use super::*;

/// One case of `tests/fixtures/stream-webhooks`.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub name: String,
    pub body: Vec<u8>,
    pub gz: Vec<u8>,
    pub signature: String,
    /// `type` from expected.json ("" when the case has none).
    pub expected_type: String,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stream-webhooks")
}

pub(crate) fn load_fixture(dir: &Path) -> Fixture {
    let read = |f: &str| {
        let p = dir.join(f);
        std::fs::read(&p).unwrap_or_else(|e| panic!("read fixture {}: {e}", p.display()))
    };
    let expected: serde_json::Value =
        serde_json::from_slice(&read("expected.json")).expect("expected.json is JSON");
    Fixture {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        body: read("body.json"),
        gz: read("body.gz"),
        signature: String::from_utf8(read("signature.txt"))
            .expect("signature.txt is text")
            .trim()
            .to_owned(),
        expected_type: expected["type"].as_str().unwrap_or("").to_owned(),
    }
}

pub(crate) fn fixtures_in(dir: &Path) -> Vec<Fixture> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('_'))
        .collect();
    dirs.sort();
    dirs.iter().map(|d| load_fixture(d)).collect()
}

/// Every valid case (the directories not starting with `_`).
pub fn valid_fixtures() -> Vec<Fixture> {
    let all = fixtures_in(&fixtures_dir());
    assert!(
        all.len() >= 10,
        "expected the Stream fixtures in {}, found {}",
        fixtures_dir().display(),
        all.len()
    );
    all
}

/// Every case under `_invalid/`.
pub fn invalid_fixtures() -> Vec<Fixture> {
    fixtures_in(&fixtures_dir().join("_invalid"))
}
