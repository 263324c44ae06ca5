//! Small-number suppression for statistical returns: a table of counts published so that no one
//! can be picked out of it.
//!
//! The rule (set per agreement): counts from `smallest` to `largest` (e.g. 1 to 4) are suppressed
//! (published as null); every other count and every total is rounded to the nearest `round_to`
//! (e.g. 5); and, with `secondary`, more cells are suppressed until no suppressed cell can be
//! solved exactly from what is published, even were every count and total published unrounded:
//! first until no row or column holds exactly one suppressed cell (its own line's total would
//! give it away), then until no chain of suppressed cells across several lines can be solved from
//! their totals ([`recoverable`]). Lines wholly hidden hide their totals. Totals are computed
//! here from the true counts, then rounded, never taken from the sender. The gateway either
//! applies the rule or refuses a table that does not already keep it.
//!
//! Not audited: bounds. A suppressed cell cannot be solved, but the totals may still narrow it to
//! a range (interval disclosure); the rounding blurs that range, and nothing here measures it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An agreement's suppression rule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionRule {
    /// The smallest count suppressed (usually 1: zero is not disclosive).
    pub smallest: u64,
    /// The largest count suppressed (e.g. 4, or 9).
    pub largest: u64,
    /// Published counts and totals are rounded to the nearest multiple of this (1: not rounded).
    pub round_to: u64,
    /// Suppress further cells so that no suppressed cell can be derived from its row or column.
    pub secondary: bool,
    /// Apply the rule (`true`), or refuse a table whose cells do not already keep it (`false`).
    pub apply: bool,
}

impl SuppressionRule {
    /// How the ledger records the rule applied.
    pub fn describe(&self) -> String {
        format!(
            "suppress {}-{} round {}{}",
            self.smallest,
            self.largest,
            self.round_to,
            if self.secondary { " secondary" } else { "" }
        )
    }

    fn small(&self, n: u64) -> bool {
        (self.smallest..=self.largest).contains(&n)
    }

    fn round(&self, n: u64) -> u64 {
        let r = self.round_to.max(1);
        (n + r / 2) / r * r
    }
}

/// Why a table cannot be published under the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpublishable {
    /// A JSON pointer into the payload.
    pub pointer: String,
    pub reason: &'static str,
}

/// Which cells of `cells` the rule suppresses: primary (small counts), then secondary until every
/// row and column holds none or at least two suppressed cells and no suppressed cell is
/// [`recoverable`] (always reached when the table has at least two rows and two columns, which
/// [`publish`] requires: with every cell suppressed, nothing is).
pub fn suppressed(cells: &[Vec<u64>], rule: &SuppressionRule) -> Vec<Vec<bool>> {
    let mut out: Vec<Vec<bool>> = cells
        .iter()
        .map(|row| row.iter().map(|n| rule.small(*n)).collect())
        .collect();
    if !rule.secondary {
        return out;
    }
    let columns = cells.iter().map(Vec::len).max().unwrap_or(0);
    // Each pass suppresses at least one more cell or stops; a table has finitely many.
    loop {
        let mut changed = false;
        for r in 0..out.len() {
            if out[r].iter().filter(|s| **s).count() == 1 {
                let in_row = (0..out[r].len()).map(|c| (r, c)).collect();
                changed |= suppress_smallest(cells, &mut out, in_row);
            }
        }
        for c in 0..columns {
            let in_column: Vec<(usize, usize)> = (0..out.len()).filter(|r| c < out[*r].len()).map(|r| (r, c)).collect();
            if in_column.iter().filter(|(r, c)| out[*r][*c]).count() == 1 {
                changed |= suppress_smallest(cells, &mut out, in_column);
            }
        }
        if changed {
            continue;
        }
        // Every line holds none or two or more; a chain across lines may still be solvable. Hide
        // one more cell beside the first such cell (in its row or column, else anywhere), then
        // look at the lines again.
        let Some(&(r, c)) = recoverable(cells, &out).first() else {
            return out;
        };
        let beside: Vec<(usize, usize)> = (0..out[r].len())
            .map(|c2| (r, c2))
            .chain((0..out.len()).filter(|r2| c < out[*r2].len()).map(|r2| (r2, c)))
            .collect();
        let anywhere = (0..out.len())
            .flat_map(|r2| (0..out[r2].len()).map(move |c2| (r2, c2)))
            .collect();
        if !suppress_smallest(cells, &mut out, beside) && !suppress_smallest(cells, &mut out, anywhere) {
            return out;
        }
    }
}

