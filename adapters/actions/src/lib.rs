//! Acting without a portal (being built).
