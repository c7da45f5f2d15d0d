//! Listeners, TLS, the request path and upstream forwarding.
