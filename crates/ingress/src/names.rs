//! Names resolved when requests come: the backends of ExternalName Services that name a
//! host outside the cluster (names inside it are resolved when the table is compiled).
//!
//! As nginx's `resolver` with `valid=30s` does, an answer is kept [`POSITIVE_TTL`] (the
//! system resolver does not give the records' TTLs), a failure [`NEGATIVE_TTL`], so a
//! name is looked up at most once per period and per worker's burst, not per request.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::table::UpstreamEndpoint;

/// How long an answer is used before the name is looked up again.
pub const POSITIVE_TTL: Duration = Duration::from_secs(30);
/// How long a failed lookup is remembered (requests meanwhile get its error at once).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// A lookup that takes longer fails.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A lookup in progress.
pub type Lookup = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;

/// Where names are looked up.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host`, each with `port`.
    fn lookup(&self, host: &str, port: u16) -> Lookup;
}

/// The system's resolver (`getaddrinfo`: `/etc/hosts`, then the DNS servers of
/// `/etc/resolv.conf`, which in a pod is cluster DNS), on tokio's blocking pool.
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(&self, host: &str, port: u16) -> Lookup {
        let host = host.to_string();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }
}

/// The resolver a server uses ([`SystemResolver`] by default; tests give their own).
#[derive(Clone)]
pub struct Resolver(pub Arc<dyn Resolve>);

impl Default for Resolver {
    fn default() -> Self {
        Resolver(Arc::new(SystemResolver))
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// A name's answer, shared by the requests that use it.
pub type Endpoints = Arc<[UpstreamEndpoint]>;

struct Entry {
    answer: Result<Endpoints, String>,
    until: Instant,
}

/// Answers by name and port, kept for their TTL.
pub struct NameCache {
    resolver: Arc<dyn Resolve>,
    entries: Mutex<HashMap<(String, u16), Entry>>,
}

impl std::fmt::Debug for NameCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameCache").finish_non_exhaustive()
    }
}

impl NameCache {
    /// An empty cache over `resolver`.
    pub fn new(resolver: Arc<dyn Resolve>) -> NameCache {
        NameCache {
            resolver,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoints of `host:port`, from the cache while fresh, else looked up (and
    /// kept). An error says why there are none: the lookup's failure, or no address.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Endpoints, String> {
        let key = (host.to_string(), port);
        let now = Instant::now();
        if let Some(e) = self.lock().get(&key)
            && e.until > now
        {
            return e.answer.clone();
        }
        let answer =
            match tokio::time::timeout(LOOKUP_TIMEOUT, self.resolver.lookup(host, port)).await {
                Err(_) => Err(format!(
                    "cannot resolve {host}: no answer within {LOOKUP_TIMEOUT:?}"
                )),
                Ok(Err(e)) => Err(format!("cannot resolve {host}: {e}")),
                Ok(Ok(addrs)) if addrs.is_empty() => Err(format!("{host} has no address")),
                Ok(Ok(mut addrs)) => {
                    addrs.sort();
                    addrs.dedup();
                    Ok(addrs
                        .into_iter()
                        .map(|addr| UpstreamEndpoint { addr, pod: None })
                        .collect())
                }
            };
        let ttl = if answer.is_ok() {
            POSITIVE_TTL
        } else {
            NEGATIVE_TTL
        };
        let mut entries = self.lock();
        // Names no longer used go when their answers expire and another is stored.
        entries.retain(|_, e| e.until > now);
        entries.insert(
            key,
            Entry {
                answer: answer.clone(),
                until: Instant::now() + ttl,
            },
        );
        answer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u16), Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers from a table, counting lookups.
    struct Table {
        lookups: AtomicUsize,
        answers: HashMap<&'static str, std::io::Result<Vec<SocketAddr>>>,
    }

    impl Resolve for Table {
        fn lookup(&self, host: &str, _port: u16) -> Lookup {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            let answer = match self.answers.get(host) {
                Some(Ok(a)) => Ok(a.clone()),
                Some(Err(e)) => Err(std::io::Error::new(e.kind(), e.to_string())),
                None => Err(std::io::Error::other("no such name")),
            };
            Box::pin(async move { answer })
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn answers_and_failures_are_kept_for_their_ttl() {
        let table = Arc::new(Table {
            lookups: AtomicUsize::new(0),
            answers: HashMap::from([
                (
                    "api.partner.test",
                    Ok(vec![
                        addr("192.0.2.2:443"),
                        addr("192.0.2.1:443"),
                        addr("192.0.2.1:443"),
                    ]),
                ),
                ("empty.test", Ok(vec![])),
            ]),
        });
        let cache = NameCache::new(table.clone());
        let got = cache.resolve("api.partner.test", 443).await.unwrap();
        let addrs: Vec<_> = got.iter().map(|e| e.addr).collect();
        assert_eq!(addrs, [addr("192.0.2.1:443"), addr("192.0.2.2:443")]);
        assert!(got.iter().all(|e| e.pod.is_none()));
        cache.resolve("api.partner.test", 443).await.unwrap();
        assert_eq!(
            table.lookups.load(Ordering::SeqCst),
            1,
            "the second came from the cache"
        );

        let e = cache.resolve("nosuch.test", 443).await.unwrap_err();
        assert!(
            e.contains("cannot resolve nosuch.test: no such name"),
            "{e}"
        );
        assert!(cache.resolve("nosuch.test", 443).await.is_err());
        let e = cache.resolve("empty.test", 80).await.unwrap_err();
        assert_eq!(e, "empty.test has no address");
        assert_eq!(
            table.lookups.load(Ordering::SeqCst),
            3,
            "failures are kept too"
        );
    }

    #[test]
    fn expired_answers_are_looked_up_again() {
        let table = Arc::new(Table {
            lookups: AtomicUsize::new(0),
            answers: HashMap::from([("a.test", Ok(vec![addr("192.0.2.1:80")]))]),
        });
        let cache = NameCache::new(table.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(cache.resolve("a.test", 80)).unwrap();
        // Age the entry past its TTL (the cache reads the real clock).
        for e in cache.lock().values_mut() {
            e.until = Instant::now() - Duration::from_millis(1);
        }
        rt.block_on(cache.resolve("a.test", 80)).unwrap();
        assert_eq!(table.lookups.load(Ordering::SeqCst), 2);
        assert_eq!(cache.lock().len(), 1, "the expired entry was replaced");
    }
}
