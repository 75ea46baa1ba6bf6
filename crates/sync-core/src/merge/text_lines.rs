//! The line-based three-way merge of text (diff3 on lines), with its own Myers diff.
//!
//! Must stay pure, symmetric and bounded: each side is diffed against the base on its own, so
//! swapping sides swaps the two hunk lists and nothing else; a diff needing more than
//! `MAX_EDITS` line edits or `MAX_WORK` line comparisons is not computed (the newer side wins
//! instead), so memory and time stay bounded on large, heavily edited files.

use super::Newer;

/// The most line edits (inserted plus deleted lines) one side's diff may take; beyond it the
/// merge falls back to the newer side. The diff keeps about `MAX_EDITS²` numbers.
const MAX_EDITS: usize = 1000;

/// The most line comparisons one side's diff may make; beyond it the merge falls back to the
/// newer side. Typical edits of a large file need about as many as the file has lines.
const MAX_WORK: usize = 20_000_000;

/// The result of [`text_lines`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMerge {
    /// The merged text.
    pub text: String,
    /// `true` when the sides' changes overlapped (or could not be diffed) and the newer side's
    /// whole text was taken; the other side's edits are then not in `text`.
    pub fell_back: bool,
}

/// Line-based three-way merge of text: when the two sides' changes relative to base touch
/// disjoint line ranges, both apply; when they overlap (or base is `None` and the sides differ),
/// the newer side's whole text. Returns the text and whether it fell back.
///
/// Lines keep their endings (`\n`, `\r\n`); a last line without one differs from the same line
/// with one. Two changes overlap when they replace a common base line, or when one inserts
/// lines at a point the other touches (two insertions at one point, or an insertion at the
/// edge of a change): their order would be a guess. Identical changes on both sides apply
/// once. A side equal to the base gives the other side exactly.
///
/// ```
/// use sync_core::merge::{text_lines, Newer};
///
/// let base = "one\ntwo\nthree\n";
/// let merged = text_lines(Some(base), "ONE\ntwo\nthree\n", "one\ntwo\nthree\nfour\n", Newer::Local);
/// assert_eq!(merged.text, "ONE\ntwo\nthree\nfour\n");
/// assert!(!merged.fell_back);
///
/// let clash = text_lines(Some(base), "one\n2\nthree\n", "one\nTWO\nthree\n", Newer::Remote);
/// assert_eq!(clash.text, "one\nTWO\nthree\n");
/// assert!(clash.fell_back);
/// ```
pub fn text_lines(base: Option<&str>, local: &str, remote: &str, newer: Newer) -> TextMerge {
    let clean = |text: &str| TextMerge {
        text: text.to_owned(),
        fell_back: false,
    };
    if local == remote || Some(remote) == base {
        return clean(local);
    }
    if Some(local) == base {
        return clean(remote);
    }
    let fallback = TextMerge {
        text: newer.pick(local, remote).to_owned(),
        fell_back: true,
    };
    let Some(base) = base else {
        return fallback;
    };
    let base: Vec<&str> = base.split_inclusive('\n').collect();
    let local: Vec<&str> = local.split_inclusive('\n').collect();
    let remote: Vec<&str> = remote.split_inclusive('\n').collect();
    let (Some(ours), Some(theirs)) = (hunks(&base, &local), hunks(&base, &remote)) else {
        return fallback;
    };
    let mut all: Vec<Hunk<'_>> = Vec::with_capacity(ours.len() + theirs.len());
    for hunk in ours.iter().chain(&theirs) {
        if all.contains(hunk) {
            continue; // the same change on both sides
        }
        if all.iter().any(|other| clashes(other, hunk)) {
            return fallback;
        }
        all.push(hunk.clone());
    }
    all.sort_by_key(|h| (h.start, h.end));
    let mut text = String::new();
    let mut at = 0;
    for hunk in &all {
        text.extend(base[at..hunk.start].iter().copied());
        text.extend(hunk.lines.iter().copied());
        at = hunk.end;
    }
    text.extend(base[at..].iter().copied());
    TextMerge {
        text,
        fell_back: false,
    }
}

/// One side's change: base lines `start..end` replaced by `lines`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hunk<'a> {
    start: usize,
    end: usize,
    lines: Vec<&'a str>,
}

/// Whether two different hunks (of different sides) cannot both apply.
fn clashes(a: &Hunk<'_>, b: &Hunk<'_>) -> bool {
    let overlap = a.start < b.end && b.start < a.end;
    let inserts_at = |ins: &Hunk<'_>, other: &Hunk<'_>| {
        ins.start == ins.end && other.start <= ins.start && ins.start <= other.end
    };
    overlap || inserts_at(a, b) || inserts_at(b, a)
}

