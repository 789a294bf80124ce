//! The language of the Kanta platform: newtypes built once at the border, and the facts and rules
//! that decide who may see or do what.
//!
//! Architecture invariant: this crate does no I/O and never reads the clock. `now` is a parameter.

pub mod access;
pub mod acting;
pub mod audit;
pub mod consent;
pub mod display;
pub mod hetu;
pub mod ids;
pub mod medicines;
pub mod merkle;
pub mod population;
pub mod prescription;
