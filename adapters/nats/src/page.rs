//! Pages of a query answer: as many items as fit in one NATS message, and a cursor to the
//! rest.
//!
//! Why: the server drops a message larger than its `max_payload` (1 MB by default), and a
//! request whose reply is dropped is never answered, so a vendor pipeline of a few
//! thousand registrations went silent. An answer is therefore cut into pages: each page
//! holds the items after the caller's cursor, in key order, up to the caller's `limit`
//! and up to the bytes the server takes, and names the cursor of the next page when there
//! is more. Paging by key (not by offset) means a row added or removed between two pages
//! neither shifts the others nor repeats them.
//!
//! An answer is made of *sections* (the ledger's entries, then its balances), each in its
//! own key order; a cursor is `<section>:<key>`, and keys are spelled so that their string
//! order is the order the view keeps them in (sequence numbers zero-padded, ids as their
//! lowercase hyphenated form).

use serde::Serialize;

/// The most items a caller may ask for in one page.
pub const MAX_LIMIT: u32 = 10_000;

/// Bytes kept back from the server's `max_payload` for what surrounds the items: the
/// reply's envelope (`ok`, `view`, `position`, `next`), the group keys a pipeline page
/// adds, and the separators between items (counted apart, one byte each).
fn reserve(max_payload: usize) -> usize {
    4096.min(max_payload / 4)
}

/// Why a page could not be cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// The cursor does not name a section of this view.
    Cursor(String),
    /// `limit` is 0 or more than [`MAX_LIMIT`].
    Limit(u32),
    /// One item alone is larger than a message may be.
    ItemTooLarge {
        section: String,
        bytes: usize,
        room: usize,
    },
}

/// One page being filled.
#[derive(Debug)]
pub struct Pager {
    sections: &'static [&'static str],
    after: Option<(usize, String)>,
    limit: usize,
    room: usize,
    taken: usize,
    used: usize,
    last: Option<(usize, String)>,
    more: bool,
    too_large: Option<PageError>,
}

impl Pager {
    /// A page of the view whose answer has `sections` (in answer order), after `after` (a
    /// cursor a previous page gave), of at most `limit` items and `max_payload` bytes.
    pub fn new(
        sections: &'static [&'static str],
        after: Option<&str>,
        limit: Option<u32>,
        max_payload: usize,
    ) -> Result<Self, PageError> {
        let after = match after {
            None => None,
            Some(cursor) => {
                let (section, key) = cursor
                    .split_once(':')
                    .ok_or_else(|| PageError::Cursor(cursor.to_string()))?;
                let index = sections
                    .iter()
                    .position(|s| *s == section)
                    .ok_or_else(|| PageError::Cursor(cursor.to_string()))?;
                Some((index, key.to_string()))
            }
        };
        let limit = match limit {
            None => usize::MAX,
            Some(n @ 1..=MAX_LIMIT) => n as usize,
            Some(n) => return Err(PageError::Limit(n)),
        };
        Ok(Pager {
            sections,
            after,
            limit,
            room: max_payload.saturating_sub(reserve(max_payload)),
            taken: 0,
            used: 0,
            last: None,
            more: false,
            too_large: None,
        })
    }

    /// Where this page starts in `section`: `Some(None)` at its first item, `Some(Some(key))`
    /// after `key`, `None` when the cursor is past the whole section. What a reader of the
    /// stored rows asks the store for.
    pub fn start_of(&self, section: &str) -> Option<Option<&str>> {
        let index = self.sections.iter().position(|s| *s == section)?;
        match &self.after {
            Some((after, key)) if *after == index => Some(Some(key.as_str())),
            Some((after, _)) if *after > index => None,
            _ => Some(None),
        }
    }

    /// Whether `count` more items of about `bytes` in all could not all fit on this page:
    /// a reader of the stored rows has read enough once this is true (the page is cut by
    /// [`Pager::take`], which may cut it earlier).
    pub fn would_overflow(&self, count: usize, bytes: usize) -> bool {
        count > self.limit.saturating_sub(self.taken) || bytes > self.room.saturating_sub(self.used)
    }

    /// The items of `section` that belong on this page: those after the cursor, in the
    /// order given (which must be the order of their keys), while the page has room.
    pub fn take<T: Serialize>(
        &mut self,
        section: &str,
        items: impl IntoIterator<Item = (String, T)>,
    ) -> Vec<T> {
        let Some(index) = self.sections.iter().position(|s| *s == section) else {
            debug_assert!(false, "`{section}` is not a section of this view");
            return Vec::new();
        };
        let mut page = Vec::new();
        for (key, item) in items {
            if let Some((after_section, after_key)) = &self.after {
                if index < *after_section || (index == *after_section && key <= *after_key) {
                    continue;
                }
            }
            if self.more {
                break;
            }
            // One byte for the separator before it.
            let bytes = serde_json::to_vec(&item).map_or(usize::MAX, |v| v.len()) + 1;
            if self.taken >= self.limit || self.used.saturating_add(bytes) > self.room {
                if self.taken == 0 {
                    self.too_large = Some(PageError::ItemTooLarge {
                        section: section.to_string(),
                        bytes,
                        room: self.room,
                    });
                }
                self.more = true;
                break;
            }
            self.taken += 1;
            self.used += bytes;
            self.last = Some((index, key));
            page.push(item);
        }
        page
    }

    /// The cursor of the next page (none when this page holds the rest), or why not even
    /// one item fit.
    pub fn finish(self) -> Result<Option<String>, PageError> {
        if let Some(e) = self.too_large {
            return Err(e);
        }
        Ok(match (self.more, self.last) {
            (true, Some((index, key))) => Some(format!("{}:{key}", self.sections[index])),
            _ => None,
        })
    }
}

