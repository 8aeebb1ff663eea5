//! Conflict flags per customer account, with their SLA clocks, and likely duplicates
//! across accounts.
//!
//! Detected conflicts (horizontal, vertical, multi-channel, renewal ownership, overlapping
//! protection) come from the log as decided by the domain. Likely duplicates are a signal
//! the domain cannot see, because they span accounts: two accounts with the same
//! registrable name under different public suffixes (`acme.com`, `acme.de`, `acme.co.uk`;
//! the account key is already the registrable domain, via the public suffix list), or
//! company names that match after removing legal suffixes and punctuation (`Acme Inc.`,
//! `ACME Corporation`, `Acme GmbH`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use dealreg_domain::Position;
use dealreg_domain::{AccountKey, ConflictId, ConflictKind, ConflictParty, Event};
use serde::{Deserialize, Serialize};

use crate::table::{Table, Tables, TablesMut};
use crate::Projection;

/// Jaro-Winkler similarity at or above which two normalised company names are flagged.
pub const NAME_SIMILARITY: f64 = 0.92;

/// How many accounts sharing a name's first word a new account is compared with (the
/// most recent ones; only they are kept per word). Bounds the work per account, and the
/// size of a word's row, on very large programs; suffix matches are found regardless.
const MAX_COMPARED: usize = 256;

/// At most this many name-similarity flags are raised for one new account (the closest
/// names first). Why: a program whose customers are named `Store 1` … `Store 90000` made
/// every account similar to the 256 before it; a replay of 200,000 events then held 17
/// million flags and 18 GB. A person reviews a handful of candidates, not hundreds.
const MAX_SIMILAR_PER_ACCOUNT: usize = 8;

