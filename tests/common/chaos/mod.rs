//! The chaos lane (tests/chaos.rs): its clients, the system and its
//! faults, and the checks of every history.

pub mod actors;
pub mod checks;
pub mod lane;
pub mod users;
