use serde_json::{json, Value};

use super::*;
use crate::config::{Destination, FileDestination, RetryPolicy};

/// A route from its filters; `content` is `(match, not)` as routes.yaml's JSON.
fn route(name: &str, types: &[&str], paths: &[&str], content: (Value, Value)) -> Route {
    let conditions = |block: Value| -> Vec<Condition> {
        block
            .as_object()
            .map(|entries| {
                entries
                    .iter()
                    .map(|(k, v)| Condition::parse(k, v).expect("a valid condition"))
                    .collect()
            })
            .unwrap_or_default()
    };
    Route {
        name: name.into(),
        enabled: true,
        filter: EventFilter::new(types).unwrap(),
        paths: PathFilter::new(paths).unwrap(),
        content: ContentFilter::new(conditions(content.0), conditions(content.1)),
        destination: Destination::File(FileDestination {
            path: "x".into(),
            retry: RetryPolicy::DEFAULT,
            rate_limit: None,
        }),
    }
}

fn none() -> (Value, Value) {
    (Value::Null, Value::Null)
}

fn candidate<'a>(event_type: Option<&'a str>, path: &'a str, body: &'a [u8]) -> Candidate<'a> {
    Candidate {
        event_type,
        path,
        body,
    }
}

#[test]
fn select_takes_enabled_routes_matching_type_path_and_body_in_config_order() {
    let mut off = route("off", &[], &[], none());
    off.enabled = false;
    let routes = [
        route("all", &[], &[], none()),
        route("pending", &[], &["/pending/*"], none()),
        route("messages", &["message.*"], &[], none()),
        off,
        route(
            "livestream",
            &["message.*"],
            &[],
            (
                json!({"channel_type": ["livestream", "gaming"]}),
                Value::Null,
            ),
        ),
    ];
    let needed = needs(&routes);
    let messaging = br#"{"type":"message.new","channel_type":"messaging"}"#;
    let gaming = br#"{"type":"message.new","channel_type":"gaming"}"#;
    assert_eq!(
        select(
            &routes,
            &needed,
            &candidate(Some("message.new"), "/stream", messaging)
        ),
        ["all", "messages"]
    );
    assert_eq!(
        select(
            &routes,
            &needed,
            &candidate(Some("message.new"), "/stream", gaming)
        ),
        ["all", "messages", "livestream"]
    );
    assert_eq!(
        select(
            &routes,
            &needed,
            &candidate(Some("message.new"), "/pending/commit", messaging)
        ),
        ["all", "pending", "messages"]
    );
    assert_eq!(
        select(&routes, &needed, &candidate(None, "/pending/x", b"{}")),
        ["all", "pending"]
    );
}

fn parses() -> usize {
    content::PARSES.with(|n| n.get())
}

#[test]
fn the_body_is_read_once_and_only_for_a_route_with_conditions_that_could_take_it() {
    let routes = [
        route("all", &[], &[], none()),
        route(
            "messages",
            &["message.*"],
            &[],
            (json!({"channel_type": "a"}), Value::Null),
        ),
        route(
            "not-bots",
            &["message.*"],
            &[],
            (Value::Null, json!({"user.id": "bot-*"})),
        ),
    ];
    let needed = needs(&routes);
    let body = br#"{"type":"message.new","channel_type":"a","user":{"id":"u"}}"#;
    let before = parses();
    // No route with conditions takes this type: the body is not read.
    assert_eq!(
        select(
            &routes,
            &needed,
            &candidate(Some("reaction.new"), "/", body)
        ),
        ["all"]
    );
    assert_eq!(parses(), before);
    // Two routes with conditions take it: read once.
    assert_eq!(
        select(&routes, &needed, &candidate(Some("message.new"), "/", body)),
        ["all", "messages", "not-bots"]
    );
    assert_eq!(parses(), before + 1);
    // A config without conditions needs nothing, and never reads a body.
    let plain = [route("all", &[], &[], none())];
    assert!(needs(&plain).is_empty());
    assert_eq!(
        select(&plain, &needs(&plain), &candidate(Some("x"), "/", b"\xff")),
        ["all"]
    );
    assert_eq!(parses(), before + 1);
}

