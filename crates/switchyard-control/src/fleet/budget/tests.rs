use std::time::Duration;

use super::Breaker;

#[test]
fn the_breaker_opens_after_n_failures_and_lets_one_probe_through_after_the_cooldown() {
    let b = Breaker::default();
    let cooldown = Duration::from_millis(100);
    let allow = |now| b.allow(now, 3, cooldown);
    assert!(allow(0));
    b.failure(0, 3, cooldown);
    b.failure(1, 3, cooldown);
    assert!(allow(2), "two failures of three: still closed");
    b.failure(2, 3, cooldown);
    assert!(!allow(3), "open");
    assert!(!allow(101), "open until the cooldown passed");
    assert!(allow(102), "half-open: one probe");
    assert!(!allow(102), "only one");
    b.failure(102, 3, cooldown);
    assert!(!allow(150), "the probe failed: open again");
    assert!(allow(202));
    b.success(3);
    assert!(allow(203) && allow(203), "closed again");
}

#[test]
fn a_probe_that_never_reports_back_costs_one_cooldown() {
    let b = Breaker::default();
    let cooldown = Duration::from_millis(100);
    for now in 0..3 {
        b.failure(now, 3, cooldown);
    }
    assert!(
        b.allow(102, 3, cooldown),
        "the probe goes; its request is then dropped"
    );
    assert!(!b.allow(150, 3, cooldown));
    assert!(b.allow(202, 3, cooldown), "another probe a cooldown later");
}

/// The scripts against a real redis-server (skipped, loudly, when none is installed).
mod scripts {
    use std::process::{Child, Command, Stdio};

    use redis::aio::MultiplexedConnection;

    use crate::fleet::budget_store::{self as store, DayKeys};

