//! The SPIFFE Workload API: who is calling ([`attestor`]) and what they get ([`api`], with the
//! JWT profile in [`jwt`]).

pub mod api;
pub mod attestor;
pub mod jwt;
