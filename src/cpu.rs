//! cpu: keeps a flow command on one CPU when that makes it faster.
//!
//! On SQLite the flow is a chain of dependent statements, each handed to
//! sqlx's SQLite worker thread and answered back: two thread wake-ups per
//! statement. On the virtual machines we run on, waking a thread that sleeps
//! on *another* CPU costs an inter-processor interrupt and about 20 µs; on
//! the same CPU it is a plain context switch. Measured with `bench ingest` on
//! 2,000 generated messages (2-core VM, release build): 579–594 msg/s on both
//! CPUs, 1,323–1,404 msg/s with the process on one CPU. On PostgreSQL the
//! other end is the server's own process, and one CPU was no faster (315
//! against 292 msg/s), so only SQLite is pinned.
//!
//! The choice is made once, before the runtime starts, for the flow's batch
//! commands (`demo`, `ingest`, `eval`, `bench ingest`) on SQLite with the
//! local rules: every thread the process starts afterwards (tokio's workers,
//! the SQLite workers) inherits the one CPU. `serve` and `web` keep every CPU
//! (web pages, TLS and the model's calls are work that runs in parallel; the
//! flow there handles mail as it arrives). `one_cpu = false` in the
//! configuration (or `DISPUTE_DESK_ONE_CPU=false`) turns it off, `true`
//! forces it for every command.
//!
//! One thread is let out again: `flow::ahead`'s, which parses and classifies
//! the next batch while the flow writes the current one, moves itself to the
//! spare CPU ([`move_current_thread_to_spare`]). It talks to the flow once a
//! batch, not once a statement, so the wake-up across CPUs costs little there.

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("cannot read the CPUs this process may run on: {0}")]
    Read(std::io::Error),
    #[error("cannot keep the process on cpu {cpu}: {source}")]
    Set { cpu: usize, source: std::io::Error },
}

/// Whether a command should run on one CPU: `setting` is the configuration's
/// `one_cpu` (None: decide per command), `batch_flow` says the command is one
/// of the flow's batch commands, `sqlite_rules` that its flow runs on SQLite
/// with the local classifier.
pub fn wanted(setting: Option<bool>, batch_flow: bool, sqlite_rules: bool) -> bool {
    setting.unwrap_or(batch_flow && sqlite_rules)
}

/// The CPUs the calling thread may run on.
#[cfg(target_os = "linux")]
pub fn allowed() -> Result<Vec<usize>, CpuError> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the size passed is its own.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(CpuError::Read(std::io::Error::last_os_error()));
    }
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
}

/// Keeps the calling thread, and every thread it starts from now on, on one
/// of the CPUs it may run on now (the one it is running on, when allowed).
/// Returns that CPU; None when it already had a single CPU.
#[cfg(target_os = "linux")]
pub fn pin_current_thread() -> Result<Option<usize>, CpuError> {
    let cpus = allowed()?;
    if cpus.len() <= 1 {
        return Ok(None);
    }
    let here = unsafe { libc::sched_getcpu() };
    let cpu = usize::try_from(here).ok().filter(|c| cpus.contains(c)).unwrap_or(cpus[0]);
    set_current_thread(&[cpu])?;
    let _ = SPARE.set(cpus.iter().copied().find(|&c| c != cpu));
    Ok(Some(cpu))
}

/// Keeps the calling thread on `cpus` (which must be CPUs of this machine).
#[cfg(target_os = "linux")]
fn set_current_thread(cpus: &[usize]) -> Result<(), CpuError> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; every CPU set is below
    // CPU_SETSIZE (they came from `allowed`); the size passed is the set's own.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(CpuError::Set { cpu: cpus.first().copied().unwrap_or(0), source: std::io::Error::last_os_error() });
    }
    Ok(())
}

/// A CPU the process was allowed before [`pin_current_thread`] kept it to
/// one, other than that one: where `flow::ahead` runs the next batch's pure
/// stages. Set once, by the first pinning.
static SPARE: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

/// The spare CPU, if the process was pinned and had another one.
pub fn spare() -> Option<usize> {
    SPARE.get().copied().flatten()
}

/// Moves the calling thread to the spare CPU (see [`SPARE`]). Returns it;
/// None when the process was not pinned or had no other CPU, and the thread
/// stays where it is.
#[cfg(target_os = "linux")]
pub fn move_current_thread_to_spare() -> Result<Option<usize>, CpuError> {
    match spare() {
        Some(cpu) => set_current_thread(&[cpu]).map(|()| Some(cpu)),
        None => Ok(None),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn move_current_thread_to_spare() -> Result<Option<usize>, CpuError> {
    Ok(None)
}

/// Elsewhere the process keeps every CPU (the measurement above is Linux's).
#[cfg(not(target_os = "linux"))]
pub fn allowed() -> Result<Vec<usize>, CpuError> {
    Ok(vec![])
}

#[cfg(not(target_os = "linux"))]
pub fn pin_current_thread() -> Result<Option<usize>, CpuError> {
    Ok(None)
}

/// The one CPU the calling thread runs on, if it is kept to one (by
/// [`pin_current_thread`], `taskset` or a cgroup): for `bench ingest`'s report.
pub fn single() -> Option<usize> {
    match allowed().ok()?.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_flow_commands_on_sqlite_with_the_rules_are_pinned_by_default() {
        assert!(wanted(None, true, true));
        assert!(!wanted(None, true, false), "postgres or a remote model: every CPU");
        assert!(!wanted(None, false, true), "serve, web: every CPU");
        assert!(!wanted(Some(false), true, true), "one_cpu = false turns it off");
        assert!(wanted(Some(true), false, false), "one_cpu = true forces it");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pinned_thread_and_the_threads_it_starts_run_on_one_cpu() {
        // In a thread of its own, so that the test harness keeps its CPUs.
        std::thread::spawn(|| {
            let before = allowed().unwrap();
            assert!(!before.is_empty());
            let pinned = pin_current_thread().unwrap();
            let now = allowed().unwrap();
            assert_eq!(now.len(), 1, "one CPU after pinning");
            assert!(before.contains(&now[0]), "a CPU it was allowed before");
            match pinned {
                Some(c) => assert_eq!(now, vec![c]),
                None => assert_eq!(before.len(), 1, "None only when it already had one CPU"),
            }
            assert_eq!(single(), Some(now[0]));
            let child = std::thread::spawn(allowed).join().unwrap().unwrap();
            assert_eq!(child, now, "a thread started afterwards inherits the CPU");
            assert_eq!(pin_current_thread().unwrap(), None, "already on one CPU");
            // The spare CPU: another one it had before, for the look-ahead thread.
            let spare = std::thread::spawn(|| (move_current_thread_to_spare().unwrap(), allowed().unwrap())).join().unwrap();
            if before.len() > 1 {
                let (c, there) = (spare.0.expect("a spare CPU when the process had several"), spare.1);
                assert_eq!(there, vec![c], "the thread moved to the spare CPU");
                assert!(before.contains(&c) && c != now[0], "a CPU it had before, not the pinned one");
            } else {
                assert_eq!(spare, (None, now.clone()), "no spare on one CPU: the thread stays");
            }
        })
        .join()
        .unwrap();
    }
}
