//! Background work on the root context's tick: shipping usage records to
//! the collector (`shipper` buffers, `ship` sends and settles) and polling
//! budget caps (`caps_poll`).

pub mod caps_poll;
pub mod ship;
pub mod shipper;
