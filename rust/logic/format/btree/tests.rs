// SPDX-License-Identifier: GPL-2.0

//! Tests of the B+tree against a model, with damaged and crafted nodes.

extern crate alloc;

use super::*;
use crate::logic::testing::Lcg;
use alloc::{boxed::Box, collections::BTreeMap, vec::Vec};

/// Small nodes would need a smaller block; instead a kind with big
/// entries keeps fan-out low (16 per leaf) so tests reach many levels.
struct Fat;
impl TreeKind for Fat {
    const KIND: u8 = 0x7f;
    const KEY: usize = 8;
    const VALUE: usize = 248;
}

#[derive(Default)]
struct Memory {
    blocks: Vec<Option<Box<[u8; BLOCK_SIZE]>>>,
    free: Vec<u64>,
    live: usize,
}

impl Memory {
    fn node(&self, block: u64) -> Result<&[u8; BLOCK_SIZE], ()> {
        self.blocks
            .get(block as usize)
            .and_then(|b| b.as_deref())
            .ok_or(())
    }
}

impl Nodes for Memory {
    type Error = ();
    fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), ()> {
        copy_from_node(self.node(block)?, offset, buf);
        Ok(())
    }
    fn look(&self, block: u64, look: &mut dyn FnMut(&[u8; BLOCK_SIZE])) -> Result<bool, ()> {
        look(self.node(block)?);
        Ok(true)
    }
}

impl Blocks for Memory {
    fn node_mut(&mut self, block: u64) -> Result<&mut [u8; BLOCK_SIZE], ()> {
        self.blocks
            .get_mut(block as usize)
            .and_then(|b| b.as_deref_mut())
            .ok_or(())
    }
    fn allocate(&mut self) -> Result<u64, ()> {
        self.live += 1;
        let block = self.free.pop().unwrap_or(self.blocks.len() as u64);
        if block as usize == self.blocks.len() {
            self.blocks.push(None);
        }
        self.blocks[block as usize] = Some(Box::new([0xa5; BLOCK_SIZE]));
        Ok(block)
    }
    fn free(&mut self, block: u64) -> Result<(), ()> {
        self.live -= 1;
        self.blocks[block as usize].take().ok_or(())?;
        self.free.push(block);
        Ok(())
    }
}

fn key(k: u64) -> [u8; 8] {
    k.to_be_bytes()
}

fn value(k: u64, generation: u8) -> [u8; 248] {
    let mut v = [generation; 248];
    v[..8].copy_from_slice(&k.to_le_bytes());
    v
}

fn check_matches(tree: &Tree<Fat>, store: &Memory, model: &BTreeMap<u64, [u8; 248]>) {
    let mut nodes = 0;
    assert_eq!(
        tree.check(store, &mut |_| nodes += 1),
        Ok(model.len() as u64)
    );
    assert_eq!(nodes, store.live, "nodes reachable vs allocated");
    let mut seen = Vec::new();
    let _ = tree
        .scan(store, &key(0), &mut |k, v| {
            seen.push((u64::from_be_bytes(k.try_into().unwrap()), v[8]));
            ControlFlow::Continue(())
        })
        .unwrap();
    let want: Vec<_> = model.iter().map(|(k, v)| (*k, v[8])).collect();
    assert_eq!(seen, want);
}

#[test]
fn random_operations_match_a_model() {
    for seed in 1..=6u64 {
        let mut store = Memory::default();
        let mut tree = Tree::<Fat>::create(&mut store, 42).unwrap();
        let mut model = BTreeMap::new();
        let mut rng = Lcg(seed);
        let range = [50, 400, 3000][seed as usize % 3];
        for step in 0..4000u32 {
            let k = rng.next() % range;
            if rng.next() % 3 == 0 {
                assert_eq!(
                    tree.remove(&mut store, &key(k)).unwrap(),
                    model.remove(&k).is_some()
                );
            } else if rng.next() % 4 == 0 {
                // Groups of keys sharing their first 7 bytes, beyond the
                // plain keys: the least of a group is added by
                // `insert_first` only while no key of the group is there.
                let least = (rng.next() % 64 + 1_000_000) << 8;
                match rng.next() % 3 {
                    0 => {
                        let k = least | 1;
                        let v = value(k, step as u8);
                        assert_eq!(
                            tree.insert(&mut store, &key(k), &v).unwrap(),
                            model.insert(k, v).is_some()
                        );
                    }
                    1 => assert_eq!(
                        tree.remove(&mut store, &key(least)).unwrap(),
                        model.remove(&least).is_some()
                    ),
                    _ => {
                        let v = value(least, step as u8);
                        let taken = model.range(least..=least | 0xff).next().is_some();
                        let added = tree.insert_first(&mut store, &key(least), &v, 7).unwrap();
                        assert_eq!(added, !taken, "group of {least:#x}");
                        if added {
                            model.insert(least, v);
                        }
                    }
                }
            } else if rng.next() % 4 == 0 {
                // Only values of even generations are wanted; an entry
                // not wanted leaves every node as it was.
                let wanted = |v: &[u8]| v[8] % 2 == 0;
                let (before, root) = (store.blocks.clone(), tree.root);
                let removed = tree
                    .remove_if(&mut store, &key(k), &mut |v| wanted(v))
                    .unwrap();
                assert_eq!(
                    removed,
                    model.get(&k).is_some_and(|v: &[u8; 248]| wanted(v))
                );
                if removed {
                    model.remove(&k);
                } else {
                    assert!(store.blocks == before && tree.root == root);
                }
            } else {
                let v = value(k, step as u8);
                assert_eq!(
                    tree.insert(&mut store, &key(k), &v).unwrap(),
                    model.insert(k, v).is_some()
                );
            }
            if step % 500 == 0 {
                check_matches(&tree, &store, &model);
            }
            let probe = rng.next() % range;
            let mut got = [0u8; 248];
            let found = tree.get(&store, &key(probe), &mut got).unwrap();
            assert_eq!(found.then_some(got), model.get(&probe).copied());
            let (mut fk, mut fv) = ([0u8; 8], [0u8; 248]);
            let below = tree
                .last_at_or_before(&store, &key(probe), &mut fk, &mut fv)
                .unwrap();
            let want = model.range(..=probe).next_back().map(|(k, _)| *k);
            assert_eq!(below.then(|| u64::from_be_bytes(fk)), want);
        }
        check_matches(&tree, &store, &model);
        // Only the least key of its prefix may be inserted first.
        assert!(matches!(
            tree.insert_first(&mut store, &key(1), &value(1, 0), 7),
            Err(TreeError::BadArgument)
        ));
        // Emptying the tree gives every node but the root back.
        let keys: Vec<u64> = model.keys().copied().collect();
        for k in keys {
            assert!(tree.remove(&mut store, &key(k)).unwrap());
        }
        assert_eq!(store.live, 1);
        check_matches(&tree, &store, &BTreeMap::new());
    }
}

