//! The delivery runtime: route workers, their sinks and their spool reads run on threads of
//! their own, at a lower CPU priority than ingest.
//!
//! Why: an acknowledgement has a deadline (Stream waits 6 s, and we aim for milliseconds);
//! a delivery does not, because its event is already on disk. When a backlog drains while
//! webhooks keep arriving, the two compete for the same cores. On one runtime, an
//! acknowledgement's wake-up waited in the same run queue as every delivery task (p99 34 ms
//! and more at half the maximum rate). Here ingest has its own threads, and the delivery
//! threads sit `delivery_nice` steps lower, so under contention the kernel gives ingest (and
//! the spool writer, which both use) the CPU first; deliveries take what is left and catch up
//! once the load eases.
//!
//! The cost: when the destination shares the cores (a handler on the same host), its threads
//! win too, and a drain is slower. `delivery_nice: 0` keeps the separate threads at ingest's
//! priority. The default, 5 (ingest gets about three quarters of a contended core), is the
//! measured balance (BENCHMARKS.md): at 0 ingest with deliveries running topped out near
//! 12k/s against 15–19k/s at 5; at 10 the HTTP drain to a local receiver fell to the edge of
//! its 10k/s target.
//!
//! The threads are named `hookfan-deliver` (`top -H` shows them). Lowering one's own priority
//! needs no privilege; where it fails (or off Linux) deliveries keep the normal priority.

use tokio::runtime::{Handle, Runtime};

use crate::priority::{current_nice, set_nice};

/// Owns the delivery runtime; dropping it stops what still runs there without waiting (the
/// workers have been stopped, with their grace period, before).
pub struct DeliveryRuntime {
    rt: Option<Runtime>,
}

impl DeliveryRuntime {
    /// Starts as many worker threads as there are cores, each `nice_increment` steps below
    /// the priority of the thread that starts them (0: the same priority).
    pub fn start(nice_increment: i32) -> std::io::Result<DeliveryRuntime> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Absolute, from the starting thread's: a thread inherits its creator's priority, and
        // blocking-pool threads are created by (already lowered) worker threads.
        let nice = current_nice().map(|base| (base + nice_increment.max(0)).min(19));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("hookfan-deliver")
            .on_thread_start(move || {
                if let Some(nice) = nice {
                    set_nice(nice)
                }
            })
            .enable_all()
            .build()?;
        Ok(DeliveryRuntime { rt: Some(rt) })
    }

    pub fn handle(&self) -> Handle {
        self.rt
            .as_ref()
            .expect("running until dropped")
            .handle()
            .clone()
    }
}

impl Drop for DeliveryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Not `drop(rt)`: that blocks, which is refused inside the main runtime.
            rt.shutdown_background();
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::config::DEFAULT_DELIVERY_NICE;

    fn nice_of_this_thread() -> i32 {
        current_nice().unwrap()
    }

    #[test]
    fn delivery_threads_run_below_the_priority_of_the_thread_that_started_them() {
        let ours = nice_of_this_thread();
        let rt = DeliveryRuntime::start(DEFAULT_DELIVERY_NICE).unwrap();
        let handle = rt.handle();
        let (worker, blocking) = handle
            .block_on(handle.spawn(async {
                let worker = nice_of_this_thread();
                let blocking = tokio::task::spawn_blocking(nice_of_this_thread)
                    .await
                    .unwrap();
                (worker, blocking)
            }))
            .unwrap();
        let expected = (ours + DEFAULT_DELIVERY_NICE).min(19);
        assert_eq!(worker, expected, "async worker thread");
        assert_eq!(blocking, expected, "blocking-pool thread (spool reads)");
        assert_eq!(nice_of_this_thread(), ours, "the caller keeps its priority");
    }

    #[test]
    fn an_increment_of_zero_keeps_the_priority() {
        let ours = nice_of_this_thread();
        let rt = DeliveryRuntime::start(0).unwrap();
        let handle = rt.handle();
        let worker = handle.block_on(handle.spawn(async { nice_of_this_thread() }));
        assert_eq!(worker.unwrap(), ours);
    }

    #[tokio::test]
    async fn dropping_it_inside_another_runtime_does_not_panic() {
        let rt = DeliveryRuntime::start(DEFAULT_DELIVERY_NICE).unwrap();
        let done = rt.handle().spawn(async { 7 }).await.unwrap();
        assert_eq!(done, 7);
        drop(rt);
    }
}
