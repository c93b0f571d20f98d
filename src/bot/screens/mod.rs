//! One module per screen or flow of the bot. Each offers its buttons as a branch of the button
//! tree ([`crate::bot::handlers`]) and its message endpoints, and says nothing about routing.

pub(in crate::bot) mod card;
pub(in crate::bot) mod create;
pub(in crate::bot) mod delete;
pub(in crate::bot) mod forget;
pub(in crate::bot) mod gallery;
pub(in crate::bot) mod generate;
pub mod payments;
pub(in crate::bot) mod prompt;
pub(in crate::bot) mod results;
pub(in crate::bot) mod start;
pub(in crate::bot) mod studio;
pub(in crate::bot) mod training;
pub(in crate::bot) mod upload;
