//! The RAM tier: a bounded LRU of objects. The store keeps decompressed,
//! verified chunks here (`chunks/<digest>`), so a chunk that two restores
//! need is read and decompressed once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{Tier, TierError};

/// A bounded LRU of objects held in memory; nothing here is durable.
pub struct RamTier {
    capacity: u64,
    inner: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    bytes: u64,
    clock: u64,
    /// key -> (last use, data)
    map: HashMap<String, (u64, Vec<u8>)>,
    /// last use -> key, oldest first
    order: BTreeMap<u64, String>,
}

impl RamTier {
    /// A tier that holds at most `capacity` bytes of object data.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Lru::default()),
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Lru {
    fn touch(&mut self, key: &str) -> Option<&Vec<u8>> {
        self.clock += 1;
        let now = self.clock;
        let (used, _) = self.map.get(key)?;
        self.order.remove(used);
        self.order.insert(now, key.to_string());
        let entry = self.map.get_mut(key)?;
        entry.0 = now;
        Some(&entry.1)
    }

    fn remove(&mut self, key: &str) {
        if let Some((used, data)) = self.map.remove(key) {
            self.order.remove(&used);
            self.bytes -= data.len() as u64;
        }
    }
}

impl Tier for RamTier {
    fn name(&self) -> String {
        "ram".to_string()
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TierError> {
        Ok(self.lock().touch(key).cloned())
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, TierError> {
        let mut lru = self.lock();
        let Some(data) = lru.touch(key) else {
            return Ok(None);
        };
        let size = data.len() as u64;
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(Some(data[offset as usize..end as usize].to_vec())),
            _ => Err(TierError::Range {
                tier: "ram".into(),
                key: key.into(),
                offset,
                len,
                size,
            }),
        }
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<(), TierError> {
        let size = data.len() as u64;
        let mut lru = self.lock();
        lru.remove(key);
        if size > self.capacity {
            return Ok(());
        }
        while lru.bytes + size > self.capacity {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some((_, d)) = lru.map.remove(&oldest) {
                lru.bytes -= d.len() as u64;
            }
        }
        lru.clock += 1;
        let now = lru.clock;
        lru.order.insert(now, key.to_string());
        lru.map.insert(key.to_string(), (now, data.to_vec()));
        lru.bytes += size;
        Ok(())
    }

    fn has(&self, key: &str) -> Result<bool, TierError> {
        Ok(self.lock().map.contains_key(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, TierError> {
        let mut keys: Vec<String> = self
            .lock()
            .map
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), TierError> {
        self.lock().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_capacity() {
        let ram = RamTier::new(10);
        ram.put("a", b"1234").unwrap();
        ram.put("b", b"1234").unwrap();
        // Touch a, so b is the oldest.
        assert_eq!(ram.get("a").unwrap().unwrap(), b"1234");
        ram.put("c", b"1234").unwrap();
        assert!(ram.has("a").unwrap());
        assert!(!ram.has("b").unwrap());
        assert!(ram.has("c").unwrap());
        assert!(ram.used() <= 10);
        // Replacing a key does not count it twice.
        ram.put("c", b"12").unwrap();
        assert_eq!(ram.used(), 6);
        // An object larger than the whole tier is not kept.
        ram.put("big", &[0u8; 11]).unwrap();
        assert!(!ram.has("big").unwrap());
        assert_eq!(ram.get_range("a", 1, 2).unwrap().unwrap(), b"23");
        assert!(ram.get_range("a", 3, 2).is_err());
        assert_eq!(ram.list("").unwrap(), vec!["a", "c"]);
        ram.delete("a").unwrap();
        assert_eq!(ram.get("a").unwrap(), None);
        assert_eq!(ram.used(), 2);
    }
}
