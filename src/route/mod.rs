//! Route selection: which routes take an event, decided from its `type`, the path it was
//! posted to and, for routes with `match:` or `not:`, what its body holds.
//!
//! Pure: no I/O, no clock, no config lookups. A route takes an event when it is enabled, its
//! `event_types` take the type ([`EventFilter`]), its `paths` the path ([`PathFilter`]), and
//! its conditions the body ([`ContentFilter`]). The body is parsed at most once per event,
//! whatever the number of routes, and only the parts some condition reads ([`Needed`]);
//! with no conditions in the config, never. [`explain`] says, for each route, why it takes
//! an event or the first reason it does not.

mod content;
mod explain;
mod filters;

pub use content::{
    Block, Compare, Condition, ConditionError, ConditionErrorAt, ConditionErrorKind, ContentFilter,
    FieldPath, Needed, Refused, Test, Wanted,
};
pub use explain::{explain, read_event, Explained, NotAnEvent, Skip, Verdict};
pub use filters::{EventFilter, PathFilter, Pattern};

use crate::config::Route;

/// An event as routing sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Its `type`, when the body has a string one.
    pub event_type: Option<&'a str>,
    /// The request path it was posted to, without the query (`/` for a source's events).
    pub path: &'a str,
    /// The JSON body, uncompressed.
    pub body: &'a [u8],
}

/// The names of the enabled routes that take `event`, in config order. `needed` is what
/// the routes' conditions read of a body ([`needs`]); the body is parsed (that much) only
/// when a route whose type and path take the event has conditions.
pub fn select<'r>(routes: &'r [Route], needed: &Needed, event: &Candidate) -> Vec<&'r str> {
    let mut body: Option<Option<serde_json::Value>> = None;
    routes
        .iter()
        .filter(|r| {
            r.enabled
                && r.filter.matches(event.event_type)
                && r.paths.matches(event.path)
                && (r.content.is_empty()
                    || r.content.matches(
                        body.get_or_insert_with(|| needed.parse(event.body))
                            .as_ref(),
                    ))
        })
        .map(|r| r.name.as_str())
        .collect()
}

/// What the conditions of `routes` (the enabled ones: the others take nothing) read of a
/// body: computed once per config.
pub fn needs(routes: &[Route]) -> Needed {
    let mut needed = Needed::default();
    for route in routes.iter().filter(|r| r.enabled) {
        route.content.needs(&mut needed);
    }
    needed
}

#[cfg(test)]
mod tests;
