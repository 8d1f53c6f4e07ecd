//! The verification core's tests: every refusal, and what a genuine webhook yields.

use super::*;
use crate::config::Secret;
use axum::http::HeaderValue;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/stream-webhooks"
);
const SECRET: &str = "test_secret_do_not_use_in_production";

fn apps() -> Vec<App> {
    vec![App::new("key", Secret::new(SECRET))]
}

fn read(case: &str, file: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{case}/{file}"))
        .unwrap_or_else(|e| panic!("fixture {case}/{file}: {e}"))
}

fn headers(signature: &[u8], gzip: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    let sig = String::from_utf8_lossy(signature).trim().to_string();
    h.insert(HEADER_SIGNATURE, HeaderValue::from_str(&sig).unwrap());
    h.insert(HEADER_WEBHOOK_ID, HeaderValue::from_static("id-1"));
    if gzip {
        h.insert("content-encoding", HeaderValue::from_static("gzip"));
    }
    h
}

fn valid_cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(FIXTURES)
        .expect("fixtures directory")
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_'))
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_fixture_verifies_plain_and_gzipped_with_the_test_secret() {
    let cases = valid_cases();
    assert!(cases.len() >= 13, "found only {cases:?}");
    for case in cases {
        let sig = read(&case, "signature.txt");
        let body = read(&case, "body.json");
        for (raw, gzip) in [(body.clone(), false), (read(&case, "body.gz"), true)] {
            let v = verify(&headers(&sig, gzip), raw.into(), &apps(), 1 << 20)
                .unwrap_or_else(|e| panic!("{case} (gzip: {gzip}): {e}"));
            assert_eq!(
                v.body.as_ref(),
                body.as_slice(),
                "{case}: body is the uncompressed bytes"
            );
            assert_eq!(v.event_type(), Some(case.as_str()), "{case}: type");
            assert_eq!(v.webhook_id(), Some("id-1"));
        }
    }
}

#[test]
fn invalid_fixtures_get_their_rejection() {
    let table: &[(&str, &str, bool, Option<StatusCode>)] = &[
        (
            "tampered_body",
            "body.json",
            false,
            Some(StatusCode::UNAUTHORIZED),
        ),
        (
            "bad_compression",
            "body.gz",
            true,
            Some(StatusCode::BAD_REQUEST),
        ),
        (
            "empty_body",
            "body.json",
            false,
            Some(StatusCode::BAD_REQUEST),
        ),
        (
            "malformed_json",
            "body.json",
            false,
            Some(StatusCode::BAD_REQUEST),
        ),
        ("missing_type", "body.json", false, None),
        ("unknown_type", "body.json", false, None),
        ("bad_base64", "body.json", false, None),
        ("bad_sns_envelope", "body.json", false, None),
    ];
    for (case, file, gzip, want) in table {
        let case = format!("_invalid/{case}");
        let got = verify(
            &headers(&read(&case, "signature.txt"), *gzip),
            read(&case, file).into(),
            &apps(),
            1 << 20,
        );
        assert_eq!(
            got.as_ref().err().map(Rejection::status),
            *want,
            "{case}: {got:?}"
        );
    }
}

#[test]
fn unknown_and_missing_types_are_accepted_without_a_type() {
    let case = "_invalid/missing_type";
    let v = verify(
        &headers(&read(case, "signature.txt"), false),
        read(case, "body.json").into(),
        &apps(),
        1 << 20,
    )
    .unwrap();
    assert_eq!(v.event_type(), None);
    let case = "_invalid/unknown_type";
    let v = verify(
        &headers(&read(case, "signature.txt"), false),
        read(case, "body.json").into(),
        &apps(),
        1 << 20,
    )
    .unwrap();
    assert_eq!(v.event_type(), Some("totally.made.up"));
}

#[test]
fn header_values_are_read_trimmed_and_an_empty_webhook_id_is_none() {
    let body = br#"{"type":"message.new"}"#;
    let sig = sign(SECRET.as_bytes(), body);
    let with = |id: &'static str| {
        let mut h = headers(format!("  {sig} ").as_bytes(), false);
        h.insert(HEADER_WEBHOOK_ID, HeaderValue::from_static(id));
        h.insert(HEADER_API_KEY, HeaderValue::from_static(" key "));
        verify(&h, Bytes::from_static(body), &apps(), 1 << 20).unwrap()
    };
    let v = with(" id-7 ");
    assert_eq!(v.webhook_id(), Some("id-7"));
    assert_eq!(v.api_key(), Some("key"));
    assert_eq!(v.signature(), sig);
    assert_eq!(v.event_type(), Some("message.new"));
    assert_eq!(with("").webhook_id(), None);
    assert_eq!(with("   ").webhook_id(), None);
}

