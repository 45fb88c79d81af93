use std::sync::mpsc;
use std::time::Duration;

use super::writer::{Queue, Request};
use super::*;
use crate::protocol::{self as p, PeerMessage};
use crate::store::NewEntry;

fn step(run: &str, i: usize) -> PeerMessage {
    PeerMessage::Failed(p::Failed { run_id: run.into(), reason: format!("m{i}"), recoverable: i.is_multiple_of(2) })
}

fn open() -> (tempfile::TempDir, Store, Outbox) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("peer.redb")).unwrap();
    let outbox = Outbox::new(store.clone());
    (dir, store, outbox)
}

#[test]
fn many_runs_share_few_commits_and_keep_their_order() {
    let (_d, store, outbox) = open();
    let before = store.commits();
    let threads: Vec<_> = (0..8)
        .map(|r| {
            let outbox = outbox.clone();
            std::thread::spawn(move || {
                let run = format!("run-{r}");
                let mut last = None;
                for i in 0..500 {
                    last = Some(outbox.push(&[step(&run, i)]).unwrap());
                }
                last.unwrap().wait().unwrap()
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap() > 0);
    }
    let all = outbox.pending(None, usize::MAX).unwrap();
    assert_eq!(all.len(), 4000, "every message stored");
    for r in 0..8 {
        let run = format!("run-{r}");
        let reasons: Vec<String> = all
            .iter()
            .filter(|e| e.run_id == run)
            .map(|e| serde_json::from_str::<serde_json::Value>(&e.message_json).unwrap()["reason"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(reasons, (0..500).map(|i| format!("m{i}")).collect::<Vec<_>>(), "{run} in order");
    }
    let commits = store.commits() - before;
    assert!(commits < 4000, "messages were grouped: {commits} commits for 4000 messages");
}

#[test]
fn a_ticket_resolves_with_its_last_sequence_number_and_flush_after_everything() {
    let (_d, _s, outbox) = open();
    let a = outbox.push(&[step("r", 0), step("r", 1)]).unwrap();
    let b = outbox.push_control(&[step("r", 2)]).unwrap();
    let f = outbox.flush();
    assert_eq!(a.wait().unwrap(), 2);
    assert_eq!(b.wait().unwrap(), 3);
    assert_eq!(f.wait().unwrap(), 0, "a flush appends nothing");
    assert_eq!(*outbox.subscribe().borrow(), 3, "senders are woken with the last committed seq");
}

#[test]
fn delivery_is_committed_before_its_claims_are_released() {
    let (_d, _s, outbox) = open();
    outbox.push(&[step("r", 0), step("r", 1)]).unwrap().wait().unwrap();
    let entries = outbox.pending(None, 10).unwrap();
    assert!(entries.iter().all(|e| outbox.claim(e.seq)));
    outbox.delivered(&entries).unwrap();
    outbox.flush().wait().unwrap();
    assert_eq!(outbox.pending_count(), 0);
    assert!(outbox.terminal_delivered("r"), "a delivered terminal message is remembered");
    assert!(entries.iter().all(|e| outbox.claim(e.seq)), "claims released after the commit");
}

#[tokio::test]
async fn drained_waits_for_deliveries() {
    let (_d, _s, outbox) = open();
    outbox.push_control(&[step("r", 1)]).unwrap().committed().await.unwrap();
    assert!(!outbox.drained(Duration::from_millis(10)).await, "one entry is still owed");
    let entries = outbox.pending(None, 10).unwrap();
    let o = outbox.clone();
    tokio::spawn(async move { o.delivered(&entries).unwrap() });
    assert!(outbox.drained(Duration::from_secs(10)).await);
}

fn append(bytes: usize) -> (Request, tokio::sync::oneshot::Receiver<u64>) {
    let (done, rx) = tokio::sync::oneshot::channel();
    let entries = vec![NewEntry { run_id: String::new(), message_json: "x".repeat(bytes), terminal: false, starts_run: false }];
    (Request::Append { entries, done }, rx)
}

#[test]
fn the_hand_over_is_bounded_by_bytes() {
    let queue = std::sync::Arc::new(Queue::new(1000));
    assert!(queue.put(append(600).0, true).is_ok());
    let (tx, rx) = mpsc::channel();
    let q = queue.clone();
    let blocked = std::thread::spawn(move || {
        let ok = q.put(append(600).0, true).is_ok();
        tx.send(ok).unwrap();
    });
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "a put over the budget waits");
    assert!(queue.put(append(600).0, false).is_ok(), "an unbounded put never waits");
    let taken = queue.take_all_for_test();
    assert_eq!(taken, 2);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true), "room was made");
    blocked.join().unwrap();
    assert_eq!(queue.take_all_for_test(), 1);
    assert!(queue.put(append(5000).0, true).is_ok(), "a request over the whole budget goes alone into an empty queue");
    queue.close();
    assert!(queue.put(append(1).0, false).is_err(), "closed");
}
