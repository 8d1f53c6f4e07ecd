//! Thread priorities: background work runs below the threads that answer webhooks.
//!
//! An acknowledgement has a deadline; deliveries, checkpoints and compaction do not (their
//! events are already on disk). On a small machine they compete for the same cores, so the
//! threads that do them lower their own priority (a higher nice value) and the kernel gives
//! ingest and the spool writer the CPU first. Lowering one's own priority needs no
//! privilege; where it fails (or off Linux) a thread keeps the normal priority.
//!
//! Linux keeps a nice value per thread, and a new thread inherits its creator's.

/// The calling thread's nice value; `None` where it cannot be read.
#[cfg(target_os = "linux")]
pub(crate) fn current_nice() -> Option<i32> {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok()
}

/// Sets the calling thread's nice value (at most 19). Raising it (a lower priority) needs no
/// privilege.
#[cfg(target_os = "linux")]
pub(crate) fn set_nice(nice: i32) {
    let tid = Some(rustix::thread::gettid());
    if let Err(e) = rustix::process::setpriority_process(tid, nice.min(19)) {
        tracing::debug!(error = %e, nice, "cannot lower this thread's priority; it keeps its own");
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn current_nice() -> Option<i32> {
    None
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_nice(_nice: i32) {}

/// Runs `f` on a thread of its own (named `name`), `steps` nice steps below the caller, and
/// returns what it returns; on the caller's thread where no thread can be started.
///
/// For CPU-heavy work of a thread that also takes locks the ack path waits on: lowering that
/// thread itself would let the kernel preempt it while it holds one, and the ack path would
/// wait for a low-priority thread's next turn (a mutex lends no priority). So only the
/// heavy part runs below.
pub(crate) fn below<R: Send>(name: &str, steps: i32, f: impl FnOnce() -> R + Send) -> R {
    let job = std::sync::Mutex::new(Some(f));
    let run = || {
        let f = job
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        f.map(|f| f())
    };
    let done = std::thread::scope(|s| {
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn_scoped(s, || {
                lower_this_thread(steps);
                run()
            });
        match thread {
            Ok(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(_) => None,
        }
    });
    match done {
        Some(r) => r,
        None => run().expect("the job runs once"),
    }
}

/// Lowers the calling thread's priority by `steps` nice steps (0: unchanged).
pub(crate) fn lower_this_thread(steps: i32) {
    if steps > 0 {
        if let Some(nice) = current_nice() {
            set_nice(nice + steps);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_only_its_own_priority() {
        let ours = current_nice().unwrap();
        let theirs = std::thread::spawn(|| {
            lower_this_thread(3);
            current_nice().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(theirs, (ours + 3).min(19));
        assert_eq!(current_nice().unwrap(), ours);
    }

    #[test]
    fn work_run_below_runs_on_a_lower_thread_and_hands_back_its_result() {
        let ours = current_nice().unwrap();
        let (nice, name) = below("hookfan-test", 4, || {
            let name = std::thread::current().name().map(str::to_string);
            (current_nice().unwrap(), name)
        });
        assert_eq!(nice, (ours + 4).min(19));
        assert_eq!(name.as_deref(), Some("hookfan-test"));
        assert_eq!(
            current_nice().unwrap(),
            ours,
            "the caller keeps its priority"
        );
    }

    #[test]
    fn nice_stops_at_19() {
        let theirs = std::thread::spawn(|| {
            lower_this_thread(40);
            current_nice().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(theirs, 19);
    }
}
