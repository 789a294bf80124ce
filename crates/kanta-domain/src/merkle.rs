//! Merkle tree hashing as in RFC 9162 (Certificate Transparency 2.0) §2.1, for the tamper-evident
//! audit log (R-OPS-4): leaf and node hashes, the root of any prefix, inclusion and consistency
//! proofs and their verification, and [`Frontier`], which appends leaves and yields the root in
//! O(log n) without holding the whole tree.
//!
//! Pure functions over leaf hashes; SHA-256 comes from the caller-independent `sha2` crate.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The hash of the empty tree: `SHA-256()`.
pub fn empty_root() -> Hash {
    Sha256::new().finalize().into()
}

/// The largest power of two strictly less than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH(D[n]): the root of a tree over `leaves`.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]): the audit path for leaf `index`.
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return vec![];
    }
    let k = split(n);
    if index < k {
        let mut p = inclusion_proof(index, &leaves[..k]);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = inclusion_proof(index - k, &leaves[k..]);
        p.push(root(&leaves[..k]));
        p
    }
}

/// Verify an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && &r == root
}

/// PROOF(m, D[n]): a consistency proof between the tree of the first `m` leaves and all of them.
pub fn consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    if m == 0 || m >= leaves.len() {
        return vec![];
    }
    subproof(m, leaves, true)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete { vec![] } else { vec![root(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], complete);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(root(&leaves[..k]));
        p
    }
}

/// Verify a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(m: u64, n: u64, root_m: &Hash, root_n: &Hash, proof: &[Hash]) -> bool {
    if m > n {
        return false;
    }
    if m == n {
        return proof.is_empty() && root_m == root_n;
    }
    if m == 0 {
        return proof.is_empty();
    }
    let mut proof: Vec<Hash> = proof.to_vec();
    if m.is_power_of_two() {
        proof.insert(0, *root_m);
    }
    let Some((first, rest)) = proof.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (m - 1, n - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    &fr == root_m && &sr == root_n && s_n == 0
}

/// The right edge of a growing tree: the roots of its perfect subtrees, largest first. Appending
/// a leaf and reading the root are O(log n); the frontier is what the audit writer persists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, from the most significant bit down.
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Frontier::default()
    }

    /// Rebuild from a stored size and nodes; `None` if they do not fit together.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (size.count_ones() as usize == nodes.len()).then_some(Frontier { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let Some(left) = self.nodes.pop() else { break };
            node = node_hash(&left, &node);
            size >>= 1;
        }
        self.nodes.push(node);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("record {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            empty_root()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let l = leaves(3);
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
    }

    #[test]
    fn frontier_agrees_with_root_for_every_size() {
        let l = leaves(70);
        let mut f = Frontier::new();
        assert_eq!(f.root(), empty_root());
        for n in 1..=70 {
            f.push(l[n - 1]);
            assert_eq!(f.root(), root(&l[..n]), "size {n}");
            let again = Frontier::from_parts(f.size(), f.nodes().to_vec()).unwrap();
            assert_eq!(again, f);
        }
        assert!(Frontier::from_parts(3, vec![]).is_none());
    }

    proptest! {
        /// Cross-check against an independent RFC 6962/9162 implementation (the `ct-merkle` crate):
        /// the same roots, byte-identical inclusion and consistency proofs, accepted by its verifier.
        #[test]
        fn agrees_with_an_independent_implementation(records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..80), seed in any::<usize>()) {
            let mut ct: ct_merkle::mem_backed_tree::MemoryBackedTree<sha2_for_ct_merkle::Sha256, Vec<u8>> = ct_merkle::mem_backed_tree::MemoryBackedTree::new();
            let mut leaves = vec![];
            for r in &records {
                ct.push(r.clone());
                leaves.push(leaf_hash(r));
                let (theirs, ours) = (ct.root(), root(&leaves));
                prop_assert_eq!(theirs.as_bytes().as_slice(), ours.as_slice());
            }
            let n = leaves.len();
            let i = seed % n;
            let ours: Vec<u8> = inclusion_proof(i, &leaves).concat();
            let theirs = ct.prove_inclusion(i);
            prop_assert_eq!(theirs.as_bytes(), ours.as_slice());
            let from_ours = ct_merkle::InclusionProof::<sha2_for_ct_merkle::Sha256>::from_bytes(ours);
            prop_assert!(ct.root().verify_inclusion(&records[i], i as u64, &from_ours).is_ok());
            if n > 1 {
                let m = 1 + seed % (n - 1);
                let ours: Vec<u8> = consistency_proof(m, &leaves).concat();
                let theirs = ct.prove_consistency(n - m);
                prop_assert_eq!(theirs.as_bytes(), ours.as_slice());
                let old = ct_merkle::RootHash::<sha2_for_ct_merkle::Sha256>::new(root(&leaves[..m]).into(), m as u64);
                let from_ours = ct_merkle::ConsistencyProof::<sha2_for_ct_merkle::Sha256>::try_from_bytes(ours).unwrap();
                prop_assert!(ct.root().verify_consistency(&old, &from_ours).is_ok());
            }
        }

        #[test]
        fn every_inclusion_proof_verifies_and_a_wrong_leaf_does_not(n in 1usize..200, seed in any::<usize>()) {
            let l = leaves(n);
            let r = root(&l);
            let i = seed % n;
            let p = inclusion_proof(i, &l);
            prop_assert!(verify_inclusion(i as u64, n as u64, &l[i], &p, &r));
            prop_assert!(!verify_inclusion(i as u64, n as u64, &leaf_hash(b"forged"), &p, &r));
            if n > 1 {
                prop_assert!(!verify_inclusion(((i + 1) % n) as u64, n as u64, &l[i], &p, &r));
            }
        }

        #[test]
        fn every_consistency_proof_verifies_and_a_rewritten_prefix_does_not(n in 1usize..200, seed in any::<usize>()) {
            let l = leaves(n);
            let m = 1 + seed % n;
            let p = consistency_proof(m, &l);
            prop_assert!(verify_consistency(m as u64, n as u64, &root(&l[..m]), &root(&l), &p));
            let mut forged = l.clone();
            forged[seed % m] = leaf_hash(b"changed");
            if m < n {
                prop_assert!(!verify_consistency(m as u64, n as u64, &root(&forged[..m]), &root(&l), &p));
            }
        }
    }
}
