//! The kinds of hook Stream sends, and how to tell a synchronous one from a push event by its
//! body alone.
//!
//! Stream's *push* webhooks (`webhook_url`, `event_hooks` of type `webhook`) carry events:
//! every one has a string `type` (`message.new`, `call.session_started`, ...). Its
//! *synchronous* hooks do not: Stream waits for the answer and uses it.
//!
//! - **Before-Message-Send** (`before_message_send_hook_url`): `{"message": {...}, "user":
//!   {...}, "channel": {...}, ...}`; the answer is the (possibly modified) message, or one
//!   whose `type` is `error` to reject it.
//! - **Custom Commands** (`custom_action_handler_url`, `?type={type}` in the URL): the message
//!   being typed carries the slash `command` and its `args`, with `user` and the `form_data` of
//!   a previous step; the answer is the message to show (attachments, MML, actions).
//!
//! Stream gives Before-Message-Send 1.5 s per attempt by default (one attempt; settable with
//! `before_message_send_hook_attempt_timeout_ms`) and Custom Commands 1 s; on a timeout or an
//! error it sends the message as it was.
//!
//! *Pending-message* callbacks (`event_hooks` of type `pending_message`) also have no `type`
//! and carry a `message`, but they are notifications: Stream posts them to
//! `{webhook_url}/PassOnPendingMessage` and `{webhook_url}/DeletedPendingMessage` with the
//! message's `metadata` and no `channel`, and the decision comes later through the API. They are
//! stored and routed like push events (by path, with `paths:`).
//!
//! Both are signed like push webhooks. hookfan proxies them through `passthrough:` blocks
//! (`ingest::passthrough`); a body of this shape arriving on a push path is refused, since
//! acknowledging it as an event would let a message through unmoderated.

use std::time::Duration;

/// How long a passthrough handler gets when the body's shape names no hook: inside the
/// shortest deadline Stream gives a synchronous hook (Custom Commands, 1 s).
pub const DEFAULT_HANDLER_TIMEOUT: Duration = SyncHook::CustomCommand.handler_timeout();

/// What hookfan keeps for itself out of Stream's deadline: reading the request, verifying it,
/// and the hop to the handler and back.
const HOP_MARGIN: Duration = Duration::from_millis(100);

/// A synchronous hook, whose HTTP answer Stream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncHook {
    BeforeMessageSend,
    CustomCommand,
}

impl SyncHook {
    /// As Stream's docs name it.
    pub fn name(self) -> &'static str {
        match self {
            SyncHook::BeforeMessageSend => "Before-Message-Send",
            SyncHook::CustomCommand => "Custom Commands",
        }
    }

    /// The app setting that points Stream at the hook's URL.
    pub fn setting(self) -> &'static str {
        match self {
            SyncHook::BeforeMessageSend => "before_message_send_hook_url",
            SyncHook::CustomCommand => "custom_action_handler_url",
        }
    }

    /// The path the README's examples use for it.
    pub fn example_path(self) -> &'static str {
        match self {
            SyncHook::BeforeMessageSend => "/stream/before-message-send",
            SyncHook::CustomCommand => "/stream/custom-commands",
        }
    }

    /// How long Stream waits for the answer (its defaults; Before-Message-Send's can be
    /// changed in the app's settings).
    pub const fn stream_deadline(self) -> Duration {
        match self {
            SyncHook::BeforeMessageSend => Duration::from_millis(1500),
            SyncHook::CustomCommand => Duration::from_secs(1),
        }
    }

    /// A passthrough handler's default timeout for this hook: Stream's deadline less the hop.
    pub const fn handler_timeout(self) -> Duration {
        self.stream_deadline().saturating_sub(HOP_MARGIN)
    }

    /// The `hook` label of `hookfan_sync_hooks_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            SyncHook::BeforeMessageSend => "before_message_send",
            SyncHook::CustomCommand => "custom_command",
        }
    }
}

