//! Alerts carried to people (being built).