/// The numbers in a normalised name (`store 12 west` → `["12"]`). Two names whose numbers
/// differ name different companies however alike the rest is (`Store 12`, `Store 13`).
fn numbers_in(name: &str) -> impl Iterator<Item = &str> {
    name.split(' ')
        .filter(|w| w.bytes().any(|c| c.is_ascii_digit()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlagStatus {
    None,
    Risk,
    Active,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConflictFlag {
    pub conflict_id: ConflictId,
    pub kind: ConflictKind,
    pub product_line: String,
    pub status: FlagStatus,
    pub parties: Vec<ConflictParty>,
    pub reasons: Vec<String>,
    pub detected_at: DateTime<Utc>,
    /// Acknowledge within 24 h (policy).
    pub acknowledge_by: DateTime<Utc>,
    /// Resolution plan within 5 business days (policy).
    pub resolution_plan_by: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub winner: Option<dealreg_domain::RegistrationId>,
    /// SLAs the timekeeper recorded as breached.
    #[serde(default)]
    pub breached: Vec<dealreg_domain::ConflictSla>,
    /// When and why the conflict closed by itself (fewer than two live parties).
    #[serde(default)]
    pub closed: Option<(DateTime<Utc>, String)>,
    /// The resolution plan recorded last (absent until one is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<ResolutionPlan>,
}

/// A conflict's resolution plan: it meets the 5-business-day SLA; the resolution itself
/// is tracked apart (`resolved_at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResolutionPlan {
    pub owner: String,
    pub steps: Vec<String>,
    pub resolve_by: chrono::NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub recorded_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DuplicateFlag {
    pub accounts: [AccountKey; 2],
    pub status: FlagStatus,
    pub reasons: Vec<String>,
    pub detected_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConflictFlags {
    resolution_business_days: u32,
    #[serde(skip)]
    accounts: Table<AccountKey, BTreeMap<ConflictId, ConflictFlag>>,
    /// Normalised company name per account (first seen).
    #[serde(skip)]
    names: Table<AccountKey, String>,
    #[serde(skip)]
    by_label: Table<String, BTreeSet<AccountKey>>,
    #[serde(skip)]
    /// The last accounts noted per first word of their name, with the name (compared
    /// without a lookup per candidate).
    by_first_word: Table<String, Vec<(AccountKey, String)>>,
    /// Keyed by `"<first account> <second account>"` (ordered).
    #[serde(skip)]
    duplicates: Table<String, DuplicateFlag>,
}

impl ConflictFlags {
    /// Flags of one account (conflicts on it and duplicates it is part of).
    pub fn account(&self, key: &AccountKey) -> (Vec<&ConflictFlag>, Vec<&DuplicateFlag>) {
        let conflicts = self
            .accounts
            .get(key)
            .map(|m| m.values().collect())
            .unwrap_or_default();
        let duplicates = self
            .duplicates
            .values()
            .filter(|d| d.accounts.contains(key))
            .collect();
        (conflicts, duplicates)
    }

    pub fn all(&self) -> impl Iterator<Item = (&AccountKey, &ConflictFlag)> {
        self.accounts
            .iter()
            .flat_map(|(k, m)| m.values().map(move |f| (k, f)))
    }

    pub fn duplicates(&self) -> impl Iterator<Item = &DuplicateFlag> {
        self.duplicates.values()
    }

    /// Each account with its conflicts, in account order.
    pub fn by_account(&self) -> impl Iterator<Item = (&AccountKey, Vec<&ConflictFlag>)> {
        self.accounts.iter().map(|(k, m)| (k, m.values().collect()))
    }

    /// Likely duplicates with their keys (`"<first account> <second account>"`), in key
    /// order.
    pub fn duplicates_by_key(&self) -> impl Iterator<Item = (&str, &DuplicateFlag)> {
        self.duplicates.iter().map(|(k, d)| (k.as_str(), d))
    }

    fn note_account(&mut self, key: &AccountKey, company: &str, at: DateTime<Utc>) {
        if self.names.contains_key(key) {
            return;
        }
        let name = normalise_company(company);
        let label = key.0.split('.').next().unwrap_or_default().to_string();
        let mut found: BTreeMap<AccountKey, Vec<String>> = BTreeMap::new();
        for other in self.by_label.get(&label).into_iter().flatten() {
            found.entry(other.clone()).or_default().push(format!(
                "same registrable name `{label}` under another suffix ({other}, {key})"
            ));
        }
        let first_word = name.split(' ').next().unwrap_or_default().to_string();
        if let Some(candidates) = self.by_first_word.get(&first_word) {
            let numbers: Vec<&str> = numbers_in(&name).collect();
            let mut similar: Vec<(f64, &AccountKey, &String)> = Vec::new();
            for (other, other_name) in candidates.iter().rev().take(MAX_COMPARED) {
                if !numbers_in(other_name).eq(numbers.iter().copied()) {
                    continue;
                }
                let score = strsim::jaro_winkler(&name, other_name);
                if score >= NAME_SIMILARITY {
                    similar.push((score, other, other_name));
                }
            }
            // The closest first; equal scores in account order, so the fold stays
            // deterministic.
            similar.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
            for (score, other, other_name) in similar.into_iter().take(MAX_SIMILAR_PER_ACCOUNT) {
                found.entry(other.clone()).or_default().push(format!(
                    "similar company names `{other_name}` ~ `{name}` ({score:.2})"
                ));
            }
        }
        for (other, reasons) in found {
            let pair = if other < *key {
                (other.clone(), key.clone())
            } else {
                (key.clone(), other.clone())
            };
            let pair_key = format!("{} {}", pair.0, pair.1);
            if !self.duplicates.contains_key(&pair_key) {
                self.duplicates.insert(
                    pair_key,
                    DuplicateFlag {
                        accounts: [pair.0, pair.1],
                        status: FlagStatus::Risk,
                        reasons,
                        detected_at: at,
                    },
                );
            }
        }
        self.by_label.entry_or_default(label).insert(key.clone());
        let recent = self.by_first_word.entry_or_default(first_word);
        recent.push((key.clone(), name.clone()));
        self.names.insert(key.clone(), name);
        if recent.len() > MAX_COMPARED {
            let excess = recent.len() - MAX_COMPARED;
            recent.drain(..excess);
        }
    }
}

/// Lower-case, punctuation removed, legal suffixes dropped: `ACME Corporation` → `acme`.
pub fn normalise_company(name: &str) -> String {
    const LEGAL: &[&str] = &[
        "inc",
        "incorporated",
        "corp",
        "corporation",
        "co",
        "company",
        "ltd",
        "limited",
        "llc",
        "llp",
        "lp",
        "plc",
        "gmbh",
        "ag",
        "kg",
        "sa",
        "sas",
        "sarl",
        "srl",
        "spa",
        "bv",
        "nv",
        "oy",
        "ab",
        "as",
        "aps",
        "pty",
        "kk",
        "the",
    ];
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    let words: Vec<&str> = cleaned
        .split_whitespace()
        .filter(|w| !LEGAL.contains(w))
        .collect();
    if words.is_empty() {
        cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        words.join(" ")
    }
}

pub use dealreg_domain::calendar::add_business_days;

impl Projection for ConflictFlags {
    const NAME: &'static str = "conflicts";
    /// 2: overlapping protection is flagged as a risk. 3: conflicts close by themselves.
    /// 4: stored as rows. 5: at most 8 similar names flagged per account, names whose
    /// numbers differ never, and only the last 256 accounts kept per first word.
    /// 6: resolution plans; direct sales beside a protection is a risk.
    const VERSION: u32 = 6;
    /// Flags and likely duplicates, for the vendor only.
    const PUBLISHED: &'static [crate::Published] = &[
        crate::Published {
            table: "account",
            for_partners: None,
        },
        crate::Published {
            table: "duplicate",
            for_partners: None,
        },
    ];

    fn tables(&self) -> Tables<'_> {
        vec![
            ("account", &self.accounts),
            ("name", &self.names),
            ("label", &self.by_label),
            ("first_word", &self.by_first_word),
            ("duplicate", &self.duplicates),
        ]
    }

    fn tables_mut(&mut self) -> TablesMut<'_> {
        vec![
            ("account", &mut self.accounts),
            ("name", &mut self.names),
            ("label", &mut self.by_label),
            ("first_word", &mut self.by_first_word),
            ("duplicate", &mut self.duplicates),
        ]
    }

    fn apply(&mut self, _position: Position, event: &Event) {
        match event {
            Event::PolicyAdopted { policy, .. } => {
                self.resolution_business_days = policy.sla.conflict_resolution_business_days
            }
            Event::RegistrationSubmitted {
                account,
                customer,
                at,
                ..
            } => self.note_account(account, &customer.company, *at),
            Event::ConflictDetected {
                account,
                conflict_id,
                kind,
                product_line,
                parties,
                reasons,
                acknowledge_by,
                resolution_plan_by,
                at,
                ..
            } => {
                let days = if self.resolution_business_days == 0 {
                    5
                } else {
                    self.resolution_business_days
                };
                self.accounts.entry_or_default(account.clone()).insert(
                    conflict_id.clone(),
                    ConflictFlag {
                        conflict_id: conflict_id.clone(),
                        kind: *kind,
                        product_line: product_line.clone(),
                        // Overlapping protection and direct sales on another line of a
                        // protected account are risks to watch; every other kind is a
                        // conflict to resolve.
                        status: if matches!(
                            kind,
                            ConflictKind::OverlappingProtection
                                | ConflictKind::DirectOnProtectedAccount
                        ) {
                            FlagStatus::Risk
                        } else {
                            FlagStatus::Active
                        },
                        parties: parties.clone(),
                        reasons: reasons.clone(),
                        detected_at: *at,
                        acknowledge_by: *acknowledge_by,
                        resolution_plan_by: resolution_plan_by
                            .unwrap_or_else(|| add_business_days(*at, days)),
                        acknowledged_at: None,
                        resolved_at: None,
                        winner: None,
                        breached: Vec::new(),
                        closed: None,
                        plan: None,
                    },
                );
            }
            Event::ConflictSlaBreached {
                account,
                conflict_id,
                sla,
                ..
            } => {
                if let Some(flag) = self
                    .accounts
                    .get_mut(account)
                    .and_then(|m| m.get_mut(conflict_id))
                {
                    flag.breached.push(*sla);
                }
            }
            Event::ConflictAcknowledged {
                account,
                conflict_id,
                at,
                ..
            } => {
                if let Some(flag) = self
                    .accounts
                    .get_mut(account)
                    .and_then(|m| m.get_mut(conflict_id))
                {
                    flag.acknowledged_at = Some(*at);
                }
            }
            Event::ConflictResolutionPlanRecorded {
                account,
                conflict_id,
                owner,
                steps,
                resolve_by,
                by,
                at,
            } => {
                if let Some(flag) = self
                    .accounts
                    .get_mut(account)
                    .and_then(|m| m.get_mut(conflict_id))
                {
                    flag.plan = Some(ResolutionPlan {
                        owner: owner.clone(),
                        steps: steps.clone(),
                        resolve_by: *resolve_by,
                        recorded_at: *at,
                        recorded_by: by.clone(),
                    });
                }
            }
            Event::ConflictResolved {
                account,
                conflict_id,
                winner,
                at,
                ..
            } => {
                if let Some(flag) = self
                    .accounts
                    .get_mut(account)
                    .and_then(|m| m.get_mut(conflict_id))
                {
                    flag.resolved_at = Some(*at);
                    flag.winner = *winner;
                    flag.status = FlagStatus::None;
                }
            }
            Event::ConflictClosed {
                account,
                conflict_id,
                reason,
                at,
            } => {
                if let Some(flag) = self
                    .accounts
                    .get_mut(account)
                    .and_then(|m| m.get_mut(conflict_id))
                {
                    flag.closed = Some((*at, reason.clone()));
                    flag.status = FlagStatus::None;
                }
            }
            _ => {}
        }
    }
}
