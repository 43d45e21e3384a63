//! Behaviour every [`Store`] must show; run by each backend's tests.

use std::sync::Arc;
use std::time::Duration;

use crate::{Error, EventKind, Store};

/// Create, update, delete with CAS, and their errors.
pub async fn crud(s: &dyn Store) {
    let r0 = s.current_revision();
    let a = s.create("/a", b"1".to_vec()).await.unwrap();
    assert_eq!(a.create_revision, r0 + 1);
    assert_eq!(a.mod_revision, r0 + 1);
    assert_eq!(s.current_revision(), r0 + 1);
    assert!(matches!(
        s.create("/a", b"x".to_vec()).await,
        Err(Error::AlreadyExists(k)) if k == "/a"
    ));
    assert_eq!(s.get("/a").await.unwrap().unwrap(), a);
    assert_eq!(s.get("/missing").await.unwrap(), None);

    let b = s
        .update("/a", b"2".to_vec(), Some(a.mod_revision))
        .await
        .unwrap();
    assert_eq!(b.create_revision, a.create_revision);
    assert_eq!(b.mod_revision, r0 + 2);
    assert_eq!(&*b.value, b"2");
    match s.update("/a", b"3".to_vec(), Some(a.mod_revision)).await {
        Err(Error::Conflict {
            expected, current, ..
        }) => {
            assert_eq!((expected, current), (a.mod_revision, b.mod_revision));
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    let c = s.update("/a", b"3".to_vec(), None).await.unwrap();
    assert_eq!(c.mod_revision, r0 + 3);
    assert!(matches!(
        s.update("/nope", vec![], None).await,
        Err(Error::NotFound(_))
    ));

    assert!(matches!(
        s.delete("/a", Some(b.mod_revision)).await,
        Err(Error::Conflict { .. })
    ));
    let d = s.delete("/a", Some(c.mod_revision)).await.unwrap();
    assert_eq!(d.mod_revision, r0 + 4);
    assert_eq!(&*d.value, b"3");
    assert_eq!(s.get("/a").await.unwrap(), None);
    assert!(matches!(
        s.delete("/a", None).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(s.current_revision(), r0 + 4);
    // Re-create gets a fresh create revision.
    let e = s.create("/a", b"4".to_vec()).await.unwrap();
    assert_eq!(e.create_revision, r0 + 5);
}

/// Prefix listing, pagination and counting.
pub async fn pagination(s: &dyn Store) {
    for i in 0..10 {
        s.create(&format!("/p/{i:02}"), vec![i]).await.unwrap();
    }
    s.create("/o", vec![]).await.unwrap();
    s.create("/q", vec![]).await.unwrap();
    assert_eq!(s.count("/p/").await.unwrap(), 10);
    assert_eq!(s.count("/").await.unwrap(), 12);
    assert_eq!(s.count("/z").await.unwrap(), 0);

    let all = s.list("/p/", None, 0).await.unwrap();
    assert_eq!(all.items.len(), 10);
    assert_eq!(all.remaining, 0);
    assert_eq!(all.revision, s.current_revision());

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.list("/p/", after.as_deref(), 3).await.unwrap();
        assert_eq!(page.remaining, 10 - seen.len() - page.items.len());
        seen.extend(page.items.iter().map(|kv| kv.key.clone()));
        if page.remaining == 0 {
            break;
        }
        after = page.items.last().map(|kv| kv.key.clone());
    }
    let expected: Vec<String> = (0..10).map(|i| format!("/p/{i:02}")).collect();
    assert_eq!(seen, expected);

    // start_after before the prefix is ignored; a missing key still works.
    let page = s.list("/p/", Some("/a"), 2).await.unwrap();
    assert_eq!(page.items[0].key, "/p/00");
    let page = s.list("/p/", Some("/p/045"), 0).await.unwrap();
    assert_eq!(page.items[0].key, "/p/05");
    assert_eq!(page.items.len(), 5);
}

/// Replay then live events, in order, without gaps or duplicates, while
/// several writers run concurrently.
pub async fn watch_ordering(s: Arc<dyn Store>) {
    let start = s.current_revision();
    for i in 0..20 {
        s.create(&format!("/w/pre{i}"), vec![]).await.unwrap();
        s.create(&format!("/x/pre{i}"), vec![]).await.unwrap();
    }
    let mut writers = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..50 {
                let key = format!("/w/t{t}/{i}");
                let kv = s.create(&key, vec![1]).await.unwrap();
                s.create(&format!("/x/t{t}/{i}"), vec![]).await.unwrap();
                if i % 2 == 0 {
                    s.update(&key, vec![2], Some(kv.mod_revision))
                        .await
                        .unwrap();
                } else {
                    s.delete(&key, Some(kv.mod_revision)).await.unwrap();
                }
            }
        }));
    }
    // Watches started mid-stream, from the start and from "now".
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut from_start = s.watch("/w/", start).unwrap();
    let now = s.current_revision();
    let mut from_now = s.watch("/w/", now).unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let end = s.current_revision();
    let total_w = 20 + 8 * 50 * 2;

    let mut last = start;
    let mut n = 0;
    while n < total_w {
        let e = tokio::time::timeout(Duration::from_secs(10), from_start.recv())
            .await
            .expect("watch stalled")
            .expect("watch closed");
        assert!(e.kv.key.starts_with("/w/"));
        assert!(e.kv.mod_revision > last, "out of order or duplicate");
        last = e.kv.mod_revision;
        n += 1;
    }
    assert!(last <= end);
    assert!(from_start.try_recv().is_err());

    // Every /w/ event after `now` and nothing else.
    let mut last = now;
    let mut n = 0;
    while let Ok(e) = from_now.try_recv() {
        assert!(e.kv.mod_revision > last);
        last = e.kv.mod_revision;
        n += 1;
    }
    let mut check = s.watch("/w/", start).unwrap();
    let mut after_now = 0;
    while let Ok(e) = check.try_recv() {
        if e.kv.mod_revision > now {
            after_now += 1;
        }
    }
    assert_eq!(n, after_now);

    // Live delete event carries the last value and the delete revision.
    let kv = s.create("/w/z", b"v".to_vec()).await.unwrap();
    let mut live = s.watch("/w/z", s.current_revision()).unwrap();
    let d = s.delete("/w/z", None).await.unwrap();
    let e = live.recv().await.unwrap();
    assert_eq!(e.kind, EventKind::Deleted);
    assert_eq!(e.kv, d);
    assert_eq!(e.prev, Some(kv));
}

/// A store whose history holds 5 events: older revisions are compacted.
pub async fn compacted(s: &dyn Store) {
    let r0 = s.current_revision();
    for i in 0..10 {
        s.create(&format!("/c/{i}"), vec![]).await.unwrap();
    }
    let cur = s.current_revision();
    assert_eq!(cur, r0 + 10);
    // Events cur-4..=cur retained: from >= cur-5 is fine.
    let mut w = s.watch("/c/", cur - 5).unwrap();
    assert_eq!(w.recv().await.unwrap().kv.mod_revision, cur - 4);
    assert!(s.watch("/", cur).is_ok());
    match s.watch("/c/", cur - 6) {
        Err(Error::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (cur - 6, cur - 5));
        }
        other => panic!("expected compacted, got {:?}", other.map(|_| ())),
    }
}