/// The synchronous hook a JSON body looks like, if any: no string `type` at the top, and a
/// `message` object. A message that names a slash `command`, or a body with `form_data`, is
/// a Custom Command; a body with `metadata` and no `channel` is a pending-message callback (a
/// notification, so None); any other is a Before-Message-Send. Push events always carry a
/// string `type`, so none of them is ever taken for a hook; a body without `type` and without
/// a `message` object is not a hook either (it stays what it was: a typeless push event).
///
/// ```
/// use hookfan::stream::hooks::{sync_hook_shape, SyncHook};
///
/// let bms = br#"{"message":{"id":"m1","text":"hi"},"user":{"id":"u1"}}"#;
/// assert_eq!(sync_hook_shape(bms), Some(SyncHook::BeforeMessageSend));
/// let cmd = br#"{"message":{"text":"/ticket urgent","command":"ticket","args":"urgent"}}"#;
/// assert_eq!(sync_hook_shape(cmd), Some(SyncHook::CustomCommand));
/// let push = br#"{"type":"message.new","message":{"id":"m1"}}"#;
/// assert_eq!(sync_hook_shape(push), None);
/// ```
pub fn sync_hook_shape(body: &[u8]) -> Option<SyncHook> {
    #[derive(serde::Deserialize)]
    struct Shape {
        #[serde(rename = "type")]
        event_type: Option<serde_json::Value>,
        message: Option<serde_json::Value>,
        form_data: Option<serde::de::IgnoredAny>,
        metadata: Option<serde::de::IgnoredAny>,
        channel: Option<serde::de::IgnoredAny>,
    }
    let shape: Shape = serde_json::from_slice(body).ok()?;
    if matches!(shape.event_type, Some(serde_json::Value::String(_))) {
        return None;
    }
    let message = shape.message?;
    let message = message.as_object()?;
    let command = message
        .get("command")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|c| !c.is_empty());
    if command || shape.form_data.is_some() {
        Some(SyncHook::CustomCommand)
    } else if shape.metadata.is_some() && shape.channel.is_none() {
        None // a pending-message callback
    } else {
        Some(SyncHook::BeforeMessageSend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_told_apart_by_their_shape() {
        // (body, expected)
        let table: &[(&str, Option<SyncHook>)] = &[
            (
                r#"{"message":{"id":"m1","text":"hello","user":{"id":"u1"}},"user":{"id":"u1"},"channel":{"cid":"messaging:general"}}"#,
                Some(SyncHook::BeforeMessageSend),
            ),
            (
                r#"{"message":{"text":"/giphy cats","command":"giphy","args":"cats"},"user":{"id":"u1"}}"#,
                Some(SyncHook::CustomCommand),
            ),
            (
                r#"{"message":{"text":"/ticket"},"user":{"id":"u1"},"form_data":{"action":"submit"}}"#,
                Some(SyncHook::CustomCommand),
            ),
            // An empty command name is no command.
            (
                r#"{"message":{"text":"hi","command":""}}"#,
                Some(SyncHook::BeforeMessageSend),
            ),
            // Pending-message callbacks are notifications, stored like push events.
            (
                r#"{"message":{"id":"m1","text":"hi"},"metadata":{"reason":"review"},"request_info":{"type":"client"}}"#,
                None,
            ),
            // ... but a body with a channel is a Before-Message-Send whatever else it has.
            (
                r#"{"message":{"id":""},"metadata":{},"channel":{"cid":"messaging:x"}}"#,
                Some(SyncHook::BeforeMessageSend),
            ),
            // Push events: a string type, whatever else they carry.
            (r#"{"type":"message.new","message":{"id":"m1"}}"#, None),
            (r#"{"type":"totally.new.type","message":{}}"#, None),
            // Typeless bodies that are not hooks keep being push events.
            (r#"{"created_at":1778198400000000000}"#, None),
            (r#"{"message":"not an object"}"#, None),
            (r#"{"message":null}"#, None),
            (r#"{}"#, None),
            // A `type` that is not a string is no event type: the shape decides.
            (
                r#"{"type":7,"message":{"id":"m1"}}"#,
                Some(SyncHook::BeforeMessageSend),
            ),
            // Not JSON at all: not a hook (verification refuses it before this is asked).
            ("not json", None),
        ];
        for (body, want) in table {
            assert_eq!(sync_hook_shape(body.as_bytes()), *want, "{body}");
        }
    }

    #[test]
    fn the_default_handler_timeouts_leave_room_inside_streams_deadlines() {
        for hook in [SyncHook::BeforeMessageSend, SyncHook::CustomCommand] {
            assert!(hook.handler_timeout() < hook.stream_deadline(), "{hook:?}");
            assert!(
                DEFAULT_HANDLER_TIMEOUT <= hook.handler_timeout(),
                "{hook:?}"
            );
        }
        assert_eq!(DEFAULT_HANDLER_TIMEOUT, Duration::from_millis(900));
    }

    #[test]
    fn the_researched_example_payloads_are_classified_as_their_hook() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sync-hooks");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with("_response.json") || !name.ends_with(".json") {
                continue;
            }
            let body = std::fs::read(&path).unwrap();
            let want = if name.starts_with("before_message_send") {
                Some(SyncHook::BeforeMessageSend)
            } else if name.starts_with("custom_command") {
                Some(SyncHook::CustomCommand)
            } else if name.starts_with("pending_message") {
                None
            } else {
                panic!("unexpected fixture {name}")
            };
            assert_eq!(sync_hook_shape(&body), want, "{name}");
            seen += 1;
        }
        assert!(seen >= 6, "only {seen} example bodies");
    }
}
