//! Per-client-address limits of one route: `limit-rps`, `limit-rpm`,
//! `limit-connections`, `limit-burst-multiplier`, `limit-whitelist`.
//!
//! The request limits follow nginx's `limit_req` with `burst` and `nodelay`, as
//! ingress-nginx configures them: a leaky bucket per address whose level ("excess")
//! drains at the rate and grows by one per request; a request that would lift it above
//! `rate × burst-multiplier` is refused (503). The first request of an address is always
//! let through, so a quiet address can send `burst + 1` requests at once.
//! `limit-connections` counts requests in flight per address (nginx's `limit_conn`).
//!
//! Memory is bounded: addresses whose bucket has drained and that have nothing in flight
//! are evicted when the map grows, and when [`MAX_CLIENTS`] busy addresses are tracked a
//! new address is refused, as nginx does when its zone is full. The clock is passed in,
//! so the arithmetic is tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::table::Limits;

/// Addresses tracked per route at most.
pub const MAX_CLIENTS: usize = 65_536;

/// Eviction runs when the map reaches this size, and then every time it doubles since.
const SWEEP_AT: usize = 1024;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `limit-rps` exceeded.
    Rps,
    /// `limit-rpm` exceeded.
    Rpm,
    /// `limit-connections` exceeded.
    Connections,
    /// Too many addresses tracked.
    Full,
}

impl Refusal {
    /// A short reason for the error body and the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Rps => "limit-rps exceeded",
            Refusal::Rpm => "limit-rpm exceeded",
            Refusal::Connections => "limit-connections exceeded",
            Refusal::Full => "rate limiter full",
        }
    }
}

#[derive(Debug)]
struct Client {
    /// Bucket levels in milli-requests, and when they were last updated.
    rps_excess: u64,
    rpm_excess: u64,
    last: Instant,
    in_flight: u32,
}

#[derive(Debug)]
struct State {
    clients: HashMap<IpAddr, Client>,
    next_sweep: usize,
}

/// The limiter of one route.
#[derive(Debug)]
pub struct RouteLimiter {
    limits: Limits,
    state: Mutex<State>,
}

/// Holds one in-flight slot of `limit-connections` until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: Arc<RouteLimiter>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut st = self.limiter.lock();
        if let Some(c) = st.clients.get_mut(&self.ip) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }
}

/// Leaky-bucket step. Levels are in `unit`s per request; the bucket drains `rate`
/// units per millisecond (with `unit` = 1000 for per-second and 60 000 for per-minute
/// limits, `rate` is the configured number). `Some(new level)` when the request fits
/// within `burst` requests above the rate.
fn leak(excess: u64, rate: u64, elapsed_ms: u64, burst: u64, unit: u64) -> Option<u64> {
    let level = excess.saturating_sub(rate.saturating_mul(elapsed_ms)) + unit;
    (level <= burst.saturating_mul(unit)).then_some(level)
}

