//! Small-number suppression (issue 14, item 7): on generated tables, no published table lets a
//! suppressed cell be derived by subtraction from its row or column total, nor solved from all the
//! totals together (checked here by linear algebra on what `publish` outputs, not by the graph
//! argument the gateway uses).

use isa_gateway::policy::suppression::{SuppressionRule, publish, suppressed};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde_json::{Value, json};

fn rule() -> SuppressionRule {
    SuppressionRule {
        smallest: 1,
        largest: 4,
        round_to: 5,
        secondary: true,
        apply: true,
    }
}

proptest! {
    // A fixed seed, as for every property here: the same cases on every machine.
    #![proptest_config(ProptestConfig { cases: 512, rng_seed: RngSeed::Fixed(0x5_a11), ..ProptestConfig::default() })]

    #[test]
    fn no_suppressed_cell_is_alone_in_its_row_or_column(
        // Two rows and two columns at least, as a publishable table has.
        cells in proptest::collection::vec(proptest::collection::vec(0u64..30, 2..7), 2..7)
    ) {
        let width = cells.iter().map(Vec::len).max().unwrap_or(0);
        let cells: Vec<Vec<u64>> = cells.into_iter().map(|mut r| { r.resize(width, 0); r }).collect();
        let hidden = suppressed(&cells, &rule());
        for (r, row) in hidden.iter().enumerate() {
            for (c, h) in row.iter().enumerate() {
                prop_assert!(*h || !(1..=4).contains(&cells[r][c]), "a small count published at {r},{c}");
            }
            prop_assert!(row.iter().filter(|h| **h).count() != 1, "row {r} has one suppressed cell");
        }
        for c in 0..width {
            prop_assert!(hidden.iter().filter(|row| row[c]).count() != 1, "column {c} has one suppressed cell");
        }
    }

    #[test]
    fn no_suppressed_cell_can_be_solved_from_everything_published(
        cells in proptest::collection::vec(proptest::collection::vec(0u64..30, 2..6), 2..6)
    ) {
        let width = cells.iter().map(Vec::len).max().unwrap_or(0);
        let cells: Vec<Vec<u64>> = cells.into_iter().map(|mut r| { r.resize(width, 0); r }).collect();
        let out = match publish(&json!({"cells": cells}), &rule()) {
            Ok(out) => out,
            // Refused as too few to publish: nothing is published, so nothing can be solved.
            Err(e) => {
                prop_assert_eq!(e.pointer, "/cells");
                return Ok(());
            }
        };
        let unknowns: Vec<(usize, usize)> = (0..cells.len())
            .flat_map(|r| (0..width).map(move |c| (r, c)))
            .filter(|(r, c)| out["cells"][r][c].is_null())
            .collect();
        // The equations an attacker has, unrounded (stronger than what is published): each
        // published row and column total, and the grand total, less the published cells.
        let mut equations: Vec<Vec<f64>> = Vec::new();
        let line = |keep: &dyn Fn(usize, usize) -> bool| unknowns.iter().map(|(r, c)| f64::from(u8::from(keep(*r, *c)))).collect::<Vec<f64>>();
        // Counts are never negative: hidden cells whose known sum is zero are each zero.
        let mut pinned: Vec<Vec<f64>> = Vec::new();
        let mut pin_if_zero = |keep: &dyn Fn(usize, usize) -> bool| {
            let group: Vec<usize> = (0..unknowns.len()).filter(|&i| keep(unknowns[i].0, unknowns[i].1)).collect();
            if !group.is_empty() && group.iter().all(|&i| cells[unknowns[i].0][unknowns[i].1] == 0) {
                for &i in &group {
                    pinned.push((0..unknowns.len()).map(|j| f64::from(u8::from(i == j))).collect());
                }
            }
        };
        let row_shown = |r: usize| out["row_totals"][r] != Value::Null;
        let column_shown = |c: usize| out["column_totals"][c] != Value::Null;
        for r in (0..cells.len()).filter(|&r| row_shown(r)) {
            equations.push(line(&|r2, _| r2 == r));
            pin_if_zero(&|r2, _| r2 == r);
        }
        for c in (0..width).filter(|&c| column_shown(c)) {
            equations.push(line(&|_, c2| c2 == c));
            pin_if_zero(&|_, c2| c2 == c);
        }
        pin_if_zero(&|r2, _| !row_shown(r2));
        pin_if_zero(&|_, c2| !column_shown(c2));
        equations.extend(pinned);
        equations.push(line(&|_, _| true));
        let base = rank(equations.clone());
        // A hidden zero may be given away (it says nothing about anyone); a count may not.
        for (i, (r, c)) in unknowns.iter().enumerate().filter(|(_, (r, c))| cells[*r][*c] > 0) {
            let mut with = equations.clone();
            with.push((0..unknowns.len()).map(|j| f64::from(u8::from(i == j))).collect());
            prop_assert!(rank(with) > base, "cell {r},{c} can be solved from {out}");
        }
    }
}

/// The rank of a small 0/1 matrix, by Gaussian elimination with partial pivoting.
fn rank(mut m: Vec<Vec<f64>>) -> usize {
    let columns = m.first().map_or(0, Vec::len);
    let mut rank = 0;
    for c in 0..columns {
        let Some(p) = (rank..m.len()).max_by(|a, b| m[*a][c].abs().total_cmp(&m[*b][c].abs())) else {
            break;
        };
        if m[p][c].abs() < 1e-9 {
            continue;
        }
        m.swap(rank, p);
        for r in 0..m.len() {
            if r != rank {
                let pivot = m[rank].clone();
                let f = m[r][c] / pivot[c];
                for (x, p) in m[r].iter_mut().zip(&pivot).skip(c) {
                    *x -= f * p;
                }
            }
        }
        rank += 1;
    }
    rank
}
