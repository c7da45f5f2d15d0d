use super::*;

fn gate(budget: u64, enforce: bool) -> Arc<BudgetGate> {
    let signals = Signals::new();
    BudgetGate::new(
        GateSettings {
            daily_tokens: Some(budget),
            reset_secs: 0,
            enforcement: Enforcement {
                enforce,
                reserve_max_tokens: 100,
                ..Enforcement::default()
            },
        },
        signals,
    )
}

#[tokio::test]
async fn without_enforce_nothing_is_reserved_or_refused() {
    let gate = gate(10, false);
    for _ in 0..5 {
        assert!(matches!(gate.admit("r", 1_000).await, Verdict::Unmetered));
    }
}

#[tokio::test]
async fn an_enforced_budget_refuses_what_would_pass_it_and_settles_usage() {
    let gate = gate(1_000, true);
    assert_eq!(gate.estimate(50, None), 150);
    assert_eq!(gate.estimate(50, Some(10)), 60);
    let Verdict::Admitted(a) = gate.admit("a", 600).await else {
        panic!("fits")
    };
    let Verdict::Exhausted { retry_after_secs } = gate.admit("b", 600).await else {
        panic!("600 + 600 is over 1,000")
    };
    assert!((1..=DAY).contains(&retry_after_secs));
    // The signals count what the exchange spent; settling releases the reservation.
    gate.signals.budget().add(now_ms() / 1000, 100);
    a.settle(100);
    let Verdict::Admitted(b) = gate.admit("b", 600).await else {
        panic!("100 used, 600 fits now")
    };
    let Verdict::Exhausted { .. } = gate.admit("c", 301).await else {
        panic!("100 used and 600 reserved leave 300")
    };
    drop(b);
    assert!(matches!(gate.admit("c", 900).await, Verdict::Admitted(_)));
}

/// A shared budget in memory: admits while its room lasts, records settlements.
#[derive(Debug, Default)]
struct Shared {
    room: std::sync::Mutex<u64>,
    settled: std::sync::Mutex<Vec<(Box<str>, u64)>>,
}

impl SharedBudget for Shared {
    fn admit<'a>(
        &'a self,
        _settings: &'a GateSettings,
        _budget: u64,
        id: Box<str>,
        tokens: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Ticket>, ()>> + Send + 'a>> {
        Box::pin(async move {
            let mut room = self.room.lock().unwrap();
            if *room < tokens {
                return Ok(None);
            }
            *room -= tokens;
            Ok(Some(Ticket {
                kind: TicketKind::Exact,
                day: 0,
                id,
                tokens,
            }))
        })
    }

    fn settle(&self, ticket: Ticket, tokens: u64) {
        *self.room.lock().unwrap() += ticket.tokens;
        self.settled.lock().unwrap().push((ticket.id, tokens));
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[tokio::test]
async fn a_joined_shared_budget_takes_the_reservations() {
    let gate = gate(1_000_000, true);
    assert!(gate.shared().is_none());
    let shared = Arc::new(Shared {
        room: std::sync::Mutex::new(500),
        ..Shared::default()
    });
    gate.join_fleet(shared.clone());
    let Verdict::Admitted(a) = gate.admit("a", 400).await else {
        panic!("the shared room holds 500")
    };
    // The local budget would admit this; the shared one has 100 left.
    assert!(matches!(
        gate.admit("b", 200).await,
        Verdict::Exhausted { .. }
    ));
    a.settle(150);
    assert!(matches!(gate.admit("c", 200).await, Verdict::Admitted(_)));
    let settled = shared.settled.lock().unwrap().clone();
    assert_eq!(settled.len(), 2, "a settled, c dropped: {settled:?}");
    assert!(settled[0].0.starts_with("a#") && settled[0].1 == 150);
    assert!(
        settled[1].0.starts_with("c#") && settled[1].1 == 200,
        "a drop settles the estimate"
    );
    let back = gate.shared().unwrap().as_any().downcast_ref::<Shared>();
    assert!(back.is_some_and(|b| std::ptr::eq(b, &*shared)));
}

#[tokio::test]
async fn a_reload_changes_the_budget_for_the_next_admission() {
    let gate = gate(100, true);
    assert!(matches!(
        gate.admit("a", 150).await,
        Verdict::Exhausted { .. }
    ));
    let mut settings = (*gate.settings()).clone();
    settings.daily_tokens = Some(200);
    gate.configure(settings);
    assert!(matches!(gate.admit("a", 150).await, Verdict::Admitted(_)));
}
