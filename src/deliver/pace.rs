//! Pacing: a route's `rate_limit` as a token bucket. Pure: every call is given the time (the
//! worker's clock, in milliseconds), so tests run it without one.
//!
//! The bucket holds up to `burst` tokens and gains `per_second` of them each second; a
//! delivery attempt of one event takes one (a batch of ten takes ten, and a retry takes one
//! again). It starts full. The worker reads no more due events than it has whole tokens for,
//! so what waits for a token waits in the spool, not in memory, and in queue order.

use std::time::Duration;

use crate::config::RateLimit;

/// A route's token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    limit: RateLimit,
    /// Tokens as of `at_ms`; fractional between whole ones.
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    /// A full bucket at `now_ms`, or, when the route's worker ran before (a reload restarted
    /// it), the tokens `before` had left, up to the new burst: a reload grants no extra burst.
    pub fn new(limit: RateLimit, before: Option<Bucket>, now_ms: u64) -> Bucket {
        let tokens = match before {
            Some(mut before) => {
                before.refill(now_ms);
                before.tokens
            }
            None => f64::from(limit.burst),
        };
        Bucket {
            limit,
            tokens: tokens.min(f64::from(limit.burst)),
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        // A clock stepped back: count from the new now rather than wait for the old one.
        if now_ms < self.at_ms {
            self.at_ms = now_ms;
        }
        if now_ms > self.at_ms {
            let gained = (now_ms - self.at_ms) as f64 * self.limit.per_second / 1000.0;
            self.tokens = (self.tokens + gained).min(f64::from(self.limit.burst));
            self.at_ms = now_ms;
        }
    }

    /// Whole tokens available at `now_ms`: how many events may be sent now.
    pub fn available(&mut self, now_ms: u64) -> usize {
        self.refill(now_ms);
        self.tokens.floor() as usize
    }

    /// Takes `n` tokens (at most [`Bucket::available`]'s count).
    pub fn take(&mut self, now_ms: u64, n: usize) {
        self.refill(now_ms);
        self.tokens = (self.tokens - n as f64).max(0.0);
    }

    /// How long from `now_ms` until a whole token is there (zero when one is).
    pub fn ready_in(&mut self, now_ms: u64) -> Duration {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        let ms = ((1.0 - self.tokens) * 1000.0 / self.limit.per_second).ceil();
        Duration::from_millis(ms as u64)
    }
}

/// Whether the limit held events back in a read that found `tokens` whole tokens and `slots`
/// free delivery slots (free permits × batch): more events were due than it took, and the
/// tokens, not the slots, set how many it took.
pub fn held_back(tokens: usize, slots: usize, more_due: bool) -> bool {
    more_due && tokens <= slots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(text: &str, burst: Option<u64>) -> RateLimit {
        RateLimit::parse(text, burst).unwrap()
    }

    /// Events sent in each second of a run that sends as soon as tokens allow, `backlog`
    /// events, polling every millisecond.
    fn sent_per_second(limit: RateLimit, backlog: usize, seconds: u64) -> Vec<usize> {
        let mut bucket = Bucket::new(limit, None, 0);
        let mut left = backlog;
        let mut per_second = vec![0; seconds as usize];
        for now in 0..seconds * 1000 {
            let n = bucket.available(now).min(left);
            bucket.take(now, n);
            left -= n;
            per_second[(now / 1000) as usize] += n;
        }
        per_second
    }

    #[test]
    fn a_backlog_drains_at_the_rate_after_one_burst() {
        // 600 events behind 100/s with a burst of 100: the burst, then 100 a second.
        let sent = sent_per_second(limit("100/s", Some(100)), 600, 7);
        assert_eq!(sent.iter().sum::<usize>(), 600);
        assert_eq!(
            sent[0], 199,
            "the burst and the first second's tokens: {sent:?}"
        );
        for (second, &n) in sent.iter().enumerate().skip(1).take(4) {
            assert_eq!(n, 100, "second {second}: {sent:?}");
        }
        assert!(
            sent.iter().all(|&n| n <= 200),
            "never over rate + burst: {sent:?}"
        );
    }

    #[test]
    fn slow_rates_send_one_at_a_time_at_their_interval() {
        // 30 a minute: one every 2 s, the default burst of one.
        let l = limit("30/m", None);
        assert_eq!(l.burst, 1);
        let mut bucket = Bucket::new(l, None, 0);
        assert_eq!(bucket.available(0), 1);
        bucket.take(0, 1);
        assert_eq!(bucket.ready_in(1000), Duration::from_millis(1000));
        assert_eq!(bucket.available(1999), 0);
        assert_eq!(bucket.available(2000), 1);
    }

    #[test]
    fn an_idle_bucket_never_holds_more_than_its_burst() {
        let mut bucket = Bucket::new(limit("10/s", Some(5)), None, 0);
        bucket.take(0, 5);
        assert_eq!(bucket.available(3_600_000), 5);
        assert_eq!(bucket.ready_in(3_600_000), Duration::ZERO);
    }

    #[test]
    fn ready_in_is_when_the_next_whole_token_is_there() {
        let mut bucket = Bucket::new(limit("4/s", Some(1)), None, 0);
        bucket.take(0, 1);
        assert_eq!(bucket.ready_in(0), Duration::from_millis(250));
        assert_eq!(bucket.ready_in(100), Duration::from_millis(150));
        assert_eq!(bucket.available(249), 0);
        assert_eq!(bucket.available(250), 1);
    }

    #[test]
    fn a_restarted_worker_keeps_the_tokens_left_so_a_reload_grants_no_burst() {
        let mut drained = Bucket::new(limit("100/s", Some(100)), None, 0);
        drained.take(0, 100);
        // Reloaded 50 ms later to 400/s: 5 tokens gained meanwhile, not a fresh 100.
        let mut after = Bucket::new(limit("400/s", Some(100)), Some(drained), 50);
        assert_eq!(after.available(50), 5);
        assert_eq!(after.available(60), 9, "then at the new rate");
        // A full bucket reloaded to a smaller burst is cut to it.
        let full = Bucket::new(limit("100/s", Some(100)), None, 0);
        assert_eq!(
            Bucket::new(limit("10/s", Some(3)), Some(full), 0).available(0),
            3
        );
    }

    #[test]
    fn a_clock_stepped_back_does_not_stall_the_bucket() {
        let hour = 3_600_000;
        let mut bucket = Bucket::new(limit("10/s", Some(1)), None, 2 * hour);
        bucket.take(2 * hour, 1);
        // The clock goes back an hour: the next token is 100 ms from the new now.
        assert_eq!(bucket.ready_in(hour), Duration::from_millis(100));
        assert_eq!(bucket.available(hour + 100), 1);
    }

    #[test]
    fn the_limit_holds_back_when_more_was_due_and_tokens_set_the_read() {
        // (tokens, slots, more due, held back)
        let table = [
            (1, 1, true, true), // one slot, one token, more waiting: the token was the bound
            (0, 1, true, true),
            (5, 16, true, true),
            (16, 16, true, true),  // a tie counts as the limit
            (20, 16, true, false), // the slots were the bound
            (5, 16, false, false), // nothing more was due
        ];
        for (tokens, slots, more, want) in table {
            assert_eq!(
                held_back(tokens, slots, more),
                want,
                "{tokens} {slots} {more}"
            );
        }
    }
}
