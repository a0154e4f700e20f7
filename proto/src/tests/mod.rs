//! Whole-conversation tests across modules.
mod pair;
