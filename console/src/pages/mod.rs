//! The console's pages, one module each: they turn what the services answered into HTML
//! and know nothing of HTTP (the handlers in [`crate::http`] call them).

pub(crate) mod audit;
pub(crate) mod dead_letters;
pub(crate) mod order;
pub(crate) mod overview;
pub(crate) mod schemes;
pub(crate) mod shops;