/// The suppressed cells of `cells` that could be solved exactly from the published cells, the
/// totals of the lines not wholly hidden, and the grand total, were they all published unrounded.
///
/// Rows and columns are the nodes of a graph and each suppressed cell an edge between its row and
/// its column; the rows whose totals are hidden are one node (the grand total, less the published
/// row totals, is their sum), and so are such columns. What is published fixes the sum of the
/// cells at each node, so the cells can be shifted, +1 and −1 in turn, round any cycle without
/// changing anything published: a cell on a cycle cannot be solved. A cell on no cycle (a bridge)
/// can: removing it splits the graph, and the side it leaves has every other sum known.
///
/// Counts are never negative, so a hidden zero is taken as known: a line whose hidden cells sum
/// to zero gives every one of them away, and a cycle through a zero could not shift it down.
/// Every cycle left is of counts of at least one, which shift both ways.
pub fn recoverable(cells: &[Vec<u64>], hidden: &[Vec<bool>]) -> Vec<(usize, usize)> {
    let rows = hidden.len();
    let columns = hidden.iter().map(Vec::len).max().unwrap_or(0);
    let row_hidden = |r: usize| hidden[r].iter().all(|h| *h);
    let column_hidden = |c: usize| hidden.iter().all(|row| row.get(c).copied().unwrap_or(true));
    let (hidden_rows, hidden_columns) = (rows + columns, rows + columns + 1);
    let count = |r: usize, c: usize| cells.get(r).and_then(|row| row.get(c)).copied().unwrap_or(0);
    // Each hidden count as (its cell, its edge: row node, column node).
    type Pairs = Vec<(usize, usize)>;
    let (at, edges): (Pairs, Pairs) = hidden
        .iter()
        .enumerate()
        .flat_map(|(r, row)| row.iter().enumerate().filter(|(_, h)| **h).map(move |(c, _)| (r, c)))
        .filter(|&(r, c)| count(r, c) > 0)
        .map(|(r, c)| {
            let a = if row_hidden(r) { hidden_rows } else { r };
            let b = if column_hidden(c) { hidden_columns } else { rows + c };
            ((r, c), (a, b))
        })
        .unzip();
    let mut found: Vec<(usize, usize)> = bridges(rows + columns + 2, &edges).into_iter().map(|e| at[e]).collect();
    found.sort_unstable();
    found
}

/// The edges on no cycle of an undirected multigraph (two edges between the same nodes make a
/// cycle), by one depth-first search keeping each node's lowest reachable discovery order
/// (Tarjan), so a table of thousands of hidden cells is audited in linear time.
fn bridges(nodes: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut adjacent: Vec<Vec<(usize, usize)>> = vec![Vec::new(); nodes];
    for (e, &(a, b)) in edges.iter().enumerate() {
        adjacent[a].push((b, e));
        adjacent[b].push((a, e));
    }
    const UNSEEN: usize = usize::MAX;
    let (mut order, mut low) = (vec![UNSEEN; nodes], vec![0; nodes]);
    let mut next_order = 0;
    let mut found = Vec::new();
    for root in 0..nodes {
        if order[root] != UNSEEN {
            continue;
        }
        order[root] = next_order;
        low[root] = next_order;
        next_order += 1;
        // (node, the edge it was reached by, how many of its edges are looked at)
        let mut stack = vec![(root, usize::MAX, 0usize)];
        while let Some(top) = stack.last_mut() {
            let (v, via) = (top.0, top.1);
            if let Some(&(w, e)) = adjacent[v].get(top.2) {
                top.2 += 1;
                if e == via {
                    continue;
                }
                if order[w] == UNSEEN {
                    order[w] = next_order;
                    low[w] = next_order;
                    next_order += 1;
                    stack.push((w, e, 0));
                } else {
                    low[v] = low[v].min(order[w]);
                }
            } else {
                stack.pop();
                if let Some(&(parent, _, _)) = stack.last() {
                    low[parent] = low[parent].min(low[v]);
                    if low[v] > order[parent] {
                        found.push(via);
                    }
                }
            }
        }
    }
    found
}

