//! A destination for tests of delivery: each attempt is handed to the test over a channel,
//! and the test answers it with the [`Outcome`] it wants, when it wants (or never, to keep
//! the delivery in flight). With a paused tokio clock, a test scripts retries, holds and
//! shutdowns to the millisecond.

use tokio::sync::{mpsc, oneshot};

use super::Outcome;
use crate::spool::StoredEvent;

/// One attempt, waiting for the test's answer.
#[derive(Debug)]
pub struct Attempt {
    pub webhook_id: Option<String>,
    /// Its number, from 1.
    pub number: u32,
    /// `None`: the sink panics (see [`Attempt::panic`]).
    answer: oneshot::Sender<Option<Outcome>>,
}

impl Attempt {
    /// Ends the attempt with `outcome`.
    pub fn answer(self, outcome: Outcome) {
        // The worker may have given up on it (shutdown): nothing waits then.
        let _ = self.answer.send(Some(outcome));
    }

    /// Makes the sink panic in the middle of the attempt, as a bug in a destination's client
    /// would.
    pub fn panic(self) {
        let _ = self.answer.send(None);
    }
}

/// The sink's side: sends each attempt to the test.
pub struct ChannelSink {
    attempts: mpsc::UnboundedSender<Attempt>,
    /// Deliveries per batch at most, as an SQS or SNS sink takes 10 (their attempts still
    /// reach the test one by one).
    pub max_batch: usize,
}

impl ChannelSink {
    /// A sink taking `max_batch` deliveries at a time, and the receiver of its attempts.
    pub fn new(max_batch: usize) -> (ChannelSink, mpsc::UnboundedReceiver<Attempt>) {
        let (attempts, rx) = mpsc::unbounded_channel();
        (
            ChannelSink {
                attempts,
                max_batch,
            },
            rx,
        )
    }

    pub async fn deliver(&self, event: &StoredEvent, number: u32) -> Outcome {
        let (answer, answered) = oneshot::channel();
        let attempt = Attempt {
            webhook_id: event.webhook_id.clone(),
            number,
            answer,
        };
        if self.attempts.send(attempt).is_err() {
            return Outcome::Retry {
                after: None,
                error: "the test stopped listening".into(),
            };
        }
        match answered.await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => panic!("the test made this attempt panic"),
            Err(_) => Outcome::Retry {
                after: None,
                error: "the test dropped the attempt unanswered".into(),
            },
        }
    }
}
