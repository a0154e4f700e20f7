//! One way to take a lock. A `std` mutex is poisoned when a thread panics
//! while holding it; every mutex in the relay guards bookkeeping whose each
//! update is a single step (a set insert, a counter, a swap), so what a
//! panicking thread left behind is consistent. [`lock`] therefore recovers
//! the guard instead of failing: a poisoned lock must never make delivery
//! stop silently (a `claim` that always answers "busy", a ready list that
//! is always empty). The first recovery is logged as an error: a panic
//! happened somewhere and deserves a look.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

static REPORTED: AtomicBool = AtomicBool::new(false);

/// Locks `m`, recovering it if a panicking thread poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned: PoisonError<MutexGuard<'_, T>>| {
        if !REPORTED.swap(true, Ordering::Relaxed) {
            tracing::error!("a lock was poisoned by a panicking thread; recovered (a panic happened: see above)");
        }
        poisoned.into_inner()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_recovered_with_its_data() {
        let m = std::sync::Arc::new(Mutex::new(vec![1, 2]));
        let held = m.clone();
        let panicked = std::thread::spawn(move || {
            let mut g = held.lock().expect("not poisoned yet");
            g.push(3);
            panic!("while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(m.is_poisoned());
        let mut g = lock(&m);
        assert_eq!(*g, vec![1, 2, 3], "what the panicking thread wrote stays");
        g.push(4);
        drop(g);
        assert_eq!(lock(&m).len(), 4, "and the lock keeps working");
    }
}
