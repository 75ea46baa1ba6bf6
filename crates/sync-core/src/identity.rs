//! Identity (docs/SPEC.md §1): which remote key each local item is the twin of.
//!
//! [`bind`] is pure: from the scan, the base and the remote tree it maps every local item to a
//! remote key. Under [`Identity::Path`] the key is the path. Under [`Identity::AppName`] a
//! `*.html` file binds to the one live remote file with the same name wherever it lives (a
//! binding, once made, is kept in the base), or to its own path when there is none. Conflicting
//! claims are per-item problems, never silent choices.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::{BaseEntry, Identity, ItemKind, ItemMeta, Key, LocalItem};

/// The result of binding local items to remote keys.
#[derive(Debug, Clone, Default)]
pub struct Binding<'a> {
    /// Local items by the remote key they bind to (each item keeps its own local key). Under
    /// [`Identity::Path`] this borrows the scan as it is (no copy of a large tree).
    pub local: Cow<'a, BTreeMap<Key, LocalItem>>,
    /// Local keys that could not bind, with the reason (per-item `Item` errors); the engine
    /// leaves them and whatever they were bound to alone.
    pub problems: Vec<(Key, String)>,
}

fn is_app_named(item: &LocalItem) -> bool {
    item.kind() == ItemKind::File && item.key.extension().eq_ignore_ascii_case(".html")
}

