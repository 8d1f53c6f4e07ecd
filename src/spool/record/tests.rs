use super::*;
use proptest::prelude::*;

fn event(body: &[u8]) -> Record<'_> {
    Record::Event(EventRecord {
        webhook_id: Some("0f8fad5b-d9cb-469f-a165-70867728950e"),
        received_at_ms: 1_778_198_400_000,
        api_key: Some("key"),
        signature: "ab",
        event_type: Some("message.new"),
        path: Some("/webhooks?x=1"),
        trace: None,
        body,
        routes: vec![
            RouteDue::new(0, 1_778_198_400_000),
            RouteDue {
                route: 7,
                due_ms: 1_778_198_400_001,
                group: u64::MAX,
            },
        ]
        .into(),
    })
}

#[test]
fn every_kind_round_trips() {
    let body = b"{\"type\":\"message.new\"}\xff".to_vec();
    let records = [
        Record::Route { id: 3, name: "sqs" },
        event(&body),
        Record::Delivered { route: 1, seq: 2 },
        Record::Retry {
            route: 1,
            seq: u64::MAX,
            due_ms: 3,
            attempts: u32::MAX,
            error: "503",
        },
        Record::Hold {
            route: 1,
            seq: 2,
            not_before_ms: 3,
            attempts: 4,
            error: "",
        },
        Record::Dead {
            route: 1,
            seq: 2,
            attempts: 3,
            error: "400 Bad Request",
            dead_at_ms: 4,
        },
        Record::Replay {
            route: 1,
            seq: 2,
            due_ms: 3,
        },
        Record::Drop { route: 1, seq: 2 },
        Record::DropPending { route: u32::MAX },
        Record::ExpireIds {
            before_ms: 5,
            limit: 64,
        },
        Record::Copy {
            seq: 300,
            event: match event(&body) {
                Record::Event(e) => e,
                _ => unreachable!(),
            },
        },
    ];
    for r in &records {
        assert_eq!(&Record::decode(&r.encode()).unwrap(), r);
    }
}

#[test]
fn the_hand_written_records_of_the_fuzz_corpus_decode() {
    // fuzz/make-corpus.sh writes these with printf (after the mode byte).
    let event = b"\x02\x01\x02id\x07\x00\x03sig\x01\x0bmessage.new\x01\x09/webhooks\x02\x00\x07\x01\x08\x02{}";
    let Ok(Record::Event(e)) = Record::decode(event) else {
        panic!("the event seed does not decode");
    };
    assert_eq!(
        (e.webhook_id, e.path, e.body),
        (Some("id"), Some("/webhooks"), &b"{}"[..])
    );
    assert_eq!(
        e.routes.iter().collect::<Vec<_>>(),
        vec![RouteDue::new(0, 7), RouteDue::new(1, 8)]
    );
    assert_eq!(
        Record::decode(b"\x03\x01\xac\x02"),
        Ok(Record::Delivered { route: 1, seq: 300 })
    );
    assert_eq!(
        Record::decode(b"\x01\x03\x03sqs"),
        Ok(Record::Route { id: 3, name: "sqs" })
    );
    let traced = b"\x0d\x02\x01\x02id\x07\x00\x03sig\x01\x0bmessage.new\x01\x09/webhooks\
        0af7651916cd43ddb7ad6b71\x01\x04ro=1\x02\x00\x07\x01\x08\x02{}";
    let Ok(Record::Event(e)) = Record::decode(traced) else {
        panic!("the traced event seed does not decode");
    };
    assert_eq!(
        e.trace,
        Some(TraceRef {
            trace_id: *b"0af7651916cd43dd",
            span_id: *b"b7ad6b71",
            flags: 1,
            state: "ro=1"
        })
    );
    assert_eq!(e.body, b"{}");
}

#[test]
fn a_copy_holds_the_event_record_whole_after_its_prefix() {
    let body = b"{}".to_vec();
    let Record::Event(e) = event(&body) else {
        unreachable!()
    };
    for seq in [1, 127, 128, u64::MAX] {
        let bytes = Record::Copy {
            seq,
            event: e.clone(),
        }
        .encode();
        let inner = &bytes[Record::copy_prefix_len(seq)..];
        assert_eq!(Record::decode(inner), Ok(Record::Event(e.clone())), "{seq}");
    }
    // A copy of anything but an event is refused.
    assert_eq!(
        Record::decode(b"\x0a\x01\x03\x01\x01"),
        Err(RecordError::UnknownKind(KIND_DELIVERED))
    );
}

