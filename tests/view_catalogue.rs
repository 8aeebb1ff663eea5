//! One catalogue of views: a toy view added to the catalogue in one place is found by the
//! CLI's choice of views, by the NATS query answerer (its rows for the vendor, the
//! partner-safe form of its own rows for a partner) and by the feed.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use dealreg_clock::ControlledClock;
use dealreg_domain::{Event, PartnerId, Position};
use dealreg_engine::Engine;
use dealreg_events::memory::MemoryStore;
use dealreg_host::feed::{self, Audience, FeedError, FeedSink, RowChange};
use dealreg_host::registry::{self, Answer, Catalogue, Catalogued, QueryKind, ShowFn};
use dealreg_host::runner::CatchUp;
use dealreg_nats::query::{self, QueryReply};
use dealreg_nats::subject::Asker;
use dealreg_projections::table::{Scope, Table};
use dealreg_projections::{Projection, Published, Tables, TablesMut};
use dealreg_views::{CheckpointStore, FeedEntry, MemoryCheckpoints};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use support::*;

/// The toy view: how many events name each partner, and the type of the last one.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Toy {
    #[serde(skip)]
    counts: Table<String, Count, ByPartner>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Count {
    partner_id: String,
    events: u64,
    /// The vendor's only: a partner's form leaves it out.
    last_type: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct ByPartner;

impl Scope<Count> for ByPartner {
    fn scope(count: &Count) -> Option<String> {
        Some(count.partner_id.clone())
    }
}

/// What a partner sees of a count: not the last event's type.
fn partner_safe(row: &Value) -> Option<Value> {
    Some(json!({ "partner_id": row.get("partner_id")?, "events": row.get("events")? }))
}

impl Projection for Toy {
    const NAME: &'static str = "toy";
    const VERSION: u32 = 1;
    const PUBLISHED: &'static [Published] = &[Published {
        table: "count",
        for_partners: Some(partner_safe),
    }];

    fn apply(&mut self, _: Position, event: &Event) {
        let Ok(value) = serde_json::to_value(event) else {
            return;
        };
        let Some(partner) = value.get("partner_id").and_then(Value::as_str) else {
            return;
        };
        let kind = value["type"].as_str().unwrap_or_default().to_string();
        let count = self.counts.entry_or_default(partner.to_string());
        count.partner_id = partner.to_string();
        count.events += 1;
        count.last_type = kind;
    }

    fn tables(&self) -> Tables<'_> {
        vec![("count", &self.counts)]
    }

    fn tables_mut(&mut self) -> TablesMut<'_> {
        vec![("count", &mut self.counts)]
    }
}

impl Catalogued for Toy {
    const SHOWN: Option<ShowFn<Self>> = Some(|toy| {
        serde_json::to_value(
            toy.counts
                .iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .map_err(|e| e.to_string())
    });
}

type Views = Catalogue<MemoryStore, MemoryCheckpoints>;

/// The one place the toy view is registered: the standard catalogue, one view and its
/// query more.
fn with_toy() -> Views {
    Views::standard()
        .with_view(registry::entry::<Toy, _, _>())
        .with_query(QueryKind {
            name: Toy::NAME,
            view: Toy::NAME,
            partners: true,
            pages: &["row"],
            answer: Answer::Rows,
        })
}

/// A sink that keeps what it is handed.
#[derive(Default)]
struct Kept(Mutex<Vec<RowChange>>);

impl FeedSink for Kept {
    fn publish<'a>(
        &'a self,
        changes: &'a [RowChange],
    ) -> Pin<Box<dyn Future<Output = Result<(), FeedError>> + Send + 'a>> {
        self.0.lock().unwrap().extend_from_slice(changes);
        Box::pin(async { Ok(()) })
    }
}