/// Binds every local item to a remote key under `identity`.
pub fn bind<'a>(
    identity: Identity,
    local: &'a BTreeMap<Key, LocalItem>,
    base: &BTreeMap<Key, BaseEntry>,
    remote: &BTreeMap<Key, ItemMeta>,
) -> Binding<'a> {
    if identity == Identity::Path {
        return Binding {
            local: Cow::Borrowed(local),
            problems: Vec::new(),
        };
    }
    let mut out = Binding::default();
    // Bindings made at earlier syncs: local key -> remote key.
    let previous: HashMap<&Key, &Key> = base
        .iter()
        .filter_map(|(remote_key, b)| b.local_key.as_ref().map(|l| (l, remote_key)))
        .collect();
    let mut by_name: HashMap<&str, Vec<&Key>> = HashMap::new();
    for item in remote.values() {
        if item.is_live()
            && item.kind == ItemKind::File
            && item.key.extension().eq_ignore_ascii_case(".html")
        {
            by_name
                .entry(item.key.file_name())
                .or_default()
                .push(&item.key);
        }
    }
    // Paths that are some local item's own: a binding elsewhere must not steal them.
    let mut claimed: BTreeSet<Key> = BTreeSet::new();
    let mut first_with_name: HashMap<&str, &Key> = HashMap::new();
    // Non-app-named items bind by path and claim their keys first.
    for (key, item) in local {
        if !is_app_named(item) {
            claimed.insert(key.clone());
            out.local.to_mut().insert(key.clone(), item.clone());
        }
    }
    for (key, item) in local.iter().filter(|(_, i)| is_app_named(i)) {
        let name = key.file_name();
        if let Some(first) = first_with_name.get(name) {
            out.problems.push((
                key.clone(),
                format!(
                    "another local file named {name:?} ({first}) already syncs under that name; \
                     rename one of them (app-name identity needs unique names)"
                ),
            ));
            continue;
        }
        first_with_name.insert(name, key);
        let candidates: &[&Key] = by_name.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let target: Result<Key, String> = match previous.get(key) {
            Some(prev) if remote.get(*prev).is_some_and(ItemMeta::is_live) => Ok((*prev).clone()),
            _ => {
                match candidates {
                    [] => Ok(key.clone()),
                    [only] => Ok((*only).clone()),
                    many if many.contains(&key) => Ok(key.clone()),
                    many => Err(format!(
                    "several remote files are named {name:?} ({}); remove or rename all but one",
                    many.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                )),
                }
            }
        };
        match target {
            Ok(target) if claimed.contains(&target) => out.problems.push((
                key.clone(),
                format!("its remote twin {target} is already bound to another local item"),
            )),
            Ok(target) => {
                claimed.insert(target.clone());
                out.local.to_mut().insert(target, item.clone());
            }
            Err(msg) => out.problems.push((key.clone(), msg)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Content, ContentHash, Fingerprint, Revision, Stamp};

    fn k(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    fn file(key: &str) -> LocalItem {
        LocalItem {
            key: k(key),
            content: Content::File(ContentHash::of(key.as_bytes())),
            size: 1,
            fingerprint: Fingerprint::default(),
            modified_millis: 0,
        }
    }

    fn remote_file(key: &str) -> ItemMeta {
        ItemMeta {
            key: k(key),
            kind: ItemKind::File,
            rev: Revision(1),
            hash: Some(ContentHash::of(b"r")),
            size: 1,
            stamp: Stamp::ZERO,
            deleted: false,
        }
    }

    fn locals(keys: &[&str]) -> BTreeMap<Key, LocalItem> {
        keys.iter().map(|s| (k(s), file(s))).collect()
    }

    fn remotes(keys: &[&str]) -> BTreeMap<Key, ItemMeta> {
        keys.iter().map(|s| (k(s), remote_file(s))).collect()
    }

    #[test]
    fn path_identity_is_the_identity() {
        let l = locals(&["a/index2.html", "b.txt"]);
        let b = bind(
            Identity::Path,
            &l,
            &BTreeMap::new(),
            &remotes(&["other/index2.html"]),
        );
        assert_eq!(*b.local, l);
        assert!(b.problems.is_empty());
    }

    #[test]
    fn app_name_binds_html_to_the_remote_twin_elsewhere() {
        let l = locals(&["site/a/index2.html", "site/a/style.css"]);
        let b = bind(
            Identity::AppName,
            &l,
            &BTreeMap::new(),
            &remotes(&["other/index2.html"]),
        );
        assert_eq!(
            b.local[&k("other/index2.html")].key,
            k("site/a/index2.html")
        );
        assert!(b.local.contains_key(&k("site/a/style.css")));
        assert!(!b.local.contains_key(&k("site/a/index2.html")));
    }

    #[test]
    fn app_name_without_a_twin_uses_its_own_path() {
        let l = locals(&["site/new.html"]);
        let b = bind(Identity::AppName, &l, &BTreeMap::new(), &BTreeMap::new());
        assert!(b.local.contains_key(&k("site/new.html")));
    }

    #[test]
    fn duplicate_local_names_are_an_error_for_the_second() {
        let l = locals(&["a/index.html", "b/index.html"]);
        let b = bind(Identity::AppName, &l, &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(b.local.len(), 1);
        assert!(b.local.contains_key(&k("a/index.html")));
        assert_eq!(b.problems.len(), 1);
        assert_eq!(b.problems[0].0, k("b/index.html"));
        assert!(
            b.problems[0].1.contains("a/index.html"),
            "{}",
            b.problems[0].1
        );
    }

    #[test]
    fn ambiguous_remote_names_are_an_error() {
        let l = locals(&["site/page.html"]);
        let b = bind(
            Identity::AppName,
            &l,
            &BTreeMap::new(),
            &remotes(&["x/page.html", "y/page.html"]),
        );
        assert!(b.local.is_empty());
        assert_eq!(b.problems.len(), 1);
    }

    #[test]
    fn an_earlier_binding_is_kept() {
        let l = locals(&["site/page.html"]);
        let mut base = BTreeMap::new();
        base.insert(
            k("y/page.html"),
            BaseEntry {
                kind: ItemKind::File,
                hash: None,
                size: 0,
                rev: Revision(1),
                stamp: Stamp::ZERO,
                fingerprint: None,
                local_key: Some(k("site/page.html")),
                detached: false,
            },
        );
        let b = bind(
            Identity::AppName,
            &l,
            &base,
            &remotes(&["x/page.html", "y/page.html"]),
        );
        assert_eq!(b.local[&k("y/page.html")].key, k("site/page.html"));
    }
}