/// A sequence number as a key whose string order is its number order.
pub fn sequence_key(n: u64) -> String {
    format!("{n:020}")
}

/// A log position as a key whose string order is the positions' order.
pub fn position_key(position: dealreg_domain::Position) -> String {
    format!("{:020}/{:020}", position.commit(), position.prepare())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTIONS: &[&str] = &["entry", "balance"];

    fn items(section: &str, n: u64) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (sequence_key(i), format!("{section}-{i}")))
            .collect()
    }

    /// Every page of `limit` items after the other, from the first.
    fn all_pages(limit: Option<u32>, max_payload: usize) -> Vec<(Vec<String>, Vec<String>)> {
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut pager =
                Pager::new(SECTIONS, after.as_deref(), limit, max_payload).expect("a pager");
            let entries = pager.take("entry", items("entry", 25));
            let balances = pager.take("balance", items("balance", 7));
            pages.push((entries, balances));
            match pager.finish().expect("fits") {
                Some(next) => after = Some(next),
                None => return pages,
            }
            assert!(pages.len() < 100, "paging does not end");
        }
    }

    #[test]
    fn pages_hold_every_item_once_in_order_across_sections() {
        let pages = all_pages(Some(10), 1 << 20);
        assert_eq!(pages.len(), 4, "32 items by 10: {pages:?}");
        let (entries, balances): (Vec<_>, Vec<_>) = pages.iter().cloned().unzip();
        let entries: Vec<String> = entries.concat();
        let balances: Vec<String> = balances.concat();
        assert_eq!(
            entries,
            items("entry", 25)
                .into_iter()
                .map(|i| i.1)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            balances,
            items("balance", 7)
                .into_iter()
                .map(|i| i.1)
                .collect::<Vec<_>>()
        );
        assert_eq!(pages[2].0.len(), 5, "the third page ends the entries");
        assert_eq!(pages[2].1.len(), 5, "and begins the balances");
    }

    #[test]
    fn a_page_ending_exactly_at_the_last_item_names_no_next_page() {
        let pages = all_pages(Some(32), 1 << 20);
        assert_eq!(pages.len(), 1);
        assert_eq!((pages[0].0.len(), pages[0].1.len()), (25, 7));
    }

    #[test]
    fn without_a_limit_a_page_is_cut_by_the_bytes_a_message_may_hold() {
        // Each item is `"entry-N"` (9–10 bytes) and a separator; 200 bytes of room after
        // the reserve of a quarter.
        let pages = all_pages(None, 268);
        assert!(pages.len() > 1, "{pages:?}");
        for (entries, balances) in &pages {
            let bytes: usize = entries
                .iter()
                .chain(balances)
                .map(|i| serde_json::to_vec(i).map_or(0, |v| v.len()) + 1)
                .sum();
            assert!(bytes <= 201, "a page of {bytes} bytes");
        }
        let total: usize = pages.iter().map(|(e, b)| e.len() + b.len()).sum();
        assert_eq!(total, 32);
    }

    #[test]
    fn an_item_larger_than_a_message_is_an_error_not_an_empty_page() {
        let mut pager = Pager::new(SECTIONS, None, None, 100).expect("a pager");
        let taken = pager.take("entry", [(sequence_key(1), "x".repeat(500))]);
        assert!(taken.is_empty());
        assert!(matches!(
            pager.finish(),
            Err(PageError::ItemTooLarge { ref section, bytes: 503, room: 75 }) if section == "entry"
        ));
    }

    #[test]
    fn a_cursor_of_another_view_or_a_limit_out_of_range_is_refused() {
        assert_eq!(
            Pager::new(SECTIONS, Some("account:acme.com"), None, 1000).map(|_| ()),
            Err(PageError::Cursor("account:acme.com".into()))
        );
        assert_eq!(
            Pager::new(SECTIONS, Some("no colon"), None, 1000).map(|_| ()),
            Err(PageError::Cursor("no colon".into()))
        );
        assert_eq!(
            Pager::new(SECTIONS, None, Some(0), 1000).map(|_| ()),
            Err(PageError::Limit(0))
        );
        assert_eq!(
            Pager::new(SECTIONS, None, Some(MAX_LIMIT + 1), 1000).map(|_| ()),
            Err(PageError::Limit(MAX_LIMIT + 1))
        );
    }
}
