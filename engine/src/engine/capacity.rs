//! Capacity beside an account decision: the one place that holds, gives back and
//! compensates partners' capacity slots (docs/ARCHITECTURE.md, capacity).
//!
//! Why on the partners' own streams and in this order: one decision writes one stream at
//! its exact version. A slot the decision needs ([`CapacityWork::takes`]) is taken *before*
//! the account's write, decided again by the partner (`partner::take_slot`) at its stream's
//! exact tip, so capacity is exact however many accounts race for it. A slot it gives back
//! ([`CapacityWork::releases`]) is released *after* the account's write. A command
//! interrupted between the two leaves a slot the account does not back; the timekeeper
//! finds it and gives it back (`lapse_capacity_slot`). A slot taken in an earlier round of
//! the retry loop that the decision which lands no longer needs is given back here too.
//!
//! Where the backend appends to several streams atomically at no extra cost (SQLite, the
//! memory store, a replicated JetStream stream:
//! [`dealreg_events::Capabilities::capacity_in_one_append`]) none of that ordering is
//! needed: the slots taken, the account's events and the slots given back go in one
//! append, in that order, each stream at the exact tip it was decided on ([`Beside`]).
//! KurrentDB and a single JetStream node take the reservation path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dealreg_clock::Clock;
use dealreg_domain::partner::{release_slot, take_slot};
use dealreg_domain::{
    Boundary, CapacityWork, Decision, DomainError, Event, PartnerId, PartnerState, RegistrationId,
    State,
};
use dealreg_events::{EventStore, StoreError};

use super::{Engine, EngineError, Loaded};
use crate::codec::EventMetadata;
use crate::reply::PositionedEvent;

/// Slot events that go in one atomic append with the decision's own events.
#[derive(Default)]
pub(crate) struct Beside {
    /// Before the account's events: slots taken (and a slot given up on, given back first).
    pub before: Vec<SlotPart>,
    /// After them: slots given back.
    pub after: Vec<SlotPart>,
}

/// One partner stream's part of an atomic append, decided at `loaded`'s tip.
pub(crate) struct SlotPart {
    pub stream: String,
    pub loaded: Arc<Loaded>,
    pub events: Vec<Event>,
}

impl Beside {
    pub(crate) fn is_empty(&self) -> bool {
        self.before.is_empty() && self.after.is_empty()
    }
}

/// What the capacity work of a decision needs before its write.
pub(crate) enum Prepared {
    /// Write the decision, with these slot events in the same append (none on the
    /// reservation path: its slots are held already).
    Ready(Beside),
    /// A partner stream moved under a reservation: decide again after reading it.
    LostRace(String),
    /// The partner refused a slot on facts from the cache: read these and decide again.
    Reread(Vec<String>),
}

/// The slots one command holds across the rounds of its retry loop.
#[derive(Debug, Default)]
pub(crate) struct Held {
    slots: Vec<(PartnerId, RegistrationId, u64)>,
}

/// The outcome of taking the slots a decision needs.
pub(crate) enum Reserved {
    /// Every slot is held.
    Held,
    /// A partner stream moved since it was loaded: decide again.
    Stale(String),
    /// The partner refused the slot (capacity, status); `fresh` when it was decided on
    /// the partner's state as just read.
    Refused { rejection: DomainError, fresh: bool },
}

/// What the capacity work of one round reads and writes with.
pub(crate) struct SlotRound<'a> {
    /// The account's state the decision was taken on (it names slots it gave up on).
    pub primary: &'a Loaded,
    pub partners: &'a BTreeMap<PartnerId, Arc<Loaded>>,
    pub metadata: &'a EventMetadata,
    pub now: DateTime<Utc>,
}

fn partner_state(loaded: &Loaded) -> Option<&PartnerState> {
    match &loaded.state {
        State::Partner(p) => Some(p),
        _ => None,
    }
}