#[test]
fn the_type_and_created_at_are_read_as_the_body_has_them_wherever_they_are() {
    let verified = |body: &str| {
        let sig = sign(SECRET.as_bytes(), body.as_bytes());
        verify(
            &headers(sig.as_bytes(), false),
            body.to_string().into(),
            &apps(),
            1 << 20,
        )
        .unwrap()
    };
    let at = |millis: u64| Some(UNIX_EPOCH + Duration::from_millis(millis));
    let cases: &[(&str, Option<&str>, Option<SystemTime>)] = &[
        (
            r#"{"type":"message.new","created_at":"2026-05-08T00:00:00Z"}"#,
            Some("message.new"),
            at(1_778_198_400_000),
        ),
        (
            r#" { "created_at" : 1778198400000000000 , "x": {"type": 1}, "type" : "a\u002eb" }"#,
            Some("a.b"),
            at(1_778_198_400_000),
        ),
        (r#"{"type":7,"created_at":"yesterday"}"#, None, None),
        (r#"{"type":null,"created_at":null}"#, None, None),
        (r#"{"created_at":{"seconds":1}}"#, None, None),
    ];
    for (body, event_type, created_at) in cases {
        let v = verified(body);
        assert_eq!(v.event_type(), *event_type, "{body}");
        assert_eq!(v.created_at(), *created_at, "{body}");
    }
    // What serde_json cannot read as a value is refused in these two fields (elsewhere
    // in the body it is carried as it is).
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for field in ["type", "created_at"] {
        for value in ["1e999", deep.as_str()] {
            let body = format!(r#"{{"{field}":{value}}}"#);
            let sig = sign(SECRET.as_bytes(), body.as_bytes());
            let got = verify(
                &headers(sig.as_bytes(), false),
                body.into(),
                &apps(),
                1 << 20,
            );
            assert!(
                matches!(got, Err(Rejection::BadJson(_))),
                "{field}: {got:?}"
            );
        }
    }
}

#[test]
fn upper_case_hex_signatures_are_accepted() {
    let body = br#"{"type":"message.new"}"#;
    let sig = sign(SECRET.as_bytes(), body).to_uppercase();
    assert!(verify(
        &headers(sig.as_bytes(), false),
        Bytes::from_static(body),
        &apps(),
        1024
    )
    .is_ok());
}

#[test]
fn the_secret_is_picked_by_x_api_key() {
    let apps = vec![
        App::new("a", Secret::new("secret-a")),
        App::new("b", Secret::new("secret-b")),
    ];
    let body = Bytes::from_static(br#"{"type":"x"}"#);
    for (key, secret, ok) in [
        ("a", "secret-a", true),
        ("b", "secret-b", true),
        ("a", "secret-b", false),
    ] {
        let mut h = headers(sign(secret.as_bytes(), &body).as_bytes(), false);
        h.insert(HEADER_API_KEY, HeaderValue::from_static(key));
        let got = verify(&h, body.clone(), &apps, 1024);
        assert_eq!(got.is_ok(), ok, "key {key} signed with {secret}: {got:?}");
    }
    // Several apps and no X-Api-Key: nothing to pick by.
    let h = headers(sign(b"secret-a", &body).as_bytes(), false);
    assert!(matches!(
        verify(&h, body, &apps, 1024),
        Err(Rejection::UnknownApp(_))
    ));
}

#[test]
fn an_unknown_api_key_is_answered_503_so_stream_retries_and_a_known_key_with_a_bad_signature_stays_401(
) {
    let body = Bytes::from_static(br#"{"type":"message.new"}"#);
    let signed = sign(b"a-new-secret", &body);
    let mut h = headers(signed.as_bytes(), false);
    h.insert(HEADER_API_KEY, HeaderValue::from_static("rotated-in-key"));
    let unknown = verify(&h, body.clone(), &apps(), 1024).unwrap_err();
    assert_eq!(
        unknown,
        Rejection::UnknownApiKey {
            key: "rotated-in-key".into()
        }
    );
    assert_eq!(unknown.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unknown.outcome(), Outcome::UnknownApiKey);
    assert!(unknown.to_string().contains("add it to apps:"), "{unknown}");

    h.insert(HEADER_API_KEY, HeaderValue::from_static("key"));
    let known = verify(&h, body, &apps(), 1024).unwrap_err();
    assert_eq!(known.status(), StatusCode::UNAUTHORIZED, "{known:?}");
}

#[test]
fn a_rejection_answers_with_its_status_and_its_reason_and_a_key_to_add_with_a_retry() {
    let body = |response: Response| {
        let bytes = body_bytes(response);
        String::from_utf8(bytes).unwrap()
    };
    let too_old = Rejection::TooOld {
        age: Duration::from_secs(7200),
        max_age: Duration::from_secs(3600),
    };
    let answer = too_old.clone().into_response();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(answer.headers().get(header::RETRY_AFTER).is_none());
    assert_eq!(body(answer), format!("{too_old}\n"));

    let unknown = Rejection::UnknownApiKey {
        key: "rotated-in-key".into(),
    };
    let answer = unknown.into_response();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers()[header::RETRY_AFTER], "1");
    assert_eq!(body(answer), "unknown X-Api-Key; retry\n");
}

/// The whole body of a response built in memory.
fn body_bytes(response: Response) -> Vec<u8> {
    use http_body_util::BodyExt;
    let collected = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(response.into_body().collect())
        .unwrap();
    collected.to_bytes().to_vec()
}

#[test]
fn an_unknown_api_key_is_kept_short_for_the_log() {
    let body = Bytes::from_static(br#"{"type":"x"}"#);
    let mut h = headers(sign(SECRET.as_bytes(), &body).as_bytes(), false);
    let long = "k".repeat(500);
    h.insert(HEADER_API_KEY, HeaderValue::from_str(&long).unwrap());
    match verify(&h, body, &apps(), 1024) {
        Err(Rejection::UnknownApiKey { key }) => assert_eq!(key.len(), MAX_LOGGED_KEY),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_signatures_are_unauthorized() {
    let body = Bytes::from_static(br#"{"type":"x"}"#);
    let good = sign(SECRET.as_bytes(), &body);
    for sig in [
        "",
        "zz",
        &good[..62],
        &format!("{good}00"),
        &good.replace(|c: char| c.is_ascii_digit(), "g"),
    ] {
        let got = verify(&headers(sig.as_bytes(), false), body.clone(), &apps(), 1024);
        assert_eq!(
            got.unwrap_err().status(),
            StatusCode::UNAUTHORIZED,
            "signature {sig:?}"
        );
    }
    let mut h = headers(good.as_bytes(), false);
    h.remove(HEADER_SIGNATURE);
    assert_eq!(
        verify(&h, body, &apps(), 1024).unwrap_err().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn a_gzip_bomb_is_refused_without_inflating_it() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &vec![b' '; 10 << 20]).unwrap();
    let bomb = enc.finish().unwrap();
    let got = decode(&HeaderMap::new(), bomb.into(), 4096);
    assert_eq!(
        got,
        Err(Rejection::TooLarge {
            limit: 4096,
            decompressed: true
        })
    );
}

#[test]
fn non_object_json_is_a_bad_request() {
    for body in [
        &b"[1,2]"[..],
        b"\"str\"",
        b"{\"type\":\"x\"} trailing",
        b"   ",
        // Found by fuzz/ingest_verify: invalid UTF-8 in a field that is not `type` was
        // accepted, then failed in the file and SQS/SNS sinks after Stream had its 200.
        b"{\"type\":\"x\",\"other\":\"clie\xaft\"}",
        b"{\"type\":\"x\xff\"}",
    ] {
        let sig = sign(SECRET.as_bytes(), body);
        let got = verify(
            &headers(sig.as_bytes(), false),
            Bytes::copy_from_slice(body),
            &apps(),
            1024,
        );
        assert_eq!(
            got.unwrap_err().status(),
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn created_at_is_read_from_rfc3339_or_epoch_numbers() {
    let at = |v: serde_json::Value| {
        parse_created_at(&v).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_millis())
    };
    let expected = Some(1_778_198_400_000u128);
    assert_eq!(at(serde_json::json!("2026-05-08T00:00:00Z")), expected);
    assert_eq!(
        at(serde_json::json!("2026-05-08T02:00:00.000+02:00")),
        expected
    );
    assert_eq!(
        at(serde_json::json!(1_778_198_400_000_000_000u64)),
        expected,
        "ns"
    );
    assert_eq!(
        at(serde_json::json!(1_778_198_400_000_000u64)),
        expected,
        "us"
    );
    assert_eq!(at(serde_json::json!(1_778_198_400_000u64)), expected, "ms");
    assert_eq!(at(serde_json::json!(1_778_198_400u64)), expected, "s");
    for unreadable in [
        serde_json::json!("yesterday"),
        serde_json::json!(-5),
        serde_json::json!(1.5),
        serde_json::json!(null),
        serde_json::json!({"at": 1}),
    ] {
        assert_eq!(at(unreadable.clone()), None, "{unreadable}");
    }
}

#[test]
fn only_events_older_than_max_event_age_are_refused() {
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let max = Duration::from_secs(600);
    let ago = |s: u64| Some(now - Duration::from_secs(s));
    assert_eq!(
        check_age(ago(600), max, now),
        Ok(()),
        "exactly at the limit"
    );
    assert_eq!(
        check_age(ago(601), max, now),
        Err(Rejection::TooOld {
            age: Duration::from_secs(601),
            max_age: max
        })
    );
    assert_eq!(check_age(None, max, now), Ok(()), "nothing to judge by");
    assert_eq!(
        check_age(Some(now + Duration::from_secs(3600)), max, now),
        Ok(()),
        "a sender clock ahead of ours"
    );
    assert_eq!(
        Rejection::TooOld {
            age: max,
            max_age: max
        }
        .status(),
        StatusCode::UNAUTHORIZED
    );
}
