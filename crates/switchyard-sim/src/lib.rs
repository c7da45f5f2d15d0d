//! The simulated agent upstream: OpenAI and Anthropic dialects with a runtime-controllable profile.

mod anthropic;
mod body;
mod control;
mod echo;
mod gen;
mod openai;
mod profile;
mod responses;
mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderMap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use echo::fnv1a64;
pub use profile::{named, ErrorKind, MidStream, Profile, FABRICATING_SNAPSHOT, PROFILE_NAMES};

/// A simulated upstream. Clones share the profile and the counters.
#[derive(Clone)]
pub struct Sim {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    profile: ArcSwap<Profile>,
    requests: AtomicU64,
    in_flight: AtomicU64,
    /// LLM requests that drew the error lottery, for evenly paced errors.
    draws: AtomicU64,
    last_headers: Mutex<HeaderMap>,
}

impl Sim {
    pub fn new(profile: Profile) -> Self {
        Sim {
            shared: Arc::new(Shared {
                profile: ArcSwap::from_pointee(profile),
                requests: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
                draws: AtomicU64::new(0),
                last_headers: Mutex::new(HeaderMap::new()),
            }),
        }
    }

    /// Replaces the profile; requests already running keep the old one.
    pub fn set_profile(&self, p: Profile) {
        self.shared.profile.store(Arc::new(p));
    }

    pub fn profile(&self) -> Profile {
        Profile::clone(&self.shared.profile.load())
    }

    pub(crate) fn profile_arc(&self) -> Arc<Profile> {
        self.shared.profile.load_full()
    }

    /// Requests served so far, not counting the `/sim/*` control endpoints.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Requests whose response (including a streamed body) is not finished yet.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, headers: HeaderMap) -> InFlight {
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
        let previous = std::mem::replace(
            &mut *self
                .shared
                .last_headers
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            headers,
        );
        // Freed after the lock is released, to keep the critical section short.
        drop(previous);
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.shared.clone())
    }

    /// Whether this LLM request fails with the profile's error: drawn at random, or with
    /// `even_errors` the n-th request fails when floor(n × error_rate) moves, so every run
    /// of 1 / error_rate requests holds one failure.
    pub(crate) fn draws_error(&self, profile: &Profile) -> bool {
        if profile.error_rate <= 0.0 {
            return false;
        }
        if !profile.even_errors {
            return fastrand::f64() < profile.error_rate;
        }
        let n = self.shared.draws.fetch_add(1, Ordering::Relaxed) + 1;
        let due = |k: u64| (k as f64 * profile.error_rate).floor();
        due(n) > due(n - 1)
    }

    pub(crate) fn with_last_headers<R>(&self, f: impl FnOnce(&HeaderMap) -> R) -> R {
        let headers = self
            .shared
            .last_headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&headers)
    }

    /// Serve connections from this listener until the task is dropped/aborted.
    /// Each connection runs on its own task, owned by this future so that
    /// aborting it also ends the connections; HTTP/1.1 and h2c are both
    /// accepted, and a failing connection never ends the server.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let never = std::future::pending();
        server::serve(self, listener, never, Duration::ZERO).await
    }

    /// Like [`Sim::serve`] until `stop` completes; then a graceful stop, as a real upstream
    /// restarts: the listener closes (new connections are refused), idle connections close,
    /// busy ones finish their exchange first, and whatever is still open after `drain` is cut.
    pub async fn serve_until(
        self,
        listener: TcpListener,
        stop: impl std::future::Future<Output = ()>,
        drain: Duration,
    ) -> std::io::Result<()> {
        server::serve(self, listener, stop, drain).await
    }
}

impl Default for Sim {
    fn default() -> Self {
        Sim::new(Profile::default())
    }
}

/// Counts a request as in flight until dropped; streamed bodies carry it in
/// their producer task so the count covers the whole stream.
pub(crate) struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bind `addr` (use port 0 for an ephemeral port), spawn [`Sim::serve`] on
/// the current tokio runtime, and return the bound address and the task.
pub async fn spawn(
    addr: SocketAddr,
    sim: Sim,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, tokio::spawn(sim.serve(listener))))
}