#[test]
fn a_body_that_cannot_be_read_goes_to_no_route_with_conditions() {
    let routes = [
        route("all", &[], &[], none()),
        route("match", &[], &[], (json!({"a": 1}), Value::Null)),
        route("not", &[], &[], (Value::Null, json!({"a": 1}))),
    ];
    // Nested deeper than serde_json reads, on a path a condition needs.
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
    assert_eq!(
        select(
            &routes,
            &needs(&routes),
            &candidate(None, "/", deep.as_bytes())
        ),
        ["all"]
    );
}

#[test]
fn the_pruned_body_decides_as_the_whole_one_on_tricky_json() {
    // (conditions, JSON text as sent); every condition holds on its text.
    let table: &[(Value, &str)] = &[
        // A path and its prefix: the prefix is read whole.
        (
            json!({"message": {"exists": true}, "message.user.id": "u"}),
            r#"{"message":{"user":{"id":"u"}}}"#,
        ),
        // A key written twice: the last one counts, as serde_json reads it.
        (json!({"a.b": 2}), r#"{"a":1,"a":{"b":2}}"#),
        (json!({"a": 1}), r#"{"a":{"b":2},"a":1}"#),
        // Arrays in arrays.
        (json!({"a.b": 1}), r#"{"a":[[{"b":0}],[[{"b":1}]]]}"#),
        // A scalar where the path goes deeper, tested with exists and null.
        (json!({"a.b": {"exists": false}}), r#"{"a":5}"#),
        (
            json!({"a.b": null, "c": 1}),
            r#"{"a":[7,{"b":null}],"c":1}"#,
        ),
        // Escaped keys.
        (json!({"[\"a\\\"b\"].c": 1}), r#"{"a\u0022b":{"c":1}}"#),
    ];
    for (conditions, text) in table {
        let parsed: Vec<Condition> = conditions
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| Condition::parse(k, v).unwrap_or_else(|e| panic!("{k}: {e:?}")))
            .collect();
        let whole: Value = serde_json::from_str(text).unwrap();
        let mut needed = Needed::default();
        ContentFilter::new(parsed.clone(), vec![]).needs(&mut needed);
        let pruned = needed.parse(text.as_bytes()).unwrap();
        for c in &parsed {
            assert!(
                c.holds(&whole),
                "the table's conditions hold: {c:?} on {text}"
            );
            assert!(c.holds(&pruned), "{c:?} on {text} (pruned: {pruned})");
        }
    }
}

/// (condition as routes.yaml's JSON, event body, holds)
fn condition_table() -> Vec<(Value, Value, bool)> {
    vec![
        // Strings: exact, or globs.
        (
            json!({"channel_type": "livestream"}),
            json!({"channel_type": "livestream"}),
            true,
        ),
        (
            json!({"channel_type": "livestream"}),
            json!({"channel_type": "messaging"}),
            false,
        ),
        (
            json!({"message.user.id": "bot-*"}),
            json!({"message": {"user": {"id": "bot-7"}}}),
            true,
        ),
        (
            json!({"message.user.id": "bot-*"}),
            json!({"message": {"user": {"id": "robot"}}}),
            false,
        ),
        // A list: any of.
        (
            json!({"channel_type": ["livestream", "gaming"]}),
            json!({"channel_type": "gaming"}),
            true,
        ),
        (
            json!({"channel_type": ["livestream", "gaming"]}),
            json!({"channel_type": "team"}),
            false,
        ),
        // Values compare as JSON: no conversion between types.
        (json!({"n": 7}), json!({"n": 7}), true),
        (json!({"n": 7}), json!({"n": 7.0}), true),
        (json!({"n": 7}), json!({"n": "7"}), false),
        (json!({"n": "7"}), json!({"n": 7}), false),
        (json!({"flag": true}), json!({"flag": true}), true),
        (json!({"flag": true}), json!({"flag": "true"}), false),
        (json!({"x": null}), json!({"x": null}), true),
        (json!({"x": null}), json!({}), false),
        (
            json!({"big": 9007199254740993u64}),
            json!({"big": 9007199254740993u64}),
            true,
        ),
        (
            json!({"big": 9007199254740993u64}),
            json!({"big": 9007199254740992u64}),
            false,
        ),
        // Absent, or of another type: no match.
        (json!({"channel_type": "livestream"}), json!({}), false),
        (
            json!({"message.user.id": "x"}),
            json!({"message": "x"}),
            false,
        ),
        (
            json!({"message.user.id": "x"}),
            json!({"message": {"user": null}}),
            false,
        ),
        // Arrays: any element, on the way or at the end.
        (
            json!({"members.user_id": "alice"}),
            json!({"members": [{"user_id": "bob"}, {"user_id": "alice"}]}),
            true,
        ),
        (
            json!({"members.user_id": "carol"}),
            json!({"members": [{"user_id": "bob"}, {"user_id": "alice"}]}),
            false,
        ),
        (
            json!({"tags": "urgent"}),
            json!({"tags": ["low", "urgent"]}),
            true,
        ),
        (
            json!({"a.b.c": 1}),
            json!({"a": [{"b": [{"c": 2}, {"c": 1}]}]}),
            true,
        ),
        // Exists: a value other than null; an empty array reaches none.
        (
            json!({"message.attachments": {"exists": true}}),
            json!({"message": {"attachments": [{"type": "image"}]}}),
            true,
        ),
        (
            json!({"message.attachments": {"exists": true}}),
            json!({"message": {"attachments": []}}),
            false,
        ),
        (
            json!({"message.attachments": {"exists": true}}),
            json!({"message": {}}),
            false,
        ),
        (
            json!({"message.parent_id": {"exists": true}}),
            json!({"message": {"parent_id": null}}),
            false,
        ),
        (
            json!({"message.parent_id": {"exists": false}}),
            json!({"message": {}}),
            true,
        ),
        (
            json!({"message.parent_id": {"exists": false}}),
            json!({"message": {"parent_id": "p"}}),
            false,
        ),
        // Numbers.
        (
            json!({"channel.member_count": {"gte": 1000}}),
            json!({"channel": {"member_count": 1000}}),
            true,
        ),
        (
            json!({"channel.member_count": {"gte": 1000}}),
            json!({"channel": {"member_count": 999}}),
            false,
        ),
        (
            json!({"channel.member_count": {"gte": 1000}}),
            json!({"channel": {"member_count": "5000"}}),
            false,
        ),
        (json!({"n": {"gt": 1, "lt": 3}}), json!({"n": 2}), true),
        (json!({"n": {"gt": 1, "lt": 3}}), json!({"n": 3}), false),
        (
            json!({"n": {"gt": 1, "lt": 3}}),
            json!({"n": [0, 5]}),
            false,
        ), // one value passes all
        (
            json!({"n": {"gt": 1, "lt": 3}}),
            json!({"n": [0, 2.5]}),
            true,
        ),
        (json!({"n": {"eq": 2}}), json!({"n": 2.0}), true),
        (json!({"n": {"lte": -1}}), json!({"n": -1}), true),
        (
            json!({"n": {"exists": true, "gte": 0}}),
            json!({"n": 0}),
            true,
        ),
        (
            json!({"n": {"eq": 9007199254740993u64}}),
            json!({"n": 9007199254740992u64}),
            false,
        ),
        (
            json!({"n": {"eq": 9007199254740993u64}}),
            json!({"n": 9007199254740993u64}),
            true,
        ),
        // Quoted keys.
        (
            json!({"custom[\"team.name\"]": "core"}),
            json!({"custom": {"team.name": "core"}}),
            true,
        ),
        (
            json!({"custom[\"team.name\"]": "core"}),
            json!({"custom": {"team": {"name": "core"}}}),
            false,
        ),
        (json!({"[\"a.b\"].c": 1}), json!({"a.b": {"c": 1}}), true),
    ]
}

#[test]
fn conditions_table() {
    for (condition, body, want) in condition_table() {
        let (key, value) = condition.as_object().unwrap().iter().next().unwrap();
        let c = Condition::parse(key, value).unwrap();
        assert_eq!(c.holds(&body), want, "{condition} on {body}");
        // The same over only the parts of the body the condition reads.
        let mut needed = Needed::default();
        ContentFilter::new(vec![c.clone()], vec![]).needs(&mut needed);
        let pruned = needed.parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            c.holds(&pruned),
            want,
            "{condition} on {pruned} (pruned from {body})"
        );
    }
}

#[test]
fn match_needs_every_condition_and_not_excludes_on_any() {
    let filter = |m: Value, n: Value| route("r", &[], &[], (m, n)).content;
    let body = json!({"channel_type": "livestream", "user": {"role": "admin"}});
    let takes = |f: &ContentFilter| f.matches(Some(&body));
    assert!(takes(&filter(
        json!({"channel_type": "livestream", "user.role": "admin"}),
        Value::Null
    )));
    assert!(!takes(&filter(
        json!({"channel_type": "livestream", "user.role": "user"}),
        Value::Null
    )));
    assert!(!takes(&filter(
        Value::Null,
        json!({"user.role": "user", "channel_type": "live*"})
    )));
    assert!(takes(&filter(
        Value::Null,
        json!({"user.role": "user", "missing": "x"})
    )));
    // A body that could not be read: neither a match nor a not can be decided, so no.
    assert!(!filter(json!({"a": 1}), Value::Null).matches(None));
    assert!(!filter(Value::Null, json!({"a": 1})).matches(None));
    assert!(
        filter(Value::Null, Value::Null).matches(None),
        "no conditions"
    );
}

#[test]
fn field_paths_parse_dots_and_quoted_keys() {
    let keys = |source: &str| FieldPath::parse(source).map(|p| p.keys().to_vec());
    assert_eq!(keys("channel_type").unwrap(), ["channel_type"]);
    assert_eq!(keys("message.user.id").unwrap(), ["message", "user", "id"]);
    assert_eq!(keys("custom[\"a.b\"]").unwrap(), ["custom", "a.b"]);
    assert_eq!(keys("custom.[\"a.b\"].c").unwrap(), ["custom", "a.b", "c"]);
    assert_eq!(keys("[\"a.b\"][\"c\"]").unwrap(), ["a.b", "c"]);
    assert_eq!(
        keys(r#"["say \"hi\" \\ bye"]"#).unwrap(),
        [r#"say "hi" \ bye"#]
    );
    for bad in [
        "",
        ".a",
        "a.",
        "a..b",
        "a b",
        "a[b]",
        "a[\"b\"",
        "a[\"b\"]c",
        "a]",
        "a\"b",
        "[\"\\x\"]",
    ] {
        let err = keys(bad).expect_err(bad);
        assert!(err.contains("is not a field path"), "{bad}: {err}");
    }
}

#[test]
fn malformed_conditions_say_where_and_why() {
    let errors = |key: &str, value: Value| Condition::parse(key, &value).unwrap_err();
    let e = errors("a..b", json!(1));
    assert_eq!((e.len(), &e[0].at), (1, &ConditionErrorAt::Key));
    let e = errors("n", json!({"gte": "big"}));
    assert_eq!(e[0].at, ConditionErrorAt::Operator("gte".into()));
    assert!(
        e[0].message.contains("compares numbers"),
        "{}",
        e[0].message
    );
    let e = errors("n", json!({"between": [1, 2]}));
    assert_eq!(e[0].kind, ConditionErrorKind::UnknownOperator);
    assert!(e[0].message.contains("exists, eq, gte, gt, lte, lt"));
    let e = errors("n", json!({"exists": "yes"}));
    assert_eq!(e[0].kind, ConditionErrorKind::Invalid);
    let e = errors("n", json!({"exists": false, "gt": 1}));
    assert_eq!(e[0].kind, ConditionErrorKind::Conflict);
    let e = errors("n", json!([]));
    assert_eq!(e[0].at, ConditionErrorAt::Value);
    let e = errors("n", json!(["a", ["b"], {"c": 1}]));
    assert_eq!(
        e.iter().map(|e| e.at.clone()).collect::<Vec<_>>(),
        [ConditionErrorAt::Item(1), ConditionErrorAt::Item(2)]
    );
    let e = errors("n", json!({}));
    assert_eq!(e[0].at, ConditionErrorAt::Value);
    // Both the key and the value, at once.
    assert_eq!(errors("a.", json!({"nope": 1})).len(), 2);
}

#[test]
fn explain_gives_the_first_reason_of_each_route_in_words() {
    let mut off = route("off", &[], &[], none());
    off.enabled = false;
    let routes = [
        route("everything", &[], &[], none()),
        off,
        route("reactions", &["reaction.*"], &[], none()),
        route("pending", &[], &["/pending/*"], none()),
        route(
            "livestream",
            &[],
            &[],
            (
                json!({"channel_type": ["livestream", "gaming"]}),
                Value::Null,
            ),
        ),
        route(
            "no-bots",
            &[],
            &[],
            (Value::Null, json!({"message.user.id": "bot-*"})),
        ),
        route(
            "big",
            &[],
            &[],
            (json!({"channel.member_count": {"gte": 1000}}), Value::Null),
        ),
        route(
            "tagged",
            &[],
            &[],
            (json!({"members.user_id": "zed"}), Value::Null),
        ),
    ];
    let body = json!({
        "type": "message.new",
        "channel_type": "messaging",
        "message": {"user": {"id": "bot-7"}},
        "members": [{"user_id": "a"}, {"user_id": "b"}, {"user_id": "c"}, {"user_id": "d"}],
    });
    let explained = explain(&routes, Some(&body), "/stream");
    // A wanted string that reads as another JSON value is quoted, so types show.
    let sevens = route("seven", &[], &[], (json!({"n": ["7", "x"]}), Value::Null));
    let skip = explain(&[sevens], Some(&json!({"n": 7})), "/").routes[0]
        .skip
        .clone();
    assert_eq!(skip.unwrap().to_string(), "n is 7, wanted one of \"7\", x");
    // A wanted string that reads as another JSON value is quoted, so types show.
    let sevens = route("seven", &[], &[], (json!({"n": ["7", "x"]}), Value::Null));
    let skip = explain(&[sevens], Some(&json!({"n": 7})), "/").routes[0]
        .skip
        .clone();
    assert_eq!(skip.unwrap().to_string(), "n is 7, wanted one of \"7\", x");
    assert_eq!(explained.event_type.as_deref(), Some("message.new"));
    let words: Vec<(String, String)> = explained
        .routes
        .iter()
        .map(|v| {
            assert_eq!(v.takes, v.skip.is_none());
            (
                v.route.clone(),
                v.skip.as_ref().map_or("takes".into(), |s| s.to_string()),
            )
        })
        .collect();
    let want = [
        ("everything", "takes"),
        ("off", "disabled"),
        (
            "reactions",
            "event type \"message.new\" not in [reaction.*]",
        ),
        ("pending", "path \"/stream\" not in [/pending/*]"),
        (
            "livestream",
            "channel_type is \"messaging\", wanted one of livestream, gaming",
        ),
        (
            "no-bots",
            "message.user.id is \"bot-7\", excluded by not: bot-*",
        ),
        ("big", "channel.member_count is absent, wanted gte 1000"),
        (
            "tagged",
            "members.user_id is \"a\", \"b\", \"c\" (and 1 more), wanted zed",
        ),
    ];
    assert_eq!(
        words,
        want.map(|(r, w)| (r.to_string(), w.to_string())).to_vec()
    );
    // A body without a type.
    let explained = explain(&routes[2..3], Some(&json!({})), "/");
    assert_eq!(
        explained.routes[0].skip.as_ref().unwrap().to_string(),
        "the body has no string type, and the route takes only [reaction.*]"
    );
}

#[test]
fn explain_agrees_with_select() {
    let routes: Vec<Route> = condition_table()
        .into_iter()
        .enumerate()
        .map(|(i, (c, _, _))| route(&format!("r{i}"), &[], &[], (c, Value::Null)))
        .collect();
    let needed = needs(&routes);
    for (_, body, _) in condition_table() {
        let bytes = body.to_string();
        let selected = select(&routes, &needed, &candidate(None, "/", bytes.as_bytes()));
        let explained = explain(&routes, Some(&body), "/");
        let taken: Vec<&str> = explained
            .routes
            .iter()
            .filter(|v| v.takes)
            .map(|v| v.route.as_str())
            .collect();
        assert_eq!(selected, taken, "{body}");
    }
}

#[test]
fn conditions_describe_themselves_in_one_line() {
    let r = route(
        "r",
        &[],
        &[],
        (
            json!({"channel_type": ["livestream", "gaming"], "n": {"gte": 1000}}),
            json!({"message.user.id": "bot-*"}),
        ),
    );
    assert_eq!(
        r.content.describe().unwrap(),
        "match channel_type: one of livestream, gaming, n: gte 1000; not message.user.id: bot-*"
    );
    assert_eq!(route("r", &[], &[], none()).content.describe(), None);
}