impl<S: EventStore + Clone, C: Clock> Engine<S, C> {
    /// Readies the capacity work of `decision` for its write: in one atomic append where
    /// the backend has it, else by holding its slots first. A slot refused on the
    /// partner's fresh state turns the decision into its refusal (`refusal`).
    pub(crate) async fn prepare_slots(
        &self,
        decision: &mut Decision,
        round: &SlotRound<'_>,
        held: &mut Held,
        written: &mut Vec<PositionedEvent>,
        refusal: impl FnOnce(DomainError) -> Event,
    ) -> Result<Prepared, EngineError> {
        let reserved = if self.store.capabilities().capacity_in_one_append {
            match self.slots_beside(&decision.capacity, round).await? {
                Ok(beside) => {
                    // Given back in the same append: nothing is left to settle after it.
                    decision.capacity.releases.clear();
                    return Ok(Prepared::Ready(beside));
                }
                Err(refused) => refused,
            }
        } else {
            self.hold_slots(&decision.capacity, round, held, written)
                .await?
        };
        match reserved {
            Reserved::Held => Ok(Prepared::Ready(Beside::default())),
            Reserved::Stale(stream) => Ok(Prepared::LostRace(stream)),
            // Decided on a cached partner: read it again before saying no.
            Reserved::Refused { fresh: false, .. } => Ok(Prepared::Reread(
                decision
                    .capacity
                    .takes
                    .iter()
                    .map(|t| t.partner_stream())
                    .collect(),
            )),
            Reserved::Refused { rejection, .. } => {
                *decision = Decision::events(vec![refusal(rejection)]);
                Ok(Prepared::Ready(Beside::default()))
            }
        }
    }

    /// The slot events of `work`, each decided by its partner at the tip the engine
    /// loaded, for one atomic append with the account's events. `Err` when a partner
    /// refuses a slot. A partner that appears twice (a slot taken and one given back on
    /// the same stream) is decided in one part, in that order.
    async fn slots_beside(
        &self,
        work: &CapacityWork,
        round: &SlotRound<'_>,
    ) -> Result<Result<Beside, Reserved>, EngineError> {
        let lapsed = match &round.primary.state {
            State::Account(a) => Some(&a.lapsed_slots),
            _ => None,
        };
        let mut beside = Beside::default();
        for take in &work.takes {
            let (partner, registration) = (take.partner_id, take.registration_id);
            let loaded = self.partner_loaded(partner, round).await?;
            let fresh = loaded.checked_at.elapsed() <= Duration::from_millis(1);
            let stream = Boundary::Partner(partner).stream_name();
            let Some(state) = partner_state(&loaded) else {
                return Err(EngineError::UnloadedBoundary { stream });
            };
            let mut events = Vec::new();
            // The partner's state the slot is taken on: as loaded, or (rarely) after giving
            // back a slot the account gave up on; only then is the state copied.
            let released;
            let state = match state.slot_of(&registration) {
                None => state,
                Some(slot)
                    if !lapsed.is_some_and(|l| l.contains(&(partner, registration, slot))) =>
                {
                    continue;
                }
                Some(slot) => {
                    // The account gave this slot up: give it back before taking a new one.
                    events = release_slot(state, registration, slot, round.now);
                    let mut after = state.clone();
                    events.iter().for_each(|e| after.evolve(e));
                    released = after;
                    &released
                }
            };
            match take_slot(state, registration, &take.account, round.now) {
                Ok(taken) => events.extend(taken),
                Err(rejection) => return Ok(Err(Reserved::Refused { rejection, fresh })),
            }
            beside.before.push(SlotPart {
                stream,
                loaded,
                events,
            });
        }
        for release in &work.releases {
            let loaded = self.partner_loaded(release.partner_id, round).await?;
            let Some(state) = partner_state(&loaded) else {
                continue;
            };
            let Some(slot) = release
                .slot
                .or_else(|| state.slot_of(&release.registration_id))
            else {
                continue;
            };
            let events = release_slot(state, release.registration_id, slot, round.now);
            if events.is_empty() {
                continue;
            }
            let stream = Boundary::Partner(release.partner_id).stream_name();
            match beside.before.iter_mut().find(|p| p.stream == stream) {
                Some(part) => part.events.extend(events),
                None => beside.after.push(SlotPart {
                    stream,
                    loaded,
                    events,
                }),
            }
        }
        Ok(Ok(beside))
    }

    /// A partner's state as the decision read it, or read now when it did not.
    async fn partner_loaded(
        &self,
        partner: PartnerId,
        round: &SlotRound<'_>,
    ) -> Result<Arc<Loaded>, EngineError> {
        match round.partners.get(&partner) {
            Some(loaded) => Ok(Arc::clone(loaded)),
            None => self.load(&Boundary::Partner(partner)).await,
        }
    }

