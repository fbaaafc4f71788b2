//! The cap on open admin connections, and which one gives way when a new one arrives at the cap.
//!
//! A cap that refuses new connections lets anyone who holds the port full (slow requests, or
//! sockets opened and left silent) lock out the health checks. Here a new connection is always
//! admitted: at the cap, the oldest connection still sending its request is closed (a legitimate
//! request arrives in a millisecond; one that has not after the others came is the likeliest to
//! be held open on purpose), or, if every open connection has its request, the oldest. Closing
//! is the driver's: [`AdminSlots`] holds the driver's handle of each connection (a socket clone,
//! a cancel sender) and gives back the one to close.

use std::collections::VecDeque;

/// Open admin connections, oldest first, with the driver's handle `H` of each.
#[derive(Debug)]
pub struct AdminSlots<H> {
    max: usize,
    open: VecDeque<Slot<H>>,
    next_id: u64,
}

#[derive(Debug)]
struct Slot<H> {
    id: u64,
    /// Its whole request has arrived: it is being answered.
    answering: bool,
    handle: H,
}

impl<H> AdminSlots<H> {
    /// At most `max` connections open (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: VecDeque::new(),
            next_id: 0,
        }
    }

    /// Admits a new connection with its `handle`: its id, and the handle of the connection to
    /// close now to stay within the cap, if any.
    pub fn admit(&mut self, handle: H) -> (u64, Option<H>) {
        let evicted = if self.open.len() >= self.max {
            let oldest = self.open.iter().position(|s| !s.answering).unwrap_or(0);
            self.open.remove(oldest).map(|s| s.handle)
        } else {
            None
        };
        let id = self.next_id;
        self.next_id += 1;
        self.open.push_back(Slot {
            id,
            answering: false,
            handle,
        });
        (id, evicted)
    }

    /// Connection `id` has its whole request: close others first when room is needed.
    pub fn answering(&mut self, id: u64) {
        if let Some(s) = self.open.iter_mut().find(|s| s.id == id) {
            s.answering = true;
        }
    }

    /// Connection `id` is closed (or was evicted): its handle, if it was still here.
    pub fn release(&mut self, id: u64) -> Option<H> {
        let i = self.open.iter().position(|s| s.id == id)?;
        self.open.remove(i).map(|s| s.handle)
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// No connection is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_the_cap_nothing_is_closed() {
        let mut slots = AdminSlots::new(3);
        assert_eq!(slots.admit("a"), (0, None));
        assert_eq!(slots.admit("b"), (1, None));
        assert_eq!(slots.admit("c"), (2, None));
        assert_eq!(slots.len(), 3);
        assert_eq!(slots.release(1), Some("b"));
        assert_eq!(slots.release(1), None);
        assert_eq!(slots.admit("d"), (3, None));
    }

    #[test]
    fn at_the_cap_the_oldest_still_reading_gives_way() {
        let mut slots = AdminSlots::new(3);
        let (a, _) = slots.admit("a");
        slots.admit("b");
        slots.admit("c");
        slots.answering(a);
        // "a" is being answered: "b" is the oldest still sending its request.
        assert_eq!(slots.admit("d").1, Some("b"));
        assert_eq!(slots.admit("e").1, Some("c"));
        assert_eq!(slots.admit("f").1, Some("d"));
        assert_eq!(slots.len(), 3);
        // An evicted connection that ends later finds nothing to release.
        assert_eq!(slots.release(1), None);
    }

    #[test]
    fn when_all_are_answering_the_oldest_gives_way() {
        let mut slots = AdminSlots::new(2);
        let (a, _) = slots.admit("a");
        let (b, _) = slots.admit("b");
        slots.answering(a);
        slots.answering(b);
        assert_eq!(slots.admit("c").1, Some("a"));
    }

    #[test]
    fn thousands_held_open_keep_at_most_the_cap() {
        let mut slots = AdminSlots::new(64);
        let mut closed = 0;
        for i in 0..2000 {
            if slots.admit(i).1.is_some() {
                closed += 1;
            }
        }
        assert_eq!((slots.len(), closed), (64, 2000 - 64));
        // The newest is always admitted, and stays while the next 63 arrive.
        let (probe, _) = slots.admit(9999);
        for i in 0..63 {
            slots.admit(i);
        }
        assert_eq!(slots.release(probe), Some(9999));
    }
}
