//! Admin listener: metrics exposition and the admin API.
