//! A minimal slab: values in a `Vec` addressed by stable indices, freed slots reused. The event
//! loop's socket and session tables (mio tokens are indices into them).
//!
//! An index can also be held without a value ([`Slab::reserve`]): multiplexing keeps a parked
//! socket registered under its token, and that token must not be given to another socket until
//! the parked one has left the poll ([`Slab::release`]) or comes back ([`Slab::fill`]).

/// One index's state.
#[derive(Debug)]
enum Entry<T> {
    Vacant,
    Occupied(T),
    /// Held for a value that will come back, or until released.
    Reserved,
}

/// Values addressed by index; removing one frees its index for the next insert.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// The index the next [`Slab::insert`] will use.
    pub(crate) fn next_key(&self) -> usize {
        self.free.last().copied().unwrap_or(self.entries.len())
    }

    /// Stores `value`, returning its index.
    pub(crate) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(key) => {
                self.entries[key] = Entry::Occupied(value);
                key
            }
            None => {
                self.entries.push(Entry::Occupied(value));
                self.entries.len() - 1
            }
        }
    }

    /// Removes and returns the value at `key`.
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let value = self.take(key)?;
        self.entries[key] = Entry::Vacant;
        self.free.push(key);
        Some(value)
    }

    /// Removes and returns the value at `key`, keeping the index: no insert uses it until it is
    /// [`filled`](Slab::fill) or [`released`](Slab::release).
    pub(crate) fn reserve(&mut self, key: usize) -> Option<T> {
        let value = self.take(key)?;
        self.entries[key] = Entry::Reserved;
        Some(value)
    }

    /// Puts `value` back at reserved index `key`; `Err(value)` if `key` is not reserved.
    pub(crate) fn fill(&mut self, key: usize, value: T) -> Result<(), T> {
        match self.entries.get_mut(key) {
            Some(entry @ Entry::Reserved) => {
                *entry = Entry::Occupied(value);
                self.len += 1;
                Ok(())
            }
            _ => Err(value),
        }
    }

    /// Frees reserved index `key` for the next insert (false if it is not reserved).
    pub(crate) fn release(&mut self, key: usize) -> bool {
        match self.entries.get_mut(key) {
            Some(entry @ Entry::Reserved) => {
                *entry = Entry::Vacant;
                self.free.push(key);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        match self.entries.get(key)? {
            Entry::Occupied(value) => Some(value),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entries.get_mut(key)? {
            Entry::Occupied(value) => Some(value),
            _ => None,
        }
    }

    /// Values held (reserved indices hold none).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Indices in use.
    pub(crate) fn keys(&self) -> Vec<usize> {
        self.iter().map(|(k, _)| k).collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(k, v)| match v {
                Entry::Occupied(v) => Some((k, v)),
                _ => None,
            })
    }

    /// Takes the value at `key`, leaving the entry to the caller to mark.
    fn take(&mut self, key: usize) -> Option<T> {
        let entry = self.entries.get_mut(key)?;
        if !matches!(entry, Entry::Occupied(_)) {
            return None;
        }
        let Entry::Occupied(value) = std::mem::replace(entry, Entry::Vacant) else {
            unreachable!("checked above")
        };
        self.len -= 1;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_stable_and_reused_after_removal() {
        let mut s = Slab::default();
        assert_eq!(s.next_key(), 0);
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!((a, b), (0, 1));
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.next_key(), a);
        assert_eq!(s.insert("c"), a);
        assert_eq!(s.len(), 2);
        assert_eq!(s.keys(), [0, 1]);
        *s.get_mut(b).unwrap() = "B";
        assert_eq!(s.iter().map(|(_, v)| *v).collect::<Vec<_>>(), ["c", "B"]);
        assert!(s.get(7).is_none() && s.remove(7).is_none());
    }

    #[test]
    fn a_reserved_index_is_not_reused_until_filled_or_released() {
        let mut s = Slab::default();
        let a = s.insert("a");
        assert_eq!(s.reserve(a), Some("a"));
        assert_eq!((s.len(), s.get(a)), (0, None));
        assert_eq!(s.remove(a), None, "reserved: nothing to remove");
        assert_eq!(s.reserve(a), None, "nothing to reserve twice");
        let b = s.insert("b");
        assert_ne!(a, b, "reserved: not reused");
        assert_eq!(s.fill(a, "A"), Ok(()));
        assert_eq!(s.get(a), Some(&"A"));
        assert_eq!(s.fill(a, "again"), Err("again"), "occupied");
        assert_eq!(s.fill(b + 1, "x"), Err("x"), "never used");
        assert!(!s.release(a), "occupied: not released");
        assert_eq!(s.reserve(a), Some("A"));
        assert!(s.release(a));
        assert!(!s.release(a), "released once");
        assert_eq!(s.fill(a, "late"), Err("late"), "vacant: not filled");
        assert_eq!(s.insert("c"), a, "released: reused");
        assert_eq!(s.len(), 2);
    }
}
