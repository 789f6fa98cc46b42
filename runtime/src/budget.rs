//! The budget of request-body bytes in flight: what bounds the memory many large requests take at once.
//!
//! `--max_body_bytes` bounds one body; nothing else would bound eight of them arriving together, each
//! decoded into tensors several times its size. A [`BodyBudget`] counts the bytes of the bodies being
//! read, decoded and answered; a request that would take it over its limit is refused at once with 503
//! and `Retry-After` (it is cheap to retry; an OOM kill is not). A [`BodyPermit`] holds a request's
//! share until the request is done.
//!
//! Bodies of at most [`UNCOUNTED_BODY_BYTES`] are not counted: they are bounded by `--max_concurrency`
//! (1,024 × 64 KiB), and a burst of large bodies must not make small single-row requests fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bodies up to this size are not counted against the budget.
pub const UNCOUNTED_BODY_BYTES: usize = 64 * 1024;

/// Bytes of request bodies in flight, and the most allowed.
#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget { limit, used: AtomicUsize::new(0) })
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held by permits now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget, or `None` when that would go over the limit.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// An empty permit, which [`BodyPermit::cover`] grows as the body arrives.
    pub fn permit(self: &Arc<Self>) -> BodyPermit {
        BodyPermit { budget: Arc::clone(self), held: 0 }
    }
}

/// A request's share of the [`BodyBudget`], returned when dropped.
#[derive(Debug)]
pub struct BodyPermit {
    budget: Arc<BodyBudget>,
    held: usize,
}

impl BodyPermit {
    /// Makes the permit cover a body of `total` bytes (a body up to [`UNCOUNTED_BODY_BYTES`] needs
    /// nothing). Grows by at least 1 MiB at a time, so that a body arriving in many small chunks does
    /// not touch the shared counter for each. Returns `false`, holding what it held, when the budget
    /// cannot give more.
    #[must_use]
    pub fn cover(&mut self, total: usize) -> bool {
        if total <= UNCOUNTED_BODY_BYTES || total <= self.held {
            return true;
        }
        let want = total.max(self.held.saturating_add(1 << 20)).min(self.budget.limit.max(total));
        // Ask for the step; when only the exact amount fits, ask for that.
        for ask in [want, total] {
            let more = ask - self.held;
            if self.budget.take(more) {
                self.held = ask;
                return true;
            }
        }
        false
    }

    /// Bytes this permit holds.
    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_take_and_return_their_share() {
        let budget = BodyBudget::new(10 << 20);
        let mut a = budget.permit();
        assert!(a.cover(1000), "small bodies are not counted");
        assert_eq!(budget.in_use(), 0);
        assert!(a.cover(3 << 20));
        assert_eq!(budget.in_use(), 3 << 20);
        // Growing by small steps takes 1 MiB at a time.
        assert!(a.cover((3 << 20) + 1));
        assert_eq!(a.held(), 4 << 20);
        let mut b = budget.permit();
        assert!(b.cover(6 << 20));
        assert_eq!(budget.in_use(), 10 << 20);
        let mut c = budget.permit();
        assert!(!c.cover(100 << 10), "over the limit");
        assert!(c.cover(100), "small bodies still pass");
        drop(a);
        assert_eq!(budget.in_use(), 6 << 20);
        assert!(c.cover(4 << 20), "the exact amount fits");
        drop((b, c));
        assert_eq!(budget.in_use(), 0);
    }
}
