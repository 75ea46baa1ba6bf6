//! The change feed's rules: which revision a cursor continues after, and how a page and its
//! next cursor are made from the rows a store read (docs/SPEC.md §2).
//!
//! A store reads, in revision order, at most [`rows_to_read`] current items after
//! [`feed_after`], plus the tenant's counter, and hands them to [`change_page`]. This module
//! must not read storage.

use crate::{ChangePage, Cursor, Epoch, Error, ItemMeta, Result, Revision};

use super::MAX_REVISION;

/// The feed revision a page continues after: 0 without a cursor, the cursor's revision (at
/// most [`MAX_REVISION`]) for a cursor of this store's `epoch`, and
/// [`Error::CursorExpired`] for a cursor of another epoch (the store was restored or replaced).
pub fn feed_after(since: Option<&Cursor>, epoch: Epoch) -> Result<Revision> {
    match since {
        None => Ok(Revision::ZERO),
        Some(c) if c.epoch() != epoch => Err(Error::CursorExpired),
        Some(c) => Ok(c.rev().min(MAX_REVISION)),
    }
}

/// How many rows a store reads for a page of `limit`: one more than the page holds (and at
/// least two), so that [`change_page`] can tell whether more remain.
pub fn rows_to_read(limit: usize) -> usize {
    limit.max(1).saturating_add(1)
}

/// The page of `limit` (at least 1) changes made from `rows`: the current items after the
/// cursor in revision order, at most [`rows_to_read`]`(limit)` of them. `head` is the tenant's
/// counter when the rows were read (zero for a tenant that has never written).
///
/// The next cursor is the last item's revision when more remain, and otherwise the head, not
/// the last item: archives take revisions that never enter the feed, and a cursor at the head
/// lets the next long-poll wait instead of returning at once.
///
/// ```
/// use sync_core::server::change_page;
/// use sync_core::{Epoch, Revision};
/// let page = change_page(Epoch(7), Revision(12), Vec::new(), 100);
/// assert!(page.changes.is_empty() && !page.more);
/// assert_eq!(page.cursor.rev(), Revision(12));
/// ```
pub fn change_page(
    epoch: Epoch,
    head: Revision,
    mut rows: Vec<ItemMeta>,
    limit: usize,
) -> ChangePage {
    let limit = limit.max(1);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let rev = match rows.last() {
        Some(last) if more => last.rev,
        _ => head,
    };
    ChangePage {
        changes: rows,
        cursor: Cursor::new(epoch, rev),
        more,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ItemKind, Key, NodeId, Stamp};

    fn item(rev: u64) -> ItemMeta {
        ItemMeta {
            key: Key::new(format!("k{rev}")).unwrap(),
            kind: ItemKind::Folder,
            rev: Revision(rev),
            hash: None,
            size: 0,
            stamp: Stamp::at(1, NodeId(1)),
            deleted: false,
        }
    }

    #[test]
    fn a_full_page_continues_after_its_last_item_the_last_page_at_the_head() {
        let rows: Vec<ItemMeta> = (1..=3).map(item).collect();
        let page = change_page(Epoch(1), Revision(9), rows.clone(), 2);
        assert!(page.more);
        assert_eq!(page.changes.len(), 2);
        assert_eq!(page.cursor.rev(), Revision(2));
        let last = change_page(Epoch(1), Revision(9), rows, 3);
        assert!(!last.more);
        assert_eq!(last.cursor.rev(), Revision(9));
        assert_eq!(rows_to_read(0), 2);
        assert_eq!(rows_to_read(1000), 1001);
    }

    #[test]
    fn cursors_of_another_epoch_expire() {
        let c = Cursor::new(Epoch(1), Revision(5));
        assert_eq!(feed_after(Some(&c), Epoch(1)), Ok(Revision(5)));
        assert_eq!(feed_after(Some(&c), Epoch(2)), Err(Error::CursorExpired));
        assert_eq!(feed_after(None, Epoch(2)), Ok(Revision::ZERO));
    }
}
