//! The SPIFFE Workload API: who is calling ([`attestor`]) and what they get ([`api`], with the
//! JWT profile in [`jwt`]); [`authority`] lets clients that send a socket path as the HTTP/2
//! `:authority` (py-spiffe) through; [`limits`] keeps one caller's flood from starving the
//! others.

pub mod api;
pub mod attestor;
pub mod authority;
pub mod jwt;
pub mod limits;
