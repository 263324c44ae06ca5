//! The Merkle tree against RFC 9162's definitions, computed the slow way.

use super::*;

fn h(s: &str) -> Hash {
    let v = hex::decode(s).unwrap();
    v.try_into().unwrap()
}

fn hs(v: &[&str]) -> Vec<Hash> {
    v.iter().map(|s| h(s)).collect()
}

/// RFC 6962 test inputs used by the CT reference implementations.
fn kat_leaves() -> Vec<Hash> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|s| leaf_hash(&hex::decode(s).unwrap()))
    .collect()
}

/// Roots for sizes 0..=8 of `kat_leaves()`.
const KAT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn kat_root(n: usize) -> Hash {
    h(KAT_ROOTS[n])
}

/// Leaves for the exhaustive tests: `leaf_hash([i])`.
fn leaves(n: usize) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&[i as u8])).collect()
}

#[test]
fn kat_hashes() {
    assert_eq!(root(&[]), h(KAT_ROOTS[0]));
    assert_eq!(Frontier::new().root(), h(KAT_ROOTS[0]));
    let l = kat_leaves();
    assert_eq!(
        l[0],
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    );
    assert_eq!(
        l[1],
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7")
    );
    assert_eq!(
        node_hash(&l[0], &l[1]),
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")
    );
    let mut f = Frontier::new();
    for n in 1..=8 {
        f.push(l[n - 1]);
        assert_eq!(root(&l[..n]), kat_root(n), "root size {n}");
        assert_eq!(f.root(), kat_root(n), "frontier size {n}");
        assert_eq!(f.size(), n as u64);
    }
}

