//! The one retry/backoff helper, for waits the SDK's own retries do not cover (a replica
//! that is still `Creating`, or not yet visible right after ReplicateKey).

use std::future::Future;
use std::time::Duration;

/// Bounded exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Total attempts, including the first.
    pub attempts: u32,
    /// Delay before the second attempt; doubles each time.
    pub base: Duration,
    /// Upper bound of one delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// About 30 s in all: 0.5, 1, 2, 4, 8, 8, 8 s.
    fn default() -> Self {
        Self {
            attempts: 8,
            base: Duration::from_millis(500),
            max: Duration::from_secs(8),
        }
    }
}

impl Backoff {
    /// The delay after attempt `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)))
            .min(self.max)
    }
}

/// One attempt's result.
#[derive(Debug)]
pub enum Step<T, E> {
    /// Finished, successfully or not.
    Done(Result<T, E>),
    /// Not yet; try again after a delay (the error is returned if attempts run out).
    Again(E),
}

/// Runs `attempt` until it is done or the attempts are used up; returns the last error then.
pub async fn retry<T, E, F, Fut>(backoff: &Backoff, mut attempt: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Step<T, E>>,
{
    let mut n = 1;
    loop {
        match attempt(n).await {
            Step::Done(result) => return result,
            Step::Again(err) if n >= backoff.attempts => return Err(err),
            Step::Again(err) => {
                tracing::debug!(attempt = n, error = %err, "not ready yet; backing off");
                tokio::time::sleep(backoff.delay(n)).await;
                n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff::default();
        let d: Vec<u64> = (1..=7).map(|n| b.delay(n).as_millis() as u64).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_done_and_stops_at_the_limit() {
        let b = Backoff {
            attempts: 3,
            base: Duration::from_millis(10),
            max: Duration::from_secs(1),
        };
        let ok: Result<u32, &str> = retry(&b, |n| async move {
            if n < 3 {
                Step::Again("not yet")
            } else {
                Step::Done(Ok(n))
            }
        })
        .await;
        assert_eq!(ok, Ok(3));
        let mut calls = 0;
        let exhausted: Result<(), &str> = retry(&b, |_| {
            calls += 1;
            async { Step::Again("still creating") }
        })
        .await;
        assert_eq!(exhausted, Err("still creating"));
        assert_eq!(calls, 3);
    }
}
