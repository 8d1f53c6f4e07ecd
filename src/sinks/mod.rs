//! Destinations: where a route's events go. Each sink turns one delivery attempt into an
//! [`Outcome`]; *when* to try, and what an outcome means for the spool, is `deliver`'s job.
//!
//! A sink never touches the spool and never sleeps: retries and backoff live in one place.
//! Sinks that batch (SQS/SNS) say so through [`Sink::max_batch`] and answer one outcome per
//! event.

pub mod aws;
#[cfg(test)]
pub mod channel;
pub mod file;
pub mod http;

use std::time::Duration;

use crate::config::Destination;
use crate::spool::StoredEvent;

/// One attempt to hand one event to the destination.
pub struct Delivery<'a> {
    pub event: &'a StoredEvent,
    /// The attempt's number, from 1.
    pub number: u32,
    /// The attempt's trace span (disabled when tracing is off): every destination that can
    /// sends its `traceparent` on, and the HTTP destination records the answer's status.
    pub span: tracing::Span,
}

/// How one attempt to hand one event to a destination ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Worth trying again (connection error, timeout, 408, 429, 5xx); `after` is the
    /// destination's own `Retry-After`, if it gave one.
    Retry {
        after: Option<Duration>,
        error: String,
    },
    /// Trying again cannot help (other 4xx, 3xx, an event the destination refuses).
    Permanent {
        error: String,
    },
}

/// Why a sink could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// A built destination, shared by a route's delivery tasks.
pub enum Sink {
    Http(http::HttpSink),
    File(file::FileSink),
    /// SQS and SNS.
    Aws(aws::AwsSink),
    /// Tests of delivery: attempts answered by the test.
    #[cfg(test)]
    Channel(channel::ChannelSink),
}

impl Sink {
    /// Builds the destination's client. AWS clients resolve credentials and region from the
    /// environment here (without network calls: credentials load lazily).
    pub async fn build(destination: &Destination) -> Result<Sink, SinkError> {
        Ok(match destination {
            Destination::Http(h) => Sink::Http(http::HttpSink::new(h)?),
            Destination::File(f) => Sink::File(file::FileSink::new(f)),
            Destination::Sqs(a) => Sink::Aws(aws::AwsSink::new(aws::Service::Sqs, a).await?),
            Destination::Sns(a) => Sink::Aws(aws::AwsSink::new(aws::Service::Sns, a).await?),
        })
    }

    /// Most events handed to [`Sink::deliver_batch`] at once.
    pub fn max_batch(&self) -> usize {
        match self {
            Sink::Http(_) => 1,
            // One write and one fsync for many lines.
            Sink::File(_) => file::MAX_BATCH,
            Sink::Aws(_) => aws::MAX_BATCH,
            #[cfg(test)]
            Sink::Channel(s) => s.max_batch,
        }
    }

    /// Makes `deliveries` (at most `max_batch`). Returns one outcome per delivery, in order.
    pub async fn deliver_batch(&self, deliveries: &[Delivery<'_>]) -> Vec<Outcome> {
        match self {
            Sink::Http(s) => {
                let mut out = Vec::with_capacity(deliveries.len());
                for delivery in deliveries {
                    out.push(s.deliver(delivery).await);
                }
                out
            }
            Sink::File(s) => s.deliver_batch(deliveries.iter().map(|d| d.event)).await,
            Sink::Aws(s) => {
                let messages: Vec<_> = deliveries.iter().map(|d| (d.event, &d.span)).collect();
                s.deliver_batch(&messages).await
            }
            #[cfg(test)]
            Sink::Channel(s) => {
                let mut out = Vec::with_capacity(deliveries.len());
                for delivery in deliveries {
                    out.push(s.deliver(delivery.event, delivery.number).await);
                }
                out
            }
        }
    }
}

/// An error and its causes on one line: reqwest and io errors keep the useful part in
/// `source()`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}
