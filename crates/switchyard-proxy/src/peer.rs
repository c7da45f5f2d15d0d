//! What the listener knows about the connection a request came on.

use std::net::SocketAddr;

/// The connection's far end and whether it spoke TLS. A request may carry one as an
/// extension (an embedding program's own listener); the gateway's listeners set it per
/// connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
}
