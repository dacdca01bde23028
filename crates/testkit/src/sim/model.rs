//! What makes the simulator slow and strict like KMS: a latency per operation, a token bucket
//! per (account, Region, operation) at the documented default quota, and a compression of
//! time that scales both alike (so that every ratio of the benchmarks stays valid).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The KMS operations the simulator answers (the ones the guard calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// ListKeys (one call per page).
    ListKeys,
    /// DescribeKey.
    DescribeKey,
    /// GetKeyPolicy.
    GetKeyPolicy,
    /// PutKeyPolicy.
    PutKeyPolicy,
    /// ListResourceTags (one call per page).
    ListResourceTags,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 5] = [
        Op::ListKeys,
        Op::DescribeKey,
        Op::GetKeyPolicy,
        Op::PutKeyPolicy,
        Op::ListResourceTags,
    ];

    /// The API name (`X-Amz-Target: TrentService.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Op::ListKeys => "ListKeys",
            Op::DescribeKey => "DescribeKey",
            Op::GetKeyPolicy => "GetKeyPolicy",
            Op::PutKeyPolicy => "PutKeyPolicy",
            Op::ListResourceTags => "ListResourceTags",
        }
    }

    /// The operation named `name`, if the simulator answers it.
    pub fn parse(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// Requests per second per account and Region, per operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Quotas(pub BTreeMap<Op, f64>);

impl Default for Quotas {
    /// The default request quotas of the AWS KMS Developer Guide ("Request quotas"):
    /// DescribeKey 2,000/s, GetKeyPolicy 1,000/s, PutKeyPolicy 15/s, ListKeys 500/s,
    /// ListResourceTags 2,000/s, each per account and Region.
    fn default() -> Self {
        Self(BTreeMap::from([
            (Op::ListKeys, 500.0),
            (Op::DescribeKey, 2000.0),
            (Op::GetKeyPolicy, 1000.0),
            (Op::PutKeyPolicy, 15.0),
            (Op::ListResourceTags, 2000.0),
        ]))
    }
}

impl Quotas {
    /// The quota of `op`, requests per second.
    pub fn of(&self, op: Op) -> f64 {
        self.0.get(&op).copied().unwrap_or(f64::INFINITY)
    }
}

/// A latency distribution: log-normal, given by its median and 99th percentile (a fixed
/// latency when both are equal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Half the calls are faster.
    pub median: Duration,
    /// 99 % of the calls are faster.
    pub p99: Duration,
}

impl Latency {
    /// No latency at all (the fidelity tests).
    pub const ZERO: Latency = Latency::fixed(Duration::ZERO);

    /// Always `d`.
    pub const fn fixed(d: Duration) -> Self {
        Self { median: d, p99: d }
    }

    /// The latency of one call, given two uniform draws in (0, 1).
    pub fn sample(&self, u1: f64, u2: f64) -> Duration {
        let median = self.median.as_secs_f64();
        let p99 = self.p99.as_secs_f64().max(median);
        if median == 0.0 || p99 == median {
            return self.median;
        }
        // Box-Muller; z(0.99) = 2.326.
        let z = (-2.0 * u1.max(f64::MIN_POSITIVE).ln()).sqrt()
            * (2.0 * std::f64::consts::PI * u2).cos();
        let sigma = (p99 / median).ln() / 2.326;
        Duration::from_secs_f64((median * (sigma * z).exp()).min(p99 * 4.0))
    }
}

/// The latency of each operation, as the guard's Lambda function in an AWS Region would see
/// it calling KMS.
///
/// The defaults are an ASSUMPTION, neither published nor measured: AWS publishes no latency
/// figures for the KMS control-plane operations, and this project has no AWS account to
/// measure them from. They sit in the "tens of milliseconds" of an HTTPS request within
/// AWS: reads 20 ms median (60 ms p99), ListKeys 25 ms (80 ms), PutKeyPolicy, a write that
/// KMS replicates durably before answering, 60 ms (200 ms). Set them from a measurement of
/// your own when you have one; every benchmark prints the model it ran with.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyModel(pub BTreeMap<Op, Latency>);

impl Default for LatencyModel {
    fn default() -> Self {
        let ms = Duration::from_millis;
        let read = Latency {
            median: ms(20),
            p99: ms(60),
        };
        Self(BTreeMap::from([
            (
                Op::ListKeys,
                Latency {
                    median: ms(25),
                    p99: ms(80),
                },
            ),
            (Op::DescribeKey, read),
            (Op::GetKeyPolicy, read),
            (
                Op::PutKeyPolicy,
                Latency {
                    median: ms(60),
                    p99: ms(200),
                },
            ),
            (Op::ListResourceTags, read),
        ]))
    }
}

impl LatencyModel {
    /// No latency for any operation.
    pub fn none() -> Self {
        Self(Op::ALL.into_iter().map(|op| (op, Latency::ZERO)).collect())
    }

    /// The latency of `op`.
    pub fn of(&self, op: Op) -> Latency {
        self.0.get(&op).copied().unwrap_or(Latency::ZERO)
    }
}

/// A token bucket: `rate` tokens a second, at most `capacity` kept.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn full(capacity: f64, now: Instant) -> Self {
        Self {
            tokens: capacity,
            last: now,
        }
    }

    /// Takes a token if there is one (refilled up to `now`).
    pub(crate) fn take(&mut self, rate: f64, capacity: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is there.
    pub(crate) fn wait(&self, rate: f64) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0) / rate).max(0.0))
    }
}

/// Deterministic pseudo-random numbers (splitmix64): the same seed makes the same fleet.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A hash of strings and numbers, for the fleet's deterministic choices.
pub(crate) fn hash(seed: u64, parts: &[&str], n: u64) -> u64 {
    let mut h = mix(seed ^ n.rotate_left(17));
    for p in parts {
        for b in p.bytes() {
            h = mix(h ^ u64::from(b));
        }
        h = mix(h ^ 0xFF);
    }
    h
}

/// A uniform draw in (0, 1) from a hash.
pub(crate) fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// A stream of uniform draws shared by the server's connections.
#[derive(Debug, Default)]
pub(crate) struct Draws(AtomicU64);

impl Draws {
    pub(crate) fn next(&self) -> f64 {
        unit(mix(self.0.fetch_add(1, Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_capacity_at_once_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(15.0, t0);
        let admitted = (0..100).filter(|_| b.take(15.0, 15.0, t0)).count();
        assert_eq!(admitted, 15, "one second's quota as a burst");
        let later = t0 + Duration::from_millis(1000);
        let admitted = (0..100).filter(|_| b.take(15.0, 15.0, later)).count();
        assert_eq!(admitted, 15, "refilled at 15/s");
        assert!(b.wait(15.0) > Duration::ZERO);
    }

    #[test]
    fn the_log_normal_latency_has_the_configured_median_and_tail() {
        let l = Latency {
            median: Duration::from_millis(20),
            p99: Duration::from_millis(60),
        };
        let draws = Draws::default();
        let mut v: Vec<f64> = (0..20_000)
            .map(|_| l.sample(draws.next(), draws.next()).as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        let p99 = v[v.len() * 99 / 100];
        assert!((median - 0.020).abs() < 0.001, "median {median}");
        assert!((p99 - 0.060).abs() < 0.006, "p99 {p99}");
    }
}
