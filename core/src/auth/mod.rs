//! Authentication plugins, both sides of each.
