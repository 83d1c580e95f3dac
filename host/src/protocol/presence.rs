//! Who is online, in which rooms.
#[derive(Default)]
pub struct Presence {}
