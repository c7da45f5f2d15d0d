//! gateway.toml: specs, validation with key and line, compiled snapshot.
