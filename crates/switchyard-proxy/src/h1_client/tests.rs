use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A connected pair on 127.0.0.1: the gateway's end and the upstream's.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (ours.unwrap(), theirs.unwrap().0)
}

fn idle_count(idle: &Idle) -> usize {
    idle.conns.lock().unwrap().len()
}

/// The upstream's end reads EOF within a second: the gateway closed its side.
async fn closed_by_us(theirs: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), theirs.read(&mut byte)).await,
        Ok(Ok(0))
    )
}

#[tokio::test]
async fn an_idle_connection_is_reused_while_fresh_and_open() {
    let idle = Arc::new(Idle::default());
    let (ours, _theirs) = pair().await;
    idle.put(ours);
    assert_eq!(idle_count(&idle), 1);
    assert!(
        idle.take().is_some(),
        "a fresh, open connection is handed out"
    );
    assert!(idle.take().is_none());
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_never_handed_out_and_is_swept() {
    let idle = Arc::new(Idle::default());
    let (kept, _kept_peer) = pair().await;
    let (closed, closed_peer) = pair().await;
    idle.put(kept);
    idle.put(closed);
    drop(closed_peer);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The closed one is the most recent: take skips it for the open one.
    assert!(idle.take().is_some());
    assert!(idle.take().is_none());

    let (closed, closed_peer) = pair().await;
    idle.put(closed);
    drop(closed_peer);
    tokio::time::sleep(SWEEP_EVERY + Duration::from_secs(1)).await;
    assert_eq!(
        idle_count(&idle),
        0,
        "the sweep closed it without a request"
    );
}

#[tokio::test(start_paused = true)]
async fn connections_idle_past_the_timeout_are_closed_by_the_sweep() {
    let idle = Arc::new(Idle::default());
    let (ours, mut theirs) = pair().await;
    idle.put(ours);
    tokio::time::sleep(IDLE_TIMEOUT - SWEEP_EVERY * 2).await;
    assert_eq!(idle_count(&idle), 1, "still within the idle timeout");
    tokio::time::sleep(SWEEP_EVERY * 3).await;
    assert_eq!(idle_count(&idle), 0);
    tokio::time::resume();
    assert!(closed_by_us(&mut theirs).await);
}

#[tokio::test]
async fn the_idle_list_keeps_at_most_its_cap_and_closes_the_rest() {
    let idle = Arc::new(Idle::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut peers = Vec::new();
    for _ in 0..MAX_IDLE + 2 {
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        idle.put(ours.unwrap());
        peers.push(theirs.unwrap().0);
    }
    assert_eq!(idle_count(&idle), MAX_IDLE);
    let mut last = peers.pop().unwrap();
    assert!(closed_by_us(&mut last).await, "one over the cap is closed");
}

#[tokio::test]
async fn the_sweep_ends_when_the_idle_list_is_dropped() {
    let idle = Arc::new(Idle::default());
    let (ours, mut theirs) = pair().await;
    idle.put(ours);
    let weak = Arc::downgrade(&idle);
    drop(idle);
    assert!(
        weak.upgrade().is_none(),
        "the sweep holds no strong reference"
    );
    assert!(closed_by_us(&mut theirs).await);
}