/// The hunks turning `base` into `side`, in base order; `None` past [`MAX_EDITS`] or
/// [`MAX_WORK`].
fn hunks<'a>(base: &[&str], side: &[&'a str]) -> Option<Vec<Hunk<'a>>> {
    let matches = matching_lines(base, side, MAX_EDITS, MAX_WORK)?;
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    for (mi, mj) in matches.into_iter().chain([(base.len(), side.len())]) {
        if mi > i || mj > j {
            out.push(Hunk {
                start: i,
                end: mi,
                lines: side[j..mj].to_vec(),
            });
        }
        (i, j) = (mi + 1, mj + 1);
    }
    Some(out)
}

/// The pairs `(i, j)` with `a[i] == b[j]` of a shortest edit script (Myers' greedy diff), in
/// increasing order; `None` if it needs more than `max_edits` edits or `max_work` steps.
fn matching_lines(
    a: &[&str],
    b: &[&str],
    max_edits: usize,
    max_work: usize,
) -> Option<Vec<(usize, usize)>> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = n + m;
    let limit = max.min(isize::try_from(max_edits).unwrap_or(isize::MAX));
    let off = max + 1;
    // v[off + k]: the furthest x reached on diagonal k = x - y.
    let mut v = vec![0isize; (2 * max + 3) as usize];
    // trace[d]: v on diagonals -(d+1)..=d+1 before step d.
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let ix = |k: isize| (off + k) as usize;
    let mut work = 0usize;
    for d in 0..=limit {
        trace.push(v[ix(-d - 1)..=ix(d + 1)].to_vec());
        let mut k = -d;
        while k <= d {
            let mut x = if k == -d || (k != d && v[ix(k - 1)] < v[ix(k + 1)]) {
                v[ix(k + 1)]
            } else {
                v[ix(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
                work += 1;
            }
            work += 1;
            if work > max_work {
                return None;
            }
            v[ix(k)] = x;
            if x >= n && y >= m {
                return Some(backtrack(&trace, n, m));
            }
            k += 2;
        }
    }
    None
}

/// Walks the trace back from `(n, m)` and collects the diagonal moves.
fn backtrack(trace: &[Vec<isize>], n: isize, m: isize) -> Vec<(usize, usize)> {
    let mut matches = Vec::new();
    let (mut x, mut y) = (n, m);
    for (d, v) in trace.iter().enumerate().rev() {
        let d = d as isize;
        let get = |k: isize| v[(k + d + 1) as usize];
        let k = x - y;
        let prev_k = if k == -d || (k != d && get(k - 1) < get(k + 1)) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = get(prev_k);
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            matches.push((x as usize, y as usize));
        }
        if d > 0 {
            (x, y) = (prev_x, prev_y);
        }
    }
    matches.reverse();
    matches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(base: Option<&str>, local: &str, remote: &str, newer: Newer) -> TextMerge {
        let a = text_lines(base, local, remote, newer);
        assert_eq!(
            a,
            text_lines(base, remote, local, newer.flip()),
            "not symmetric"
        );
        a
    }

    fn lines(text: &str) -> Vec<&str> {
        text.split_inclusive('\n').collect()
    }

    #[test]
    fn the_diff_is_a_shortest_one() {
        let (a, b) = (lines("a\nb\nc\na\nb\nb\na\n"), lines("c\nb\na\nb\na\nc\n"));
        let matches = matching_lines(&a, &b, MAX_EDITS, MAX_WORK).unwrap();
        assert_eq!(matches.len(), 4); // the classic example: 5 edits, LCS of 4
        for (i, j) in &matches {
            assert_eq!(a[*i], b[*j]);
        }
        assert!(matches
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        assert_eq!(matching_lines(&[], &[], 0, 1).unwrap(), []);
        assert_eq!(hunks(&a, &[]).unwrap().len(), 1);
        assert_eq!(hunks(&[], &b).unwrap()[0].lines, b);
    }

    #[test]
    fn disjoint_changes_both_apply() {
        let base = "1\n2\n3\n4\n5\n";
        let local = "1\nTWO\n3\n4\n5\n6\n";
        let remote = "0\n1\n2\n3\n5\n";
        let merged = both(Some(base), local, remote, Newer::Local);
        assert_eq!(merged.text, "0\n1\nTWO\n3\n5\n6\n");
        assert!(!merged.fell_back);
        // Adjacent line changes are disjoint too.
        let merged = both(Some("a\nb\n"), "A\nb\n", "a\nB\n", Newer::Remote);
        assert_eq!(merged.text, "A\nB\n");
    }

    #[test]
    fn overlapping_changes_take_the_newer_whole_text() {
        let base = "a\nb\nc\n";
        let local = "a\nx\nc\n";
        let remote = "a\ny\nz\n";
        let merged = both(Some(base), local, remote, Newer::Local);
        assert_eq!(
            merged,
            TextMerge {
                text: local.into(),
                fell_back: true
            }
        );
        // Two insertions at one point: the order is a guess.
        let merged = both(Some(base), "a\n1\nb\nc\n", "a\n2\nb\nc\n", Newer::Remote);
        assert_eq!(merged.text, "a\n2\nb\nc\n");
        assert!(merged.fell_back);
        // An insertion next to a change.
        assert!(both(Some(base), "a\n1\nb\nc\n", "a\nB\nc\n", Newer::Remote).fell_back);
    }

    #[test]
    fn identical_changes_apply_once() {
        let base = "a\nb\nc\nd\n";
        let merged = both(Some(base), "a\nB\nc\nd\n", "a\nB\nc\nD\n", Newer::Local);
        assert_eq!(merged.text, "a\nB\nc\nD\n");
        assert!(!merged.fell_back);
    }

    #[test]
    fn no_base_and_different_sides_fall_back() {
        let merged = both(None, "x", "y", Newer::Remote);
        assert_eq!(
            merged,
            TextMerge {
                text: "y".into(),
                fell_back: true
            }
        );
        let merged = both(None, "x", "x", Newer::Remote);
        assert!(!merged.fell_back);
    }

    #[test]
    fn line_endings_and_last_lines_are_kept() {
        let base = "a\r\nb\r\nc";
        let merged = both(Some(base), "A\r\nb\r\nc", "a\r\nb\r\nc\n", Newer::Local);
        assert_eq!(merged.text, "A\r\nb\r\nc\n");
    }

    #[test]
    fn too_many_edits_fall_back() {
        let base: String = (0..MAX_EDITS).map(|i| format!("{i}\n")).collect();
        let local: String = (0..MAX_EDITS).map(|i| format!("l{i}\n")).collect();
        let remote = format!("{base}end\n");
        let merged = both(Some(&base), &local, &remote, Newer::Remote);
        assert_eq!(
            merged,
            TextMerge {
                text: remote.clone(),
                fell_back: true
            }
        );
        // One edit in a large file is cheap.
        let edited = base.replacen("5\n", "five\n", 1);
        let merged = both(Some(&base), &edited, &remote, Newer::Remote);
        assert!(!merged.fell_back);
        assert!(merged.text.starts_with("0\n1\n2\n3\n4\nfive\n") && merged.text.ends_with("end\n"));
    }

    #[test]
    fn large_files_with_scattered_edits_merge() {
        let base: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        let local = base
            .replacen("line 10\n", "ten\n", 1)
            .replacen("line 50000\n", "", 1);
        let remote =
            base.replacen("line 20\n", "twenty\nmore\n", 1)
                .replacen("line 99999\n", "last\n", 1);
        let merged = both(Some(&base), &local, &remote, Newer::Local);
        assert!(!merged.fell_back);
        let expected =
            local
                .replacen("line 20\n", "twenty\nmore\n", 1)
                .replacen("line 99999\n", "last\n", 1);
        assert_eq!(merged.text, expected);
    }

    #[test]
    fn the_limits_stop_the_diff() {
        let (a, b) = (lines("a\nb\nc\nd\n"), lines("a\nx\nc\ny\n"));
        assert!(matching_lines(&a, &b, 4, 100).is_some());
        assert!(matching_lines(&a, &b, 3, 100).is_none()); // needs 4 edits
        assert!(matching_lines(&a, &b, 4, 3).is_none()); // and more than 3 comparisons
    }

    /// The length of a longest common subsequence, by the textbook table.
    fn lcs(a: &[&str], b: &[&str]) -> usize {
        let mut table = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                table[i][j] = if a[i] == b[j] {
                    table[i + 1][j + 1] + 1
                } else {
                    table[i + 1][j].max(table[i][j + 1])
                };
            }
        }
        table[0][0]
    }

    proptest::proptest! {
        /// The diff is a longest common subsequence, and its hunks rebuild the side exactly.
        #[test]
        fn the_diff_is_minimal_and_its_hunks_rebuild_the_side(
            a in proptest::collection::vec("[abc]\n", 0..12),
            b in proptest::collection::vec("[abc]\n", 0..12),
        ) {
            let (a, b): (Vec<&str>, Vec<&str>) =
                (a.iter().map(String::as_str).collect(), b.iter().map(String::as_str).collect());
            let matches = matching_lines(&a, &b, MAX_EDITS, MAX_WORK).unwrap();
            proptest::prop_assert_eq!(matches.len(), lcs(&a, &b));
            for (i, j) in &matches {
                proptest::prop_assert_eq!(a[*i], b[*j]);
            }
            let mut rebuilt = Vec::new();
            let mut at = 0;
            for hunk in hunks(&a, &b).unwrap() {
                proptest::prop_assert!(hunk.start >= at && hunk.end >= hunk.start);
                rebuilt.extend_from_slice(&a[at..hunk.start]);
                rebuilt.extend_from_slice(&hunk.lines);
                at = hunk.end;
            }
            rebuilt.extend_from_slice(&a[at..]);
            proptest::prop_assert_eq!(rebuilt, b);
        }
    }
}