fn traced<'a>(record: Record<'a>, state: &'a str) -> EventRecord<'a> {
    let Record::Event(mut e) = record else {
        unreachable!()
    };
    e.trace = Some(TraceRef {
        trace_id: *b"0af7651916cd43dd",
        span_id: *b"b7ad6b71",
        flags: 1,
        state,
    });
    e
}

#[test]
fn a_traced_event_round_trips_grouped_or_not_and_inside_a_copy() {
    let body = b"{}".to_vec();
    let grouped = traced(event(&body), "congo=t61rcWkgMzE");
    let mut plain = traced(event(&body), "");
    plain.routes = vec![RouteDue::new(0, 5)].into();
    for e in [grouped, plain] {
        let bytes = Record::Event(e.clone()).encode();
        assert_eq!(bytes[0], KIND_EVENT_EXT);
        assert_eq!(Record::decode(&bytes), Ok(Record::Event(e.clone())));
        let copy = Record::Copy { seq: 9, event: e };
        assert_eq!(Record::decode(&copy.encode()), Ok(copy));
    }
}

#[test]
fn an_untraced_event_keeps_the_bytes_older_versions_read() {
    // Kinds 2 and 12, unchanged: a hookfan with tracing off writes nothing a hookfan
    // from before tracing cannot read.
    let body = b"{}".to_vec();
    let grouped = event(&body).encode();
    assert_eq!(grouped[0], KIND_EVENT_GROUPED);
    let Record::Event(mut e) = event(&body) else {
        unreachable!()
    };
    e.routes = vec![RouteDue::new(0, 7), RouteDue::new(1, 8)].into();
    (e.webhook_id, e.api_key, e.received_at_ms) = (Some("id"), None, 7);
    (e.signature, e.path) = ("sig", Some("/webhooks"));
    assert_eq!(
        Record::Event(e).encode(),
        b"\x02\x01\x02id\x07\x00\x03sig\x01\x0bmessage.new\x01\x09/webhooks\x02\x00\x07\x01\x08\x02{}"
    );
}

#[test]
fn an_event_flags_byte_hookfan_does_not_write_is_refused() {
    let body = b"{}".to_vec();
    let bytes = Record::Event(traced(event(&body), "")).encode();
    // Byte 1 is the flags: traced and grouped (3). Not traced (0, 1) is kinds 2 and 12's
    // job; bit 2 and up mean nothing yet.
    assert_eq!(bytes[1], EXT_TRACED | EXT_GROUPED);
    for flags in [0, EXT_GROUPED, 4, EXT_TRACED | 8, 0xff] {
        let mut bad = bytes.clone();
        bad[1] = flags;
        assert_eq!(
            Record::decode(&bad),
            Err(RecordError::Flags(flags)),
            "{flags}"
        );
    }
}

#[test]
fn a_delivery_record_takes_a_few_bytes() {
    let r = Record::Delivered {
        route: 2,
        seq: 1_000_000,
    };
    assert_eq!(r.encode().len(), 5);
}

#[test]
fn every_prefix_of_a_record_is_refused_not_misread() {
    let body = vec![b'x'; 40];
    let bytes = event(&body).encode();
    for n in 0..bytes.len() {
        assert!(Record::decode(&bytes[..n]).is_err(), "prefix of {n}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(Record::decode(&longer), Err(RecordError::Trailing));
}

#[test]
fn a_huge_route_count_is_refused_without_reserving_anything() {
    let mut bytes = vec![KIND_EVENT, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert_eq!(Record::decode(&bytes), Err(RecordError::Truncated));
    // More than a u32 of routes is not even a count.
    let mut bytes = vec![KIND_EVENT, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert_eq!(Record::decode(&bytes), Err(RecordError::Overflow));
}

#[test]
fn overlong_integers_are_refused() {
    let mut bytes = vec![KIND_DROP_PENDING];
    bytes.extend_from_slice(&[0x80; 10]);
    bytes.push(0);
    assert_eq!(Record::decode(&bytes), Err(RecordError::Overflow));
    // A u64 that does not fit a route id.
    let mut bytes = vec![KIND_DROP_PENDING];
    Out(&mut bytes).uint(u64::from(u32::MAX) + 1);
    assert_eq!(Record::decode(&bytes), Err(RecordError::Overflow));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Record::decode(&bytes);
    }

    #[test]
    fn integers_round_trip(route in any::<u32>(), seq in any::<u64>(), due in any::<u64>()) {
        let r = Record::Replay { route, seq, due_ms: due };
        let bytes = r.encode();
        prop_assert_eq!(Record::decode(&bytes).unwrap(), r);
    }
}
