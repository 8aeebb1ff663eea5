//! Test support for alerts (being built).
