//! svcnet-sandbox (being written).
