//! The clock that delivery decisions and the spool's due times are read from: milliseconds
//! since the Unix epoch. The daemon reads the system clock; a test gives the workers and the
//! spool a clock that moves with tokio's, which `#[tokio::test(start_paused = true)]` stops
//! and advances, so retries, holds, `max_age` and the shutdown grace run in virtual time.
//!
//! Sleeps are always tokio's (`tokio::time::sleep`, `timeout`): under the system clock they
//! run in real time, under [`Clock::tokio_from`] in the same virtual time the clock reads.

use std::time::{SystemTime, UNIX_EPOCH};

/// Where "now" comes from; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Source);

#[derive(Debug, Clone, Copy)]
enum Source {
    System,
    Tokio {
        epoch_ms: u64,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// The system clock: the daemon's.
    pub const fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that reads `epoch_ms` now and then moves with tokio's clock (paused and
    /// advanced by tests). Call it inside a runtime.
    pub fn tokio_from(epoch_ms: u64) -> Clock {
        Clock(Source::Tokio {
            epoch_ms,
            start: tokio::time::Instant::now(),
        })
    }

    /// Milliseconds since the Unix epoch (0 before it).
    pub fn now_ms(&self) -> u64 {
        match self.0 {
            Source::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            Source::Tokio { epoch_ms, start } => epoch_ms
                .saturating_add(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_only_with_tokio_time() {
        let clock = Clock::tokio_from(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now_ms(), 1_000, "real time does not move it");
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(clock.now_ms(), 91_000);
    }

    #[test]
    fn the_system_clock_reads_the_time_since_the_epoch() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let now = Clock::system().now_ms();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(before.as_millis() as u64 <= now && now <= after.as_millis() as u64);
    }
}
