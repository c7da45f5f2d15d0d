//! The data path: listeners, TLS, the request path and upstream forwarding.

pub mod access;
mod admission;
mod affinity;
mod boards;
mod context;
mod forward;
mod gateway;
mod h1;
mod headers;
mod health;
mod inspect;
mod kill;
mod lifecycle;
mod limiter;
mod local;
mod meter;
mod peer;
mod probe;
mod proxy;
mod reconcile;
mod registry;
mod rescue;
mod server;
mod stack;
mod stage;
mod table;
mod trace;
mod upstream;

pub use admission::Shed;
pub use boards::Boards;
pub use gateway::Gateway;
pub use gateway::Peer;
pub use lifecycle::{Lifecycle, Phase};
pub use proxy::{Proxy, ResponseFuture};
pub use server::{serve, tls_acceptor, Listener, ServeError};
pub use table::{CompileError, CompiledFallback, Table};