impl RouteLimiter {
    /// A limiter for `limits`; `None` when the route has no limit.
    pub fn new(limits: &Limits) -> Option<RouteLimiter> {
        if limits.rps.is_none() && limits.rpm.is_none() && limits.connections.is_none() {
            return None;
        }
        Some(RouteLimiter {
            limits: limits.clone(),
            state: Mutex::new(State {
                clients: HashMap::new(),
                next_sweep: SWEEP_AT,
            }),
        })
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section leaves the map consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits one request from `ip` at `now`. `Ok(Some(slot))` holds a
    /// `limit-connections` slot until dropped (keep it until the response is done).
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Option<ConnectionSlot>, Refusal> {
        if self.limits.whitelist.iter().any(|n| n.contains(&ip)) {
            return Ok(None);
        }
        let mult = u64::from(self.limits.burst_multiplier.max(1));
        let mut st = self.lock();
        if !st.clients.contains_key(&ip) {
            if st.clients.len() >= st.next_sweep || st.clients.len() >= MAX_CLIENTS {
                self.sweep(&mut st, now);
            }
            if st.clients.len() >= MAX_CLIENTS {
                return Err(Refusal::Full);
            }
            st.clients.insert(
                ip,
                Client {
                    rps_excess: 0,
                    rpm_excess: 0,
                    last: now,
                    in_flight: 0,
                },
            );
            if self.limits.connections == Some(0) {
                return Err(Refusal::Connections);
            }
            // nginx lets the first request of a new address through unconditionally.
            let Some(c) = st.clients.get_mut(&ip) else {
                return Err(Refusal::Full);
            };
            if self.limits.connections.is_some() {
                c.in_flight += 1;
                return Ok(Some(ConnectionSlot {
                    limiter: self.clone(),
                    ip,
                }));
            }
            return Ok(None);
        }
        let Some(c) = st.clients.get_mut(&ip) else {
            return Err(Refusal::Full);
        };
        if let Some(max) = self.limits.connections
            && c.in_flight >= max
        {
            return Err(Refusal::Connections);
        }
        let elapsed =
            u64::try_from(now.saturating_duration_since(c.last).as_millis()).unwrap_or(u64::MAX);
        let step = |excess: u64, rate: Option<u32>, unit: u64, refusal: Refusal| match rate {
            Some(r) => {
                let r = u64::from(r);
                leak(excess, r, elapsed, r * mult, unit)
                    .map(Some)
                    .ok_or(refusal)
            }
            None => Ok(None),
        };
        let rps = step(c.rps_excess, self.limits.rps, 1000, Refusal::Rps)?;
        let rpm = step(c.rpm_excess, self.limits.rpm, 60_000, Refusal::Rpm)?;
        if let Some(l) = rps {
            c.rps_excess = l;
        }
        if let Some(l) = rpm {
            c.rpm_excess = l;
        }
        c.last = now;
        if self.limits.connections.is_some() {
            c.in_flight += 1;
            return Ok(Some(ConnectionSlot {
                limiter: self.clone(),
                ip,
            }));
        }
        Ok(None)
    }

    /// Drops addresses whose buckets have drained and that have nothing in flight.
    fn sweep(&self, st: &mut State, now: Instant) {
        let rps = u64::from(self.limits.rps.unwrap_or(0));
        let rpm = u64::from(self.limits.rpm.unwrap_or(0));
        st.clients.retain(|_, c| {
            let ms = u64::try_from(now.saturating_duration_since(c.last).as_millis())
                .unwrap_or(u64::MAX);
            let rps_busy = c.rps_excess > rps.saturating_mul(ms);
            let rpm_busy = c.rpm_excess > rpm.saturating_mul(ms);
            c.in_flight > 0 || rps_busy || rpm_busy
        });
        st.next_sweep = (st.clients.len() * 2).max(SWEEP_AT);
    }

    /// Addresses tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.lock().clients.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Duration;

    fn limiter(rps: Option<u32>, rpm: Option<u32>, conns: Option<u32>) -> Arc<RouteLimiter> {
        Arc::new(
            RouteLimiter::new(&Limits {
                rps,
                rpm,
                connections: conns,
                burst_multiplier: 5,
                whitelist: vec!["10.0.0.0/8".parse().unwrap()],
            })
            .unwrap(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rps_allows_burst_plus_one_then_refuses_then_recovers() {
        let l = limiter(Some(2), None, None);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        // burst = 2 × 5 = 10; the first request is free: 11 pass at once.
        for i in 0..11 {
            assert!(l.admit(a, t0).is_ok(), "request {i}");
        }
        assert_eq!(l.admit(a, t0).unwrap_err(), Refusal::Rps);
        // Another address is independent.
        assert!(l.admit(ip("192.0.2.2"), t0).is_ok());
        // 500 ms drains one request at 2 r/s.
        assert!(l.admit(a, t0 + Duration::from_millis(500)).is_ok());
        assert!(l.admit(a, t0 + Duration::from_millis(500)).is_err());
        // Whitelisted addresses are not limited.
        for _ in 0..100 {
            assert!(l.admit(ip("10.1.2.3"), t0).is_ok());
        }
    }

    #[test]
    fn rpm_limits_per_minute() {
        let l = limiter(None, Some(6), None);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        // burst 30 + 1.
        for i in 0..31 {
            assert!(l.admit(a, t0).is_ok(), "request {i}");
        }
        assert_eq!(l.admit(a, t0).unwrap_err(), Refusal::Rpm);
        assert!(l.admit(a, t0 + Duration::from_secs(5)).is_err());
        assert!(l.admit(a, t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn connections_are_released_when_the_slot_drops() {
        let l = limiter(None, None, Some(2));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let s1 = l.admit(a, t0).unwrap();
        let s2 = l.admit(a, t0).unwrap();
        assert!(s1.is_some() && s2.is_some());
        assert_eq!(l.admit(a, t0).unwrap_err(), Refusal::Connections);
        drop(s1);
        assert!(l.admit(a, t0).unwrap().is_some());
    }

    #[test]
    fn idle_addresses_are_evicted() {
        let l = limiter(Some(1000), None, None);
        let t0 = Instant::now();
        for i in 0..5000u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0xc000_0000 + i));
            assert!(l.admit(addr, t0).is_ok());
        }
        // All drained a second later; new addresses sweep the old ones.
        let t1 = t0 + Duration::from_secs(1);
        for i in 0..5000u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0xc100_0000 + i));
            assert!(l.admit(addr, t1).is_ok());
        }
        assert!(l.tracked() < 6000, "tracked {}", l.tracked());
    }
}
