//! Taking a lock whose holder panicked: the one place the crate says what a poisoned lock
//! means to it.
//!
//! What it does: [`lock()`], [`read()`], [`write()`] and [`wait()`] are `Mutex::lock`,
//! `RwLock::read`, `RwLock::write` and `Condvar::wait` that take over the data when a thread
//! panicked while holding the lock. Every structure the crate puts behind a lock (queues,
//! tables of counts, a file handle, the current TLS configuration) stays consistent between
//! statements, and a panic in one connection's handling must not take the whole server down
//! with it, so the data is used as it is.
//!
//! What it does not do: choose what to lock, or hold a lock (the guard is the caller's).

use std::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, taking over its data if a panicking thread left it poisoned.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Locks `rwlock` for reading, taking over its data if it was poisoned.
pub fn read<T: ?Sized>(rwlock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rwlock
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Locks `rwlock` for writing, taking over its data if it was poisoned.
pub fn write<T: ?Sized>(rwlock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rwlock
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits on `condvar` with `guard`, taking the data back over if it was poisoned meanwhile.
pub fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lock_poisoned_by_a_panic_still_gives_its_data() {
        let shared = Arc::new((Mutex::new(1), RwLock::new(2)));
        let poisoner = Arc::clone(&shared);
        let _ = std::thread::spawn(move || {
            let _m = poisoner.0.lock().unwrap();
            let _w = poisoner.1.write().unwrap();
            panic!("poison both");
        })
        .join();
        assert!(shared.0.is_poisoned() && shared.1.is_poisoned());
        *lock(&shared.0) += 1;
        assert_eq!(*lock(&shared.0), 2);
        *write(&shared.1) += 1;
        assert_eq!(*read(&shared.1), 3);
    }
}
