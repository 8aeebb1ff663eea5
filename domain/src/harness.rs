//! `given(events).when(command).then(events | error)`: the scenario runner for rule tests.
//!
//! `given` events may span boundaries: events of the command's boundary fold into its
//! state, partner events into partner facts. The context then carries exactly the
//! partners [`partners_needed`] names, as the engine loads them (a partner with no events
//! is an empty fact), so a rule that reads a partner the decision did not ask for fails
//! here as it would in service. Failures panic with both sides printed, so a failing rule
//! reads like the rule.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use crate::actor::{Actor, VendorRole};
use crate::boundary::Boundary;
use crate::command::Command;
use crate::context::{Context, Partners};
use crate::decision::{decide, evolve, partners_needed, Decision, State};
use crate::error::{DomainError, RejectionCode};
use crate::event::Event;
use crate::partner::PartnerState;
use crate::policy::Policy;
use crate::program::ProgramState;

pub struct Scenario {
    given: Vec<Event>,
    policy: Policy,
    now: DateTime<Utc>,
    actor: Actor,
}

/// The default scenario clock: 2026-03-02 09:00 UTC.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .unwrap_or_default()
}

impl Scenario {
    pub fn given(events: impl IntoIterator<Item = Event>) -> Scenario {
        Scenario {
            given: events.into_iter().collect(),
            policy: Policy::default_program(),
            now: t0(),
            actor: Actor::Vendor {
                role: VendorRole::ChannelManager,
                user: "cm@vendor.example".into(),
            },
        }
    }

    pub fn with_policy(mut self, policy: Policy) -> Scenario {
        self.policy = policy;
        self
    }

    pub fn at(mut self, now: DateTime<Utc>) -> Scenario {
        self.now = now;
        self
    }

    pub fn by(mut self, actor: Actor) -> Scenario {
        self.actor = actor;
        self
    }

    /// Decides `command` against the given history.
    pub fn when(self, command: Command) -> Outcome {
        let boundary = match command.boundary() {
            Ok(b) => b,
            Err(e) => {
                return Outcome {
                    result: Err(e.clone()),
                    decision: Err(e),
                    command,
                }
            }
        };
        let mut state = State::initial(&boundary);
        let mut folded: BTreeMap<_, PartnerState> = BTreeMap::new();
        let mut program = ProgramState::default();
        for event in &self.given {
            let target = event.boundary();
            if target == boundary {
                evolve(&mut state, event);
            }
            if target == Boundary::Program {
                program.evolve(event);
            }
            if let Boundary::Partner(id) = target {
                folded.entry(id).or_default().evolve(event);
            }
        }
        let empty = PartnerState::default();
        let declared = partners_needed(&state, &command);
        let partners: Partners<'_> = declared
            .iter()
            .map(|id| (*id, folded.get(id).unwrap_or(&empty)))
            .collect();
        let ctx = Context {
            now: self.now,
            actor: &self.actor,
            policy: &self.policy,
            partners: &partners,
            program: &program,
        };
        let decision = decide(&state, &command, &ctx);
        check_declared_reads(&state, &command, &ctx, &folded, &declared, &decision);
        let result = decision
            .as_ref()
            .map(|d| d.all_events(self.now))
            .map_err(Clone::clone);
        Outcome {
            result,
            decision,
            command,
        }
    }
}

/// The reads a decision declares ([`partners_needed`]) are all it reads: deciding again
/// with every partner of the history known must give the same decision, and its capacity
/// work may only name partners it declared (the engine loads exactly those, and writes
/// only to streams it loaded). Every rule test checks this for its command, so every
/// command kind is checked (issue 32, item 2).
fn check_declared_reads(
    state: &State,
    command: &Command,
    declared_ctx: &Context<'_>,
    folded: &BTreeMap<crate::ids::PartnerId, PartnerState>,
    declared: &[crate::ids::PartnerId],
    decision: &Result<Decision, DomainError>,
) {
    let everyone: Partners<'_> = folded.iter().map(|(id, p)| (*id, p)).collect();
    let ctx = Context {
        partners: &everyone,
        ..*declared_ctx
    };
    let with_everyone = decide(state, command, &ctx);
    if &with_everyone != decision {
        panic!(
            "{} reads partner facts it does not declare (partners_needed gave {declared:?}): \
             with those it decided {decision:?}, with every partner known {with_everyone:?}",
            command.name()
        );
    }
    if let Ok(decision) = decision {
        if let Some(undeclared) = decision.capacity.partners().find(|p| !declared.contains(p)) {
            panic!(
                "{} takes or gives back a slot of partner {undeclared:?}, which it does not \
                 declare it reads (partners_needed gave {declared:?})",
                command.name()
            );
        }
    }
}

pub struct Outcome {
    /// The decision as one list of events ([`Decision::all_events`]): the boundary's own,
    /// then the capacity slots given back, then those taken.
    pub result: Result<Vec<Event>, DomainError>,
    decision: Result<Decision, DomainError>,
    command: Command,
}

impl Outcome {
    /// Asserts the decision produced exactly `expected`: the boundary's own events in
    /// their order, and the capacity slot events (on partners' streams) as its capacity
    /// work, each kind in its order.
    pub fn then(self, expected: Vec<Event>) -> Vec<Event> {
        match (self.decision, self.result) {
            (Ok(decision), Ok(events)) => {
                if decision != Decision::of_account(expected.clone()) {
                    panic!(
                        "{} produced\n{}\nbut the rule expects\n{}",
                        self.command.name(),
                        pretty(&events),
                        pretty(&expected)
                    );
                }
                events
            }
            (_, Err(e)) | (Err(e), _) => panic!(
                "{} was refused ({e}) but the rule expects\n{}",
                self.command.name(),
                pretty(&expected)
            ),
        }
    }

    /// Asserts the decision succeeded and returns its events for finer checks.
    pub fn then_ok(self) -> Vec<Event> {
        match self.result {
            Ok(events) => events,
            Err(e) => panic!(
                "{} was refused ({e}; details {}) but the rule expects it to pass",
                self.command.name(),
                e.details
            ),
        }
    }

    /// Asserts the decision was refused with `code`, returning the error for detail checks.
    pub fn then_error(self, code: RejectionCode) -> DomainError {
        match self.result {
            Err(e) if e.code == code => e,
            Err(e) => panic!(
                "{} was refused with {} ({}) but the rule expects {code}",
                self.command.name(),
                e.code,
                e.message
            ),
            Ok(events) => panic!(
                "{} was accepted with\n{}\nbut the rule expects refusal {code}",
                self.command.name(),
                pretty(&events)
            ),
        }
    }
}

fn pretty(events: &[Event]) -> String {
    serde_json::to_string_pretty(events).unwrap_or_else(|e| format!("<unprintable: {e}>"))
}