#[test]
fn kat_inclusion() {
    // (index, size, path) from the CT reference test data (transparency-dev/merkle testonly).
    let cases: &[(u64, u64, &[&str])] = &[
        (0, 1, &[]),
        (
            0,
            2,
            &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
        ),
        (
            1,
            2,
            &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    let l = kat_leaves();
    for &(index, size, want) in cases {
        let want = hs(want);
        assert_eq!(inclusion_proof(&l, index, size).unwrap(), want, "({index}, {size})");
        verify_inclusion(&l[index as usize], index, size, &want, &kat_root(size as usize)).unwrap();
    }
}

#[test]
fn kat_consistency() {
    // (old, new, proof): first four from the CT reference test data, the rest from an independent
    // Python implementation of RFC 9162 §2.1.4.1.
    let cases: &[(u64, u64, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            3,
            7,
            &[
                "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
                "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                "837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e",
            ],
        ),
        (
            4,
            8,
            &["6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
        ),
    ];
    let l = kat_leaves();
    for &(old, new, want) in cases {
        let want = hs(want);
        assert_eq!(consistency_proof(&l, old, new).unwrap(), want, "({old}, {new})");
        verify_consistency(old, new, &kat_root(old as usize), &kat_root(new as usize), &want).unwrap();
    }
}

/// SHA-256 over every root (sizes 0..=64) and every inclusion and consistency proof element
/// (sizes 1..=64) for `leaves(64)`, as computed by an independent Python (hashlib) implementation.
#[test]
fn transcript_matches_reference_implementation() {
    let l = leaves(64);
    let mut t = Sha256::new();
    for n in 0..=64 {
        t.update(root(&l[..n]));
    }
    for n in 1..=64u64 {
        for i in 0..n {
            for p in inclusion_proof(&l, i, n).unwrap() {
                t.update(p);
            }
        }
    }
    for n in 1..=64u64 {
        for m in 1..=n {
            for p in consistency_proof(&l, m, n).unwrap() {
                t.update(p);
            }
        }
    }
    let got: Hash = t.finalize().into();
    assert_eq!(
        got,
        h("12c5ba22431a9f54bac6455065f4d2551ea815c5e721ee1d62d8dcfc12915c4f")
    );
    assert_eq!(
        root(&l),
        h("4433a69f32158463382405ec957c31b8bc89a1f08964b920f6cf53dc13098cb3")
    );
}

#[test]
fn exhaustive_up_to_64() {
    let l = leaves(64);
    let roots: Vec<Hash> = (0..=64).map(|n| root(&l[..n])).collect();
    let mut f = Frontier::new();
    assert_eq!(f.root(), roots[0]);
    for n in 1..=64usize {
        f.push(l[n - 1]);
        assert_eq!(f.size(), n as u64);
        assert_eq!(f.root(), roots[n], "frontier size {n}");
        assert!(f.nodes.len() == (n as u64).count_ones() as usize);
        let size = n as u64;
        for i in 0..size {
            let p = inclusion_proof(&l, i, size).unwrap();
            assert_eq!(p.len(), inclusion_proof_len(i, size));
            verify_inclusion(&l[i as usize], i, size, &p, &roots[n]).unwrap();
            // Only the first `size` leaves matter.
            assert_eq!(inclusion_proof(&l[..n], i, size).unwrap(), p);
        }
        for old in 0..=size {
            let p = consistency_proof(&l, old, size).unwrap();
            verify_consistency(old, size, &roots[old as usize], &roots[n], &p).unwrap();
            assert_eq!(consistency_proof(&l[..n], old, size).unwrap(), p);
        }
    }
}

fn flips(proof: &[Hash]) -> impl Iterator<Item = Vec<Hash>> + '_ {
    (0..proof.len()).flat_map(move |e| {
        (0..32).map(move |b| {
            let mut p = proof.to_vec();
            p[e][b] ^= 0x01;
            p
        })
    })
}

fn length_tampers(proof: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = vec![];
    if !proof.is_empty() {
        out.push(proof[1..].to_vec());
        out.push(proof[..proof.len() - 1].to_vec());
        out.push(vec![]);
    }
    let mut ext = proof.to_vec();
    ext.push([0u8; 32]);
    out.push(ext);
    let mut ext = vec![[0xabu8; 32]];
    ext.extend_from_slice(proof);
    out.push(ext);
    let mut dup = proof.to_vec();
    dup.extend_from_slice(proof);
    if !proof.is_empty() {
        out.push(dup);
    }
    out
}

#[test]
fn tampered_inclusion_fails() {
    const N: usize = 24;
    let l = leaves(N);
    let roots: Vec<Hash> = (0..=N).map(|n| root(&l[..n])).collect();
    for n in 1..=N {
        let size = n as u64;
        for i in 0..size {
            let leaf = l[i as usize];
            let p = inclusion_proof(&l, i, size).unwrap();
            for bad in flips(&p) {
                assert_eq!(
                    verify_inclusion(&leaf, i, size, &bad, &roots[n]),
                    Err(ProofError::RootMismatch)
                );
            }
            for bad in length_tampers(&p) {
                assert!(matches!(
                    verify_inclusion(&leaf, i, size, &bad, &roots[n]),
                    Err(ProofError::WrongProofLength { .. })
                ));
            }
            // Wrong leaf, wrong root.
            let mut bad_leaf = leaf;
            bad_leaf[31] ^= 0x80;
            assert!(verify_inclusion(&bad_leaf, i, size, &p, &roots[n]).is_err());
            let mut bad_root = roots[n];
            bad_root[0] ^= 0x01;
            assert!(verify_inclusion(&leaf, i, size, &p, &bad_root).is_err());
            // Wrong index (same size, same root).
            for j in 0..size + 2 {
                if j != i {
                    assert!(
                        verify_inclusion(&leaf, j, size, &p, &roots[n]).is_err(),
                        "i={i} j={j} n={n}"
                    );
                }
            }
            // Wrong size, checked against that size's true root.
            for (m, root_m) in roots.iter().enumerate() {
                if m != n {
                    assert!(
                        verify_inclusion(&leaf, i, m as u64, &p, root_m).is_err(),
                        "i={i} n={n} m={m}"
                    );
                }
            }
        }
    }
}

#[test]
fn tampered_consistency_fails() {
    const N: usize = 24;
    let l = leaves(N);
    let roots: Vec<Hash> = (0..=N).map(|n| root(&l[..n])).collect();
    for new in 1..=N {
        for old in 1..new {
            let (o, n) = (old as u64, new as u64);
            let p = consistency_proof(&l, o, n).unwrap();
            for bad in flips(&p) {
                assert_eq!(
                    verify_consistency(o, n, &roots[old], &roots[new], &bad),
                    Err(ProofError::RootMismatch)
                );
            }
            for bad in length_tampers(&p) {
                assert!(matches!(
                    verify_consistency(o, n, &roots[old], &roots[new], &bad),
                    Err(ProofError::WrongProofLength { .. })
                ));
            }
            let mut bad_root = roots[old];
            bad_root[7] ^= 0x10;
            assert!(verify_consistency(o, n, &bad_root, &roots[new], &p).is_err());
            let mut bad_root = roots[new];
            bad_root[7] ^= 0x10;
            assert!(verify_consistency(o, n, &roots[old], &bad_root, &p).is_err());
            // Swapped roots.
            assert!(verify_consistency(o, n, &roots[new], &roots[old], &p).is_err());
            // Wrong sizes, checked against those sizes' true roots.
            for (o2, n2) in (0..=N).flat_map(|a| (0..=N).map(move |b| (a, b))) {
                if (o2, n2) != (old, new) {
                    assert!(
                        verify_consistency(o2 as u64, n2 as u64, &roots[o2], &roots[n2], &p).is_err(),
                        "proof ({old},{new}) accepted for ({o2},{n2})"
                    );
                }
            }
        }
        // Equal sizes: empty proof and equal roots only.
        let s = new as u64;
        assert!(verify_consistency(s, s, &roots[new], &roots[new], &[]).is_ok());
        assert!(verify_consistency(s, s, &roots[new], &roots[new - 1], &[]).is_err());
        assert!(verify_consistency(s, s, &roots[new], &roots[new], &[roots[new]]).is_err());
        // Old size 0: empty proof, old root must be the empty root.
        assert!(verify_consistency(0, s, &roots[0], &roots[new], &[]).is_ok());
        assert!(verify_consistency(0, s, &roots[new], &roots[new], &[]).is_err());
        assert!(verify_consistency(0, s, &roots[0], &roots[new], &[roots[new]]).is_err());
    }
}

#[test]
fn generation_errors() {
    let l = leaves(8);
    assert_eq!(
        inclusion_proof(&l, 0, 0),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        inclusion_proof(&l, 5, 5),
        Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert_eq!(
        inclusion_proof(&l, 0, 9),
        Err(ProofError::SizeOutOfRange { size: 9, limit: 8 })
    );
    assert_eq!(
        inclusion_proof(&[], 0, 1),
        Err(ProofError::SizeOutOfRange { size: 1, limit: 0 })
    );
    assert!(inclusion_proof(&l, u64::MAX, u64::MAX).is_err());
    assert_eq!(
        consistency_proof(&l, 3, 2),
        Err(ProofError::SizeOutOfRange { size: 3, limit: 2 })
    );
    assert_eq!(
        consistency_proof(&l, 1, 9),
        Err(ProofError::SizeOutOfRange { size: 9, limit: 8 })
    );
    assert!(consistency_proof(&l, 0, u64::MAX).is_err());
    assert_eq!(consistency_proof(&l, 0, 0), Ok(vec![]));
    assert_eq!(consistency_proof(&[], 0, 0), Ok(vec![]));
    assert!(verify_consistency(0, 0, &root(&[]), &root(&[]), &[]).is_ok());
    assert!(verify_consistency(0, 0, &root(&[]), &l[0], &[]).is_err());
    let e = ProofError::WrongProofLength { expected: 3, actual: 1 };
    assert_eq!(e.to_string(), "wrong proof length: expected 3 hashes, got 1");
    let _: &dyn std::error::Error = &e;
}

#[test]
fn hostile_inputs_do_not_panic() {
    let sizes = [
        0,
        1,
        2,
        3,
        7,
        8,
        9,
        1 << 32,
        (1 << 63) - 1,
        1 << 63,
        (1 << 63) + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    let junk: Vec<Hash> = (0..130u8).map(|i| [i; 32]).collect();
    let some_root = [0x42u8; 32];
    let leaf = [0x17u8; 32];
    for &a in &sizes {
        for &b in &sizes {
            // Every proof length 0..=130, including the exact expected one for the huge sizes.
            for len in 0..=junk.len() {
                let p = &junk[..len];
                assert!(verify_inclusion(&leaf, a, b, p, &some_root).is_err());
                assert!(verify_consistency(a, b, &some_root, &some_root, p).is_err() || (a == b && len == 0));
            }
            for idx in [0, 1, a / 2, a.saturating_sub(1)] {
                if idx < b {
                    let len = inclusion_proof_len(idx, b);
                    assert!(len <= 128);
                    let r = verify_inclusion(&leaf, idx, b, &junk[..len], &some_root);
                    assert_eq!(r, Err(ProofError::RootMismatch));
                }
            }
            if 0 < a && a < b {
                let len = consistency_proof_len(a, b);
                assert!((1..=129).contains(&len));
                let r = verify_consistency(a, b, &some_root, &some_root, &junk[..len]);
                assert_eq!(r, Err(ProofError::RootMismatch));
            }
            let _ = inclusion_proof(&junk, a, b);
            let _ = consistency_proof(&junk, a, b);
        }
    }
}