    /// Holds every slot `work` takes, each on its partner's stream at the exact tip the
    /// engine loaded: a slot the registration already holds is kept (a retried command),
    /// one the account gave up on is released first.
    pub(crate) async fn hold_slots(
        &self,
        work: &CapacityWork,
        round: &SlotRound<'_>,
        held: &mut Held,
        written: &mut Vec<PositionedEvent>,
    ) -> Result<Reserved, EngineError> {
        let lapsed = match &round.primary.state {
            State::Account(a) => Some(&a.lapsed_slots),
            _ => None,
        };
        for take in &work.takes {
            let (partner, registration) = (take.partner_id, take.registration_id);
            let stream = Boundary::Partner(partner).stream_name();
            let mut loaded = match round.partners.get(&partner) {
                Some(loaded) => Arc::clone(loaded),
                None => self.load(&Boundary::Partner(partner)).await?,
            };
            let fresh = loaded.checked_at.elapsed() <= Duration::from_millis(1);
            let Some(state) = partner_state(&loaded) else {
                return Err(EngineError::UnloadedBoundary { stream });
            };
            if let Some(slot) = state.slot_of(&registration) {
                let gave_up = lapsed.is_some_and(|l| l.contains(&(partner, registration, slot)));
                if !gave_up {
                    continue;
                }
                // The account gave this slot up: give it back before taking a new one.
                let events = release_slot(state, registration, slot, round.now);
                match self
                    .append_beside(&stream, &loaded, &events, round, written)
                    .await
                {
                    Ok(next) => loaded = next,
                    Err(EngineError::Store(StoreError::WrongExpectedVersion { .. })) => {
                        return Ok(Reserved::Stale(stream));
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(state) = partner_state(&loaded) else {
                return Err(EngineError::UnloadedBoundary { stream });
            };
            let events = match take_slot(state, registration, &take.account, round.now) {
                Ok(events) => events,
                Err(rejection) => return Ok(Reserved::Refused { rejection, fresh }),
            };
            match self
                .append_beside(&stream, &loaded, &events, round, written)
                .await
            {
                Ok(next) => {
                    if let Some(slot) = partner_state(&next).and_then(|p| p.slot_of(&registration))
                    {
                        held.slots.push((partner, registration, slot));
                    }
                }
                Err(EngineError::Store(StoreError::WrongExpectedVersion { .. })) => {
                    return Ok(Reserved::Stale(stream));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Reserved::Held)
    }

    /// After the account's write: gives back the slots the decision releases (with the
    /// numbers the decision saw) and those held in earlier rounds that it no longer needs,
    /// adding what it wrote to `written`.
    pub(crate) async fn settle_slots(
        &self,
        work: CapacityWork,
        held: Held,
        round: &SlotRound<'_>,
        written: &mut Vec<PositionedEvent>,
    ) {
        let mut releases: Vec<(PartnerId, RegistrationId, Option<u64>)> = work
            .releases
            .into_iter()
            .map(|r| {
                let slot = r.slot.or_else(|| {
                    round
                        .partners
                        .get(&r.partner_id)
                        .and_then(|l| partner_state(l))
                        .and_then(|p| p.slot_of(&r.registration_id))
                });
                (r.partner_id, r.registration_id, slot)
            })
            .collect();
        for (partner, registration, slot) in held.slots {
            let still_needed = work
                .takes
                .iter()
                .any(|t| t.partner_id == partner && t.registration_id == registration);
            if !still_needed {
                releases.push((partner, registration, Some(slot)));
            }
        }
        for (partner, registration, slot) in releases {
            if let Some(slot) = slot {
                self.give_back(partner, registration, slot, round, written)
                    .await;
            }
        }
    }

    /// Gives one slot back at its partner's exact tip (read again after a lost race).
    /// Best effort: a slot not given back here is held by nothing on the account, and the
    /// timekeeper gives it back.
    async fn give_back(
        &self,
        partner: PartnerId,
        registration: RegistrationId,
        slot: u64,
        round: &SlotRound<'_>,
        written: &mut Vec<PositionedEvent>,
    ) {
        let boundary = Boundary::Partner(partner);
        let stream = boundary.stream_name();
        let mut fresh = false;
        for _ in 0..8 {
            let loaded = match self.state_of(&boundary, false, fresh).await {
                Ok((loaded, _)) => loaded,
                Err(e) => {
                    tracing::warn!(%stream, error = %e, "a capacity slot was not given back now; the timekeeper will");
                    return;
                }
            };
            let Some(state) = partner_state(&loaded) else {
                return;
            };
            let events = release_slot(state, registration, slot, round.now);
            match self
                .append_beside(&stream, &loaded, &events, round, written)
                .await
            {
                Ok(_) => return,
                Err(EngineError::Store(StoreError::WrongExpectedVersion { .. })) => fresh = true,
                Err(e) => {
                    tracing::warn!(%stream, error = %e, "a capacity slot was not given back now; the timekeeper will");
                    return;
                }
            }
        }
    }

    async fn append_beside(
        &self,
        stream: &str,
        loaded: &Arc<Loaded>,
        events: &[Event],
        round: &SlotRound<'_>,
        written: &mut Vec<PositionedEvent>,
    ) -> Result<Arc<Loaded>, EngineError> {
        self.append_to(stream, loaded, events, round.metadata, round.now, written)
            .await
    }
}