/// Suppresses the smallest not-yet-suppressed cell among `among` (zeros last: a zero reveals
/// nothing about anyone, but it still hides the sum); `false` if every cell is already suppressed.
fn suppress_smallest(cells: &[Vec<u64>], out: &mut [Vec<bool>], among: Vec<(usize, usize)>) -> bool {
    let pick = among
        .into_iter()
        .filter(|(r, c)| !out[*r][*c])
        .min_by_key(|(r, c)| (cells[*r][*c] == 0, cells[*r][*c]));
    match pick {
        Some((r, c)) => {
            out[r][c] = true;
            true
        }
        None => false,
    }
}

/// The table as published under `rule`: suppressed cells null, the rest and every total rounded.
/// With `apply = false`, a table holding any count the rule would suppress is refused instead.
pub fn publish(payload: &Value, rule: &SuppressionRule) -> Result<Value, Unpublishable> {
    let cells: Vec<Vec<u64>> = payload
        .get("cells")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .map_or_else(Vec::new, |r| r.iter().filter_map(Value::as_u64).collect())
                })
                .collect()
        })
        .unwrap_or_default();
    // A single row or column would give a suppressed cell away through its total.
    let columns = cells.iter().map(Vec::len).max().unwrap_or(0);
    let labels = |key: &str| payload.get(key).and_then(Value::as_array).map(Vec::len);
    if labels("rows").is_some_and(|n| n != cells.len()) || labels("columns").is_some_and(|n| n != columns) {
        return Err(Unpublishable {
            pointer: "/rows".into(),
            reason: "the row and column labels must match the table's rows and columns",
        });
    }
    if cells.len() < 2 || columns < 2 || cells.iter().any(|row| row.len() != columns) {
        return Err(Unpublishable {
            pointer: "/cells".into(),
            reason: "a table needs at least two rows and two columns, each row as long as the others",
        });
    }
    if !rule.apply
        && let Some((r, c)) = cells
            .iter()
            .enumerate()
            .find_map(|(r, row)| row.iter().position(|n| rule.small(*n)).map(|c| (r, c)))
    {
        return Err(Unpublishable {
            pointer: format!("/cells/{r}/{c}"),
            reason: "a count the agreement's suppression rule does not allow to be published",
        });
    }
    let hidden = suppressed(&cells, rule);
    // Too few people: even with every cell hidden, the totals would give a count away (a table of
    // one non-zero count, say).
    if rule.secondary && !recoverable(&cells, &hidden).is_empty() {
        return Err(Unpublishable {
            pointer: "/cells".into(),
            reason: "the totals would give a suppressed count away whatever is hidden: too few to publish",
        });
    }
    let published: Vec<Value> = cells
        .iter()
        .zip(&hidden)
        .map(|(row, hide)| {
            Value::Array(
                row.iter()
                    .zip(hide)
                    .map(|(n, h)| if *h { Value::Null } else { json!(rule.round(*n)) })
                    .collect(),
            )
        })
        .collect();
    // A line whose every cell is hidden hides its total too: its total would bound the hidden
    // counts (a published 0 says they are small).
    let row_totals: Vec<Value> = cells
        .iter()
        .zip(&hidden)
        .map(|(row, hide)| {
            if hide.iter().all(|h| *h) {
                Value::Null
            } else {
                json!(rule.round(row.iter().sum()))
            }
        })
        .collect();
    let column_totals: Vec<Value> = (0..columns)
        .map(|c| {
            if hidden.iter().all(|row| row[c]) {
                Value::Null
            } else {
                json!(rule.round(cells.iter().filter_map(|row| row.get(c)).sum()))
            }
        })
        .collect();
    let total = rule.round(cells.iter().flatten().sum());
    let mut out = payload.clone();
    if let Some(o) = out.as_object_mut() {
        o.insert("cells".into(), Value::Array(published));
        o.insert("row_totals".into(), json!(row_totals));
        o.insert("column_totals".into(), json!(column_totals));
        o.insert("total".into(), json!(total));
        o.insert("suppression".into(), json!(rule.describe()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(secondary: bool) -> SuppressionRule {
        SuppressionRule {
            smallest: 1,
            largest: 4,
            round_to: 5,
            secondary,
            apply: true,
        }
    }

    #[test]
    fn small_counts_are_hidden_and_the_rest_rounded_with_totals_from_the_true_counts() {
        let payload = json!({"period": "2026-Q1", "cells": [[3, 12], [7, 20]]});
        let out = publish(&payload, &rule(true)).unwrap();
        // 3 is small; its row and column each need a second suppressed cell: 7 (column 0, smallest
        // left) and 12 (row 0); then 20 completes row 1 and column 1. Every line is hidden, so
        // are its totals.
        assert_eq!(out["cells"], json!([[null, null], [null, null]]));
        assert_eq!(out["row_totals"], json!([null, null]));
        assert_eq!(out["column_totals"], json!([null, null]));
        assert_eq!(out["total"], json!(40));
        let wide = json!({"cells": [[3, 12, 30], [7, 20, 41], [8, 9, 50]]});
        let out = publish(&wide, &rule(true)).unwrap();
        // 3 pulls in 12 (row) and 7 (column); then 9 (column 1), 20 (row 1) and 8 (row 2).
        assert_eq!(
            out["cells"],
            json!([[null, null, 30], [null, null, 40], [null, null, 50]])
        );
    }

    /// Two blocks of small counts, each line holding two or three: the line rule alone is kept,
    /// yet the cell joining the blocks is the difference of the first block's row and column
    /// totals. Secondary suppression goes on until no cell can be solved.
    #[test]
    fn a_chain_across_lines_that_the_totals_would_solve_is_broken() {
        let cells = vec![
            vec![1, 2, 3, 20],
            vec![4, 1, 20, 20],
            vec![20, 20, 2, 3],
            vec![20, 20, 4, 1],
        ];
        let primary = suppressed(&cells, &rule(false));
        assert_eq!(recoverable(&cells, &primary), vec![(0, 2)]);
        let hidden = suppressed(&cells, &rule(true));
        assert!(recoverable(&cells, &hidden).is_empty(), "{hidden:?}");
        assert!(hidden[0][2], "the small count itself stays hidden");
        // A cycle of two in each of two rows and two columns is safe as it stands...
        let square = vec![
            vec![true, true, false],
            vec![true, true, false],
            vec![false, false, false],
        ];
        let counts = vec![vec![3, 2, 20], vec![4, 1, 20], vec![20, 20, 20]];
        assert!(recoverable(&counts, &square).is_empty());
        // ...but not through a hidden zero: column 1 sums to 0, so both its hidden cells are 0,
        // and then the rows' totals give the 3 and the 4 away.
        let zeros = vec![vec![3, 0, 20], vec![4, 0, 20], vec![20, 0, 20]];
        assert_eq!(recoverable(&zeros, &square), vec![(0, 0), (1, 0)]);
        let hidden = suppressed(&zeros, &rule(true));
        assert!(recoverable(&zeros, &hidden).is_empty(), "{hidden:?}");
        // One non-zero count: the grand total is it, whatever is hidden.
        let err = publish(&json!({"cells": [[3, 0], [0, 0]]}), &rule(true)).unwrap_err();
        assert_eq!(err.pointer, "/cells");
    }

    #[test]
    fn without_apply_a_table_with_small_counts_is_refused_naming_the_cell() {
        let mut r = rule(true);
        r.apply = false;
        let err = publish(&json!({"cells": [[10, 20], [30, 2]]}), &r).unwrap_err();
        assert_eq!(err.pointer, "/cells/1/1");
        assert!(publish(&json!({"cells": [[10, 20], [30, 0]]}), &r).is_ok());
    }
}