/// Nodes reachable from the root, level by level (leaves first).
fn nodes_per_level(tree: &Tree<Fat>, store: &Memory) -> Vec<usize> {
    let mut levels = Vec::new();
    tree.check(store, &mut |block| {
        let level = usize::from(store.node(block).unwrap()[OFF_LEVEL]);
        if levels.len() <= level {
            levels.resize(level + 1, 0);
        }
        levels[level] += 1;
    })
    .unwrap();
    levels
}

#[test]
fn deleting_most_entries_merges_the_tree_back() {
    for seed in 1..=4u64 {
        let mut store = Memory::default();
        let mut tree = Tree::<Fat>::create(&mut store, 3).unwrap();
        let mut model = BTreeMap::new();
        for k in 0..3000u64 {
            tree.insert(&mut store, &key(k), &value(k, 0)).unwrap();
            model.insert(k, value(k, 0));
        }
        assert!(nodes_per_level(&tree, &store).len() >= 3);
        // Remove all but every 1000th key, in random order.
        let mut doomed: Vec<u64> = (0..3000).filter(|k| k % 1000 != 7).collect();
        let mut rng = Lcg(seed);
        for i in (1..doomed.len()).rev() {
            doomed.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        for k in doomed {
            assert!(tree.remove(&mut store, &key(k)).unwrap());
            model.remove(&k);
        }
        check_matches(&tree, &store, &model);
        // Merges and root collapses bring the tree back to one leaf.
        assert_eq!(nodes_per_level(&tree, &store), [1], "seed {seed}");
    }
}

#[test]
fn a_leaf_that_never_empties_still_merges() {
    // The reverse map's shape: entries at the far end (records of the
    // tree's own nodes) stay while everything between them goes.
    let mut store = Memory::default();
    let mut tree = Tree::<Fat>::create(&mut store, 4).unwrap();
    for k in 0..40u64 {
        tree.insert(&mut store, &key(k), &value(k, 0)).unwrap();
    }
    assert_eq!(nodes_per_level(&tree, &store).len(), 2);
    for k in 3..38u64 {
        assert!(tree.remove(&mut store, &key(k)).unwrap());
    }
    let model: BTreeMap<u64, [u8; 248]> = [0, 1, 2, 38, 39]
        .into_iter()
        .map(|k| (k, value(k, 0)))
        .collect();
    check_matches(&tree, &store, &model);
    assert_eq!(nodes_per_level(&tree, &store), [1]);
}

#[test]
fn grows_several_levels_and_scans_from_the_middle() {
    let mut store = Memory::default();
    let mut tree = Tree::<Fat>::create(&mut store, 1).unwrap();
    for k in 0..5000u64 {
        tree.insert(&mut store, &key(k * 2), &value(k, 1)).unwrap();
    }
    let root_level = store.node(tree.root).unwrap()[OFF_LEVEL];
    assert!(root_level >= 2, "level {}", root_level);
    let mut first = Vec::new();
    let _ = tree
        .scan(&store, &key(777), &mut |k, _| {
            first.push(u64::from_be_bytes(k.try_into().unwrap()));
            if first.len() == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(first, [778, 780, 782]);
}

#[test]
fn damaged_nodes_are_reported_not_trusted() {
    let mut store = Memory::default();
    let mut tree = Tree::<Fat>::create(&mut store, 9).unwrap();
    for k in 0..200u64 {
        tree.insert(&mut store, &key(k), &value(k, 0)).unwrap();
    }
    let mut nodes = Vec::new();
    tree.check(&store, &mut |b| nodes.push(b)).unwrap();
    let mut v = [0u8; 248];
    // Any bit flip in any node is caught by every operation reaching it.
    for &block in &nodes {
        for bit in (0..BLOCK_SIZE * 8).step_by(97) {
            store.node_mut(block).unwrap()[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(
                tree.check(&store, &mut |_| {}),
                Err(TreeError::Corrupt { .. })
            ));
            store.node_mut(block).unwrap()[bit / 8] ^= 1 << (bit % 8);
        }
    }
    // Well-formed nodes in the wrong place: another owner, another block.
    let other = Tree::<Fat>::open(tree.root, 10);
    assert_eq!(
        other.get(&store, &key(1), &mut v),
        Err(TreeError::Corrupt {
            block: tree.root,
            what: Corruption::Owner
        })
    );
    let leaf = *nodes.last().unwrap();
    let copy = *store.node(leaf).unwrap();
    *store.node_mut(nodes[0]).unwrap() = copy;
    assert!(matches!(
        tree.get(&store, &key(1), &mut v),
        Err(TreeError::Corrupt { .. })
    ));
    assert_eq!(
        tree.get(&store, &[0u8; 3], &mut v),
        Err(TreeError::BadArgument)
    );
}

/// A crafted tree whose internal nodes all point at one child (levels
/// decrease, so no cycle) would be walked once per path: fan-out to
/// the power of the depth. Bounds and non-empty children make the
/// second path to a node an error at once.
#[test]
fn shared_children_are_damage_not_work() {
    struct Counting {
        nodes: Vec<Box<[u8; BLOCK_SIZE]>>,
        reads: core::cell::Cell<u64>,
    }
    impl Nodes for Counting {
        type Error = ();
        fn read(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), ()> {
            if offset == 0 {
                self.reads.set(self.reads.get() + 1);
            }
            copy_from_node(self.nodes.get(block as usize).ok_or(())?, offset, buf);
            Ok(())
        }
    }
    let (fan, top) = (8usize, 6u8);
    let mut nodes = Vec::new();
    for level in 0..=top {
        let mut n = Box::new([0u8; BLOCK_SIZE]);
        put(&mut *n, OFF_MAGIC, &NODE_MAGIC.to_le_bytes());
        put(&mut *n, OFF_KIND, &[Fat::KIND, level]);
        put(&mut *n, OFF_OWNER, &42u64.to_le_bytes());
        put(&mut *n, OFF_BLOCK, &u64::from(level).to_le_bytes());
        if level > 0 {
            let base = 1000 * u64::from(top - level);
            for i in 0..fan {
                let at = HEADER_BYTES + i * 16;
                put(&mut *n, at, &(base + i as u64).to_be_bytes());
                put(&mut *n, at + 8, &(u64::from(level) - 1).to_le_bytes());
            }
            put(&mut *n, OFF_COUNT, &(fan as u16).to_le_bytes());
        }
        seal(&mut n);
        nodes.push(n);
    }
    let store = Counting {
        nodes,
        reads: core::cell::Cell::new(0),
    };
    let tree = Tree::<Fat>::open(u64::from(top), 42);
    assert!(tree.check(&store, &mut |_| {}).is_err());
    let mut k = [0u8; 8];
    let mut v = [0u8; 248];
    assert!(tree
        .last_at_or_before(&store, &u64::MAX.to_be_bytes(), &mut k, &mut v)
        .is_err());
    assert!(tree
        .scan(&store, &0u64.to_be_bytes(), &mut |_, _| {
            ControlFlow::Continue(())
        })
        .is_err());
    assert!(store.reads.get() < 100, "{} node reads", store.reads.get());
}

#[test]
fn a_node_resealed_from_its_changed_lines_has_the_full_checksum() {
    let mut rng = Lcg(23);
    let mut original = [0u8; BLOCK_SIZE];
    for byte in original.iter_mut() {
        *byte = rng.next() as u8;
    }
    seal(&mut original);
    for case in 0..500 {
        let mut node = original;
        let mut lines = 0u64;
        for _ in 0..1 + case % 5 {
            let len = 1 + (rng.next() % 90) as usize;
            let at = (rng.next() as usize) % (BLOCK_SIZE - len + 1);
            for (i, byte) in node[at..at + len].iter_mut().enumerate() {
                // Never the checksum itself: reseal writes it.
                if !(OFF_CRC..OFF_CRC + 4).contains(&(at + i)) {
                    *byte ^= rng.next() as u8 | 1;
                }
            }
            for line in at / 64..=(at + len - 1) / 64 {
                lines |= 1 << line;
            }
        }
        let mut full = node;
        seal(&mut full);
        reseal(&mut node, &original, lines);
        assert_eq!(node, full, "case {case}");
        // Lines that did not change may be named too.
        let mut wider = node;
        reseal(&mut wider, &original, lines | 1 << (rng.next() % 64));
        assert_eq!(wider, full, "case {case}, one more line");
    }
}
