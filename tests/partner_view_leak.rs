//! Invariant 7 for views: over the whole demo, no partner view contains pricing,
//! discounts, internal notes, attribution, or anything of another partner.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use dealreg_engine::runner::{catch_up, CatchUp};
use dealreg_projections::pipeline::Pipeline;
use dealreg_store::MemoryCheckpoints;
use dealreg_store_sqlite::SqliteStore;
use serde_json::Value;

const FORBIDDEN_KEYS: &[&str] = &[
    "amount",
    "amount_minor",
    "currency",
    "estimated_amount",
    "won_amount",
    "discount",
    "discount_percent",
    "last_quoted_discount_percent",
    "attribution",
    "sourcing",
    "influencers",
    "internal_notes",
    "rationale",
    "proof_of_work",
    "evidence",
    "partner_id",
];

fn keys(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                into.insert(k.clone());
                keys(v, into);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, into)),
        _ => {}
    }
}

#[tokio::test]
async fn no_partner_view_of_the_demo_leaks_pricing_notes_or_other_partners() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = support::demo_store(&dir);
    let store = SqliteStore::open(&path).expect("open");
    let pipeline = catch_up::<Pipeline, _, _>(
        &store,
        &MemoryCheckpoints::new(),
        CatchUp::default(),
        |_| {},
    )
    .await
    .expect("fold")
    .state;

    // Who owns what, from the vendor's view.
    let mut owned: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let vendor = serde_json::to_value(pipeline.vendor_view()).expect("json");
    for stages in vendor.as_object().expect("motions").values() {
        for rows in stages.as_object().expect("stages").values() {
            for row in rows.as_array().expect("rows") {
                let partner = row["partner_id"].as_str().expect("partner").to_string();
                let registration = row["registration_id"].as_str().expect("id").to_string();
                owned.entry(partner).or_default().insert(registration);
            }
        }
    }
    let partners: Vec<(String, String)> = pipeline
        .partners()
        .map(|(id, name)| (id.to_string(), name.clone()))
        .collect();
    assert!(partners.len() >= 6, "the demo onboards its partners");

    for (partner, name) in &partners {
        let id = partner.parse().expect("uuid");
        let view = serde_json::to_value(pipeline.partner_view(dealreg_domain::PartnerId(id)))
            .expect("json");
        let text = view.to_string();
        let mut seen = BTreeSet::new();
        keys(&view, &mut seen);
        for key in FORBIDDEN_KEYS {
            assert!(!seen.contains(*key), "{name}'s view carries `{key}`");
        }
        let mine = owned.get(partner).cloned().unwrap_or_default();
        for registration in &mine {
            assert!(
                text.contains(registration.as_str()),
                "{name}'s view misses its own registration {registration}"
            );
        }
        for (other, other_name) in &partners {
            if other == partner {
                continue;
            }
            assert!(
                !text.contains(other.as_str()),
                "{name}'s view names partner {other_name}"
            );
            assert!(
                !text.contains(other_name.as_str()),
                "{name}'s view names partner {other_name}"
            );
            for registration in owned.get(other).into_iter().flatten() {
                assert!(
                    !text.contains(registration.as_str()),
                    "{name}'s view shows {other_name}'s registration {registration}"
                );
            }
        }
    }
    assert!(
        owned.values().map(BTreeSet::len).sum::<usize>() > 100,
        "the demo registered deals for the views to show"
    );
}
