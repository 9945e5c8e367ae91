//! svcnet-proxy (being written).
