//! Routing by content (`match:`, `not:`) end to end: real HTTP handlers and an SQS queue
//! (moto) each receive exactly the events their conditions take; `POST /api/explain` says
//! why, for the running config.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::moto::*;

/// One event of the table below: its webhook id, and the fields that vary.
fn event(id: &str, ty: &str, fields: Value) -> (String, Vec<u8>) {
    let mut body = json!({
        "type": ty,
        "created_at": "2026-05-08T00:00:00.000000Z",
        "cid": format!("x:{id}"),
    });
    for (k, v) in fields.as_object().expect("fields are an object") {
        body[k] = v.clone();
    }
    (id.to_string(), serde_json::to_vec(&body).unwrap())
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_receives_exactly_the_events_its_conditions_take() {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("gaming")).await;
    let mut livestream = Receiver::start().await;
    let mut big = Receiver::start().await;
    let mut no_bots = Receiver::start().await;
    let mut alice = Receiver::start().await;
    let config = aws_config()
        .route(
            HttpRoute::new("livestream", livestream.url())
                .event_types(&["message.*"])
                .matching(json!({ "channel_type": ["livestream", "gaming"] }))
                .excluding(json!({ "message.user.id": "bot-*", "user.role": "admin" })),
        )
        .route(HttpRoute::new("big", big.url()).matching(json!({
            "channel_member_count": { "gte": 1000 },
            "message.attachments": { "exists": true },
        })))
        .route(HttpRoute::new("no-bots", no_bots.url()).excluding(json!({ "user.id": "bot-*" })))
        .route(HttpRoute::new("alice", alice.url()).matching(json!({ "members.user_id": "alice" })))
        .route(
            AwsRoute::sqs("gaming-sqs", &queue)
                .endpoint_url(moto.endpoint())
                .region(REGION)
                .matching(json!({ "channel_type": "gaming" }))
                .excluding(json!({ "user.id": "bot-*" })),
        );
    let daemon = Daemon::start(config).await;

    let attachment = json!([{ "type": "image", "asset_url": "https://x/y.png" }]);
    let events = [
        // A livestream message from a person, small channel, no attachments.
        event(
            "e1",
            "message.new",
            json!({
                "channel_type": "livestream",
                "user": { "id": "u1", "role": "user" },
                "message": { "user": { "id": "u1" }, "attachments": [] },
                "channel_member_count": 10,
            }),
        ),
        // A bot in a gaming channel.
        event(
            "e2",
            "message.new",
            json!({
                "channel_type": "gaming",
                "user": { "id": "bot-3", "role": "user" },
                "message": { "user": { "id": "bot-3" } },
            }),
        ),
        // An admin in a livestream channel.
        event(
            "e3",
            "message.new",
            json!({
                "channel_type": "livestream",
                "user": { "id": "ada", "role": "admin" },
                "message": { "user": { "id": "ada" } },
            }),
        ),
        // A big messaging channel with an attachment, alice a member.
        event(
            "e4",
            "message.new",
            json!({
                "channel_type": "messaging",
                "user": { "id": "u4" },
                "message": { "user": { "id": "u4" }, "attachments": attachment },
                "channel_member_count": 5000,
            "members": [{ "user_id": "bob" }, { "user_id": "alice" }],
            }),
        ),
        // A reaction (not a message type) in a big gaming channel, with an attachment.
        event(
            "e5",
            "reaction.new",
            json!({
                "channel_type": "gaming",
                "user": { "id": "u5" },
                "message": { "user": { "id": "u5" }, "attachments": attachment },
                "channel_member_count": 1000,
            "members": [{ "user_id": "bob" }],
            }),
        ),
        // A member count that is a string: no number, so not big.
        event(
            "e6",
            "message.new",
            json!({
                "channel_type": "gaming",
                "user": { "id": "u6" },
                "message": { "user": { "id": "u6" }, "attachments": attachment },
                "channel_member_count": "5000",
            }),
        ),
        // A type Stream adds later, by a bot, without any of the fields: no route takes it.
        event("e7", "future.event", json!({ "user": { "id": "bot-1" } })),
    ];
    let client = client();
    for (id, body) in &events {
        post_ok(&client, &daemon.url(), id, body).await;
    }

    // Written out by hand from the table above, not computed.
    let expected = [
        ("livestream", ids(&["e1", "e6"])),
        ("big", ids(&["e4", "e5"])),
        ("no-bots", ids(&["e1", "e3", "e4", "e5", "e6"])),
        ("alice", ids(&["e4"])),
        ("gaming-sqs", ids(&["e5", "e6"])),
    ];
    // Routing happens before the 200, so each route's stored count is final now.
    for (route, want) in &expected {
        let routed = metric(
            &daemon,
            "hookfan_events_routed_total",
            &format!("route=\"{route}\""),
        )
        .await
        .unwrap_or(0.0);
        assert_eq!(
            routed as usize,
            want.len(),
            "events stored for route {route}"
        );
    }
    assert_eq!(
        metric(&daemon, "hookfan_events_unrouted_total", "").await,
        Some(2.0),
        "e2 (a bot) and e7 go nowhere"
    );
    // And each destination receives exactly that set.
    for (receiver, (route, want)) in [&mut livestream, &mut big, &mut no_bots, &mut alice]
        .into_iter()
        .zip(&expected)
    {
        let want_ids: HashSet<String> = want.iter().cloned().collect();
        let got: BTreeSet<String> = receiver
            .until_ids(&want_ids, DELIVERY_TIMEOUT, route)
            .await
            .iter()
            .map(|r| r.webhook_id().to_string())
            .collect();
        assert_eq!(&got, want, "route {route} received");
    }
    let received: BTreeSet<String> = aws
        .receive_all(&queue, 2, Duration::from_secs(15))
        .await
        .iter()
        .map(|m| m.webhook_id().to_string())
        .collect();
    assert_eq!(received, expected[4].1, "the SQS queue received");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_explains_an_event_against_the_running_config() {
    let receiver = Receiver::start().await;
    let config = Config::default()
        .route(
            HttpRoute::new("livestream", receiver.url())
                .event_types(&["message.*"])
                .matching(json!({ "channel_type": ["livestream", "gaming"] })),
        )
        .route(HttpRoute::new("pending", receiver.url()).paths(&["/pending/*"]))
        .route(HttpRoute::new("off", receiver.url()).enabled(false));
    let daemon = Daemon::start(config).await;
    let client = client();
    let explain = format!("http://{}/api/explain", daemon.admin);
    let body = br#"{"type":"message.new","channel_type":"messaging","unknown_field":[1,2]}"#;

    let answer = post_webhook(
        &client,
        &format!("{explain}?path=/pending/x"),
        &body[..],
        &[],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let verdicts: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        verdicts,
        json!({
            "event_type": "message.new",
            "path": "/pending/x",
            "routes": [
                { "route": "livestream", "takes": false,
                  "skip": "channel_type is \"messaging\", wanted one of livestream, gaming" },
                { "route": "pending", "takes": true, "skip": null },
                { "route": "off", "takes": false, "skip": "disabled" },
            ]
        })
    );

    // Gzipped, as Stream may send it; no path means /.
    let answer = post_webhook(
        &client,
        &explain,
        gzip(br#"{"type":"message.new","channel_type":"gaming"}"#),
        &[("content-encoding", "gzip")],
    )
    .await;
    let verdicts: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(verdicts["routes"][0]["takes"], json!(true), "{verdicts}");
    assert_eq!(
        verdicts["routes"][1]["skip"],
        json!("path \"/\" not in [/pending/*]")
    );

    // What is not an event is refused, saying why, and changes nothing.
    for (body, query, status, why) in [
        (&b"not json"[..], "", 400, "not JSON"),
        (&b"[1, 2]"[..], "", 400, "not an object"),
        (&b"{}"[..], "?path=relative", 400, "must start with /"),
        (&b"{}"[..], "?route=x", 400, "bad query"),
    ] {
        let answer = post_webhook(&client, &format!("{explain}{query}"), body, &[]).await;
        assert_eq!(answer.status, status, "{query} {answer:?}");
        assert!(answer.body.contains(why), "{answer:?}");
    }
}
