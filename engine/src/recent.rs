//! The engine's memory of transactions and trace records: the recent ones, with the older ones
//! left on disk and fetched back when a request names them (see `Engine::need`).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A map that remembers when each entry was last written (switch time and the group commit
/// that wrote it), so entries can be dropped from memory once they are old and on disk.
#[derive(Debug)]
pub struct Recent<K, V> {
    /// foldhash: several times cheaper than SipHash for these small keys, and seeded per
    /// process, so keys chosen by a terminal cannot be made to collide in advance.
    map: HashMap<K, (V, u64), foldhash::fast::RandomState>,
    /// Write order: (time ms, group commit id, key). An entry written again has a newer
    /// element; the older one is skipped when it comes up.
    order: VecDeque<(i64, u64, K)>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent { map: HashMap::default(), order: VecDeque::new() }
    }
}

impl<K: Copy + Eq + Hash, V: Copy> Recent<K, V> {
    /// Reserves room for `capacity` entries in all, so that the map never stops the
    /// partition to grow while it serves.
    pub fn reserve_total(&mut self, capacity: usize) {
        self.map.reserve(capacity.saturating_sub(self.map.len()));
        self.order.reserve(capacity.saturating_sub(self.order.len()));
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(value, _)| value)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Writes `value` at `time_ms` by group commit `batch_id` (0: already on disk).
    pub fn insert(&mut self, key: K, value: V, time_ms: i64, batch_id: u64) {
        self.map.insert(key, (value, batch_id));
        self.order.push_back((time_ms, batch_id, key));
    }

    /// Drops from memory, oldest first and at most `budget` of them, the entries written
    /// before `before_ms` (or any, while more than `max_len` are held) whose last write is
    /// on disk (group commit ≤ `materialized`). Calls `evicted` for each one dropped.
    pub fn evict(
        &mut self,
        before_ms: i64,
        max_len: usize,
        materialized: u64,
        budget: usize,
        mut evicted: impl FnMut(&K),
    ) {
        for _ in 0..budget {
            let Some(&(time_ms, batch_id, key)) = self.order.front() else { return };
            if time_ms >= before_ms && self.map.len() <= max_len {
                return;
            }
            if batch_id > materialized {
                return;
            }
            self.order.pop_front();
            // Only the entry's latest write decides; older queue elements are stale. One
            // lookup: the maps are larger than the CPU caches, so each costs a miss.
            if let Entry::Occupied(entry) = self.map.entry(key) {
                if entry.get().1 == batch_id {
                    entry.remove();
                    evicted(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_only_old_materialized_latest_writes() {
        let mut recent: Recent<u32, &str> = Recent::default();
        recent.insert(1, "a", 100, 10);
        recent.insert(2, "b", 100, 11);
        recent.insert(1, "a2", 300, 12); // rewritten later: its first element is stale
        let mut gone = Vec::new();
        // Not old enough.
        recent.evict(50, 10, 100, 10, |k| gone.push(*k));
        assert!(gone.is_empty());
        // Old, but group commit 11 is not on disk yet.
        recent.evict(200, 10, 10, 10, |k| gone.push(*k));
        assert!(gone.is_empty() && recent.len() == 2);
        recent.evict(200, 10, 11, 10, |k| gone.push(*k));
        assert_eq!(gone, vec![2]);
        assert_eq!(recent.get(&1), Some(&"a2"));
        // Over the size limit, even recent entries go once on disk.
        recent.evict(0, 0, 12, 10, |k| gone.push(*k));
        assert_eq!(gone, vec![2, 1]);
        assert!(recent.is_empty());
    }
}
