//! Multi-row statements: `INSERT … VALUES (…), (…), …` of up to 16 rows.
//!
//! Ingest writes its record rows and rollup rows this way rather than one
//! statement per row: the per-statement work (cursor setup, halt, reset,
//! statement journal) is then paid once per chunk, which saved ~2,500
//! instructions per record on records and ~600 on rollups. 16 rows measured
//! best: with larger chunks the bound text values outgrow SQLite's
//! lookaside memory and every copy goes through malloc.

use std::ops::Range;

use rusqlite::{CachedStatement, Connection};

use crate::store::StoreError;

/// Rows per statement, largest first. A batch is cut into these sizes, so
/// each table has at most this many distinct statements to prepare.
pub(super) const SIZES: [usize; 5] = [16, 8, 4, 2, 1];

/// Cuts `0..len` into consecutive chunks, largest sizes first: yields the
/// index of each chunk's size in `SIZES` and its range.
pub(super) fn cut(len: usize) -> impl Iterator<Item = (usize, Range<usize>)> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let left = len.checked_sub(start).filter(|&n| n > 0)?;
        let (which, size) = SIZES
            .iter()
            .copied()
            .enumerate()
            .find(|&(_, size)| size <= left)?;
        let range = start..start + size;
        start += size;
        Some((which, range))
    })
}

/// `(?, ?, …), (?, ?, …), …`: `rows` groups of `columns` placeholders.
pub(super) fn values(rows: usize, columns: usize) -> String {
    let one = format!("({})", vec!["?"; columns].join(", "));
    vec![one; rows].join(", ")
}

/// The statements of one table for one batch, one per chunk size, taken
/// from the connection's cache once: giving a statement back to the cache
/// clears all its bindings, which costs per parameter.
pub(super) struct Statements<'c> {
    conn: &'c Connection,
    taken: [Option<CachedStatement<'c>>; SIZES.len()],
}

impl<'c> Statements<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            taken: Default::default(),
        }
    }

    /// The statement for chunk size `SIZES[which]`, whose SQL is `sql(rows)`.
    pub(super) fn get(
        &mut self,
        which: usize,
        sql: impl FnOnce(usize) -> String,
    ) -> Result<&mut CachedStatement<'c>, StoreError> {
        let (Some(slot), Some(&rows)) = (self.taken.get_mut(which), SIZES.get(which)) else {
            return Err(StoreError::internal(format!(
                "no statement of chunk size #{which}"
            )));
        };
        Ok(match slot {
            Some(stmt) => stmt,
            empty => empty.insert(self.conn.prepare_cached(&sql(rows))?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_cut_into_the_largest_sizes_in_order() {
        let cuts: Vec<_> = cut(45).collect();
        assert_eq!(
            cuts,
            vec![
                (0, 0..16),
                (0, 16..32),
                (1, 32..40),
                (2, 40..44),
                (4, 44..45)
            ]
        );
        assert_eq!(cut(0).count(), 0);
        assert_eq!(cut(1000).map(|(_, r)| r.len()).sum::<usize>(), 1000);
    }

    #[test]
    fn values_has_one_group_per_row() {
        assert_eq!(values(2, 3), "(?, ?, ?), (?, ?, ?)");
    }
}
