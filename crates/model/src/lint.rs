//! `svcnet check`: findings beyond what the API server rejects.
