//! The SPIFFE Workload API: who is calling ([`attestor`]) and what they get ([`api`]).

pub mod api;
pub mod attestor;