    struct Server(Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    async fn redis() -> Option<(Server, MultiplexedConnection)> {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .ok()?
                .local_addr()
                .ok()?
                .port();
            let Ok(child) = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--port", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                eprintln!(
                    "SKIPPED: redis-server is not installed; the budget scripts need a real one"
                );
                return None;
            };
            let server = Server(child);
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
            for _ in 0..200 {
                if let Ok(conn) = client.get_multiplexed_async_connection().await {
                    return Some((server, conn));
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        None
    }

    const BUDGET: u64 = 1_000;
    const TTL: u64 = 60_000;

    fn day() -> DayKeys {
        DayKeys::new(&format!("t{:08x}", fastrand::u32(..)), 1_796_342_400)
    }

    #[tokio::test]
    async fn reservations_never_pass_the_budget_even_from_many_connections_at_once() {
        let Some((_server, conn)) = redis().await else {
            return;
        };
        let keys = day();
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let (mut conn, keys) = (conn.clone(), keys.clone());
                tokio::spawn(async move {
                    let id = format!("r{i}");
                    store::reserve(&mut conn, &keys, &id, 30, (BUDGET, TTL))
                        .await
                        .unwrap()
                        .ok
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += task.await.unwrap();
        }
        assert_eq!(admitted, 33, "33 x 30 = 990 fits, 34 x 30 does not");
        let mut conn = conn;
        let reply = store::settle(&mut conn, &keys, &[], &[]).await.unwrap();
        assert_eq!((reply.used, reply.reserved), (0, 990));
    }

    #[tokio::test]
    async fn a_settlement_counts_once_however_often_it_is_sent() {
        let Some((_server, mut conn)) = redis().await else {
            return;
        };
        let keys = day();
        store::reserve(&mut conn, &keys, "a", 500, (BUDGET, TTL))
            .await
            .unwrap();
        let again = store::reserve(&mut conn, &keys, "a", 500, (BUDGET, TTL))
            .await
            .unwrap();
        assert_eq!(
            (again.ok, again.reserved),
            (1, 500),
            "reserving twice holds once"
        );
        let first = store::settle(&mut conn, &keys, &[("a", 120)], &[])
            .await
            .unwrap();
        assert_eq!((first.ok, first.used, first.reserved), (1, 120, 0));
        let second = store::settle(&mut conn, &keys, &[("a", 120)], &[])
            .await
            .unwrap();
        assert_eq!((second.ok, second.used), (0, 120), "counted once");
        // Tokens spent while Redis was away: a flush retried after a lost reply counts once.
        let flush = store::settle(&mut conn, &keys, &[], &[("g1:spent:1", 40)])
            .await
            .unwrap();
        let retried = store::settle(&mut conn, &keys, &[], &[("g1:spent:1", 40)])
            .await
            .unwrap();
        assert_eq!((flush.ok, retried.ok, retried.used), (1, 0, 160));
    }

    #[tokio::test]
    async fn a_reservation_released_before_its_delayed_call_arrives_holds_nothing() {
        let Some((_server, mut conn)) = redis().await else {
            return;
        };
        let keys = day();
        // The replica gave up on the call and released the id; the call lands afterwards.
        let released = store::settle(&mut conn, &keys, &[("late", 0)], &[])
            .await
            .unwrap();
        assert_eq!(released.ok, 0);
        let late = store::reserve(&mut conn, &keys, "late", 10, (BUDGET, TTL))
            .await
            .unwrap();
        assert_eq!((late.ok, late.used, late.reserved), (0, 0, 0));
        // In the usual order the release frees the hold and counts nothing.
        store::reserve(&mut conn, &keys, "early", 10, (BUDGET, TTL))
            .await
            .unwrap();
        let freed = store::settle(&mut conn, &keys, &[("early", 0)], &[])
            .await
            .unwrap();
        assert_eq!((freed.ok, freed.used, freed.reserved), (1, 0, 0));
    }

    #[tokio::test]
    async fn a_vanished_reservation_expires_and_a_late_settlement_still_counts_once() {
        let Some((_server, mut conn)) = redis().await else {
            return;
        };
        let keys = day();
        store::reserve(&mut conn, &keys, "lost", 900, (BUDGET, 1))
            .await
            .unwrap();
        // Swept by the next script once its millisecond has passed.
        let mut reply = store::reserve(&mut conn, &keys, "next", 900, (BUDGET, TTL))
            .await
            .unwrap();
        for _ in 0..100 {
            if reply.ok == 1 {
                break;
            }
            tokio::task::yield_now().await;
            reply = store::reserve(&mut conn, &keys, "next", 900, (BUDGET, TTL))
                .await
                .unwrap();
        }
        assert_eq!(
            (reply.ok, reply.reserved),
            (1, 900),
            "the lost hold expired"
        );
        let late = store::settle(&mut conn, &keys, &[("lost", 50)], &[])
            .await
            .unwrap();
        let again = store::settle(&mut conn, &keys, &[("lost", 50)], &[])
            .await
            .unwrap();
        assert_eq!((late.ok, again.ok, again.used), (1, 0, 50));
    }

    #[tokio::test]
    async fn a_lease_closes_with_its_spending_and_returns_the_rest() {
        let Some((_server, mut conn)) = redis().await else {
            return;
        };
        let keys = day();
        let open = store::lease(&mut conn, &keys, None, Some(("l1", 400)), (BUDGET, TTL))
            .await
            .unwrap();
        assert_eq!((open.ok, open.reserved), (1, 400));
        let renewed = store::lease(
            &mut conn,
            &keys,
            Some(("l1", 150)),
            Some(("l2", 400)),
            (BUDGET, TTL),
        )
        .await
        .unwrap();
        assert_eq!((renewed.ok, renewed.used, renewed.reserved), (1, 150, 400));
        let refused = store::lease(&mut conn, &keys, None, Some(("l3", 500)), (BUDGET, TTL))
            .await
            .unwrap();
        assert_eq!(refused.ok, 0, "150 + 400 + 500 is over 1,000");
        let closed = store::lease(&mut conn, &keys, Some(("l2", 10)), None, (BUDGET, TTL))
            .await
            .unwrap();
        assert_eq!((closed.used, closed.reserved), (160, 0));
    }
}