fn answered(reply: QueryReply) -> Value {
    match reply {
        QueryReply::Answered { answer, .. } => answer,
        QueryReply::Refused { error, .. } => panic!("refused: {error:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toy_view_added_in_one_place_is_found_by_the_cli_the_queries_and_the_feed() {
    let store = MemoryStore::new();
    let engine = Engine::open(store.clone(), ControlledClock::starting_at(start()), None)
        .await
        .expect("the engine opens");
    let litware = ready_partner(&engine, "Litware", "reseller").await;
    let contoso = ready_partner(&engine, "Contoso", "reseller").await;
    let catalogue = with_toy();

    // The CLI's choice of views: the standard catalogue knows no toy, this one does.
    let unknown = Views::standard().shown_view("toy").err().expect("no toy");
    assert_eq!(
        unknown,
        "`toy` is not a view; choose one of pipeline, ledger, conflicts, metrics, program"
    );
    let listed = catalogue.shown_view("nope").err().expect("no such view");
    assert!(listed.ends_with("metrics, program, toy"), "{listed}");
    let toy = catalogue.shown_view("toy").expect("the toy view is shown");
    assert!(catalogue.names().contains(&"toy"));
    assert_eq!((toy.tables)(), vec!["count"]);
    // Folded from the log as `dealreg replay` folds it, and shown.
    let mut fold = toy.fresh();
    let mut pages = dealreg_events::LogPages::new(&store, Position::ORIGIN)
        .await
        .expect("the log reads");
    while let Some(page) = pages.next_page().await.expect("a page reads") {
        for recorded in &page {
            let event = dealreg_engine::decode_event(recorded).expect("an event decodes");
            fold.fold(recorded.position, &event);
        }
    }
    let shown = toy
        .json(&*fold.into_any())
        .expect("shown")
        .expect("encoded");
    for partner in [litware, contoso] {
        let count = &shown[partner.to_string()];
        assert_eq!(count["events"], json!(2), "{shown}");
        assert_eq!(count["last_type"], json!("partner_certified"), "{shown}");
    }

    // The views store, as `serve` keeps it: the toy view folded and saved.
    let views = MemoryCheckpoints::new();
    for view in &catalogue.views {
        view.catch_up(&store, &views, CatchUp::default(), &mut |_| {})
            .await
            .expect("the views catch up");
    }
    assert!(views.load("toy").await.expect("loads").is_some());

    // The queries: the vendor gets every row, a partner the safe form of its own.
    let vault = dealreg_vault::MemoryVault::new(dealreg_vault::KeyMaterial::Seeded(7));
    let ask = |asker: Asker, view: &'static str| {
        let (store, views, vault, catalogue) = (&store, &views, &vault, &catalogue);
        async move { query::answer_in(catalogue, store, views, vault, &asker, view, b"", 1 << 20).await }
    };
    let vendor = answered(ask(Asker::Vendor, "toy").await);
    let rows = vendor["rows"].as_object().expect("rows");
    assert_eq!(rows.len(), 2, "{vendor}");
    assert_eq!(
        rows[&format!("count/{litware}")],
        json!({ "partner_id": litware.to_string(), "events": 2, "last_type": "partner_certified" })
    );
    let mine = answered(ask(Asker::Partner(PartnerId(litware)), "toy").await);
    assert_eq!(
        mine,
        json!({ "rows": { format!("count/{litware}"): { "partner_id": litware.to_string(), "events": 2 } } })
    );
    // The standard catalogue's answerer does not know it.
    let refused = query::answer(&store, &views, &vault, &Asker::Vendor, "toy", b"", 1 << 20).await;
    assert_eq!(
        refused.refusal().map(|e| e.code.as_str()),
        Some("unknown_view")
    );
    // And a real view still answers through the catalogue that holds the toy.
    let metrics = ask(Asker::Vendor, "metrics").await;
    assert!(metrics.refusal().is_none(), "{metrics:?}");

    // The feed: the toy's saves wrote the outbox; its changes are handed over, the
    // partner's in the safe form.
    let kept = Kept::default();
    feed::publish_pending_in(&catalogue, &views, &kept)
        .await
        .expect("the feed publishes");
    let kept = kept.0.into_inner().unwrap();
    let toy_changes: Vec<&RowChange> = kept.iter().filter(|c| c.view == "toy").collect();
    assert_eq!(toy_changes.len(), 4, "{kept:?}");
    let to_litware = toy_changes
        .iter()
        .find(|c| c.audience == Audience::Partner(litware.to_string()))
        .expect("litware's change");
    assert_eq!(to_litware.table, "count");
    assert_eq!(
        to_litware.row,
        Some(json!({ "partner_id": litware.to_string(), "events": 2 }))
    );
    let vendor_row = toy_changes
        .iter()
        .find(|c| c.audience == Audience::Vendor && c.key == format!("count/{contoso}"))
        .expect("the vendor's change of contoso's row");
    assert_eq!(
        vendor_row.row.as_ref().unwrap()["last_type"],
        json!("partner_certified")
    );
    // The standard catalogue's feed does not publish the toy's table.
    let entry = FeedEntry {
        seq: 1,
        view: "toy".into(),
        key: format!("count/{litware}"),
        scope: Some(litware.to_string()),
        previous_scope: None,
        position: Position::ORIGIN,
    };
    assert!(feed::changes_of(&entry, Some(&json!({}))).is_none());
    assert_eq!(
        feed::changes_in(
            &catalogue,
            &entry,
            Some(&json!({ "partner_id": "x", "events": 1 }))
        )
        .map(|c| c.len()),
        Some(2)
    );
}
