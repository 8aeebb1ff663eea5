//! Capacity slots the account does not back (docs/ARCHITECTURE.md, capacity).
//!
//! On a backend without atomic appends to several streams (KurrentDB), a slot is taken on
//! the partner's stream before the account records what needs it, so a command
//! interrupted between the two leaves a slot nothing uses; and a slot is given back after
//! the account records that the registration closed, so a crash between the two leaves
//! one held too long. (Where the backend has them, both go in one append and neither
//! happens; the lapse stays for logs written before, and for KurrentDB.) The timekeeper finds both and sends `lapse_capacity_slot`:
//! decided here, at the account's exact version, it records that the account will never
//! use that slot (so it can be given back without a race against the interrupted command
//! finishing), and asks for the slot back.

use crate::account::AccountState;
use crate::command::LapseCapacitySlot;
use crate::context::Context;
use crate::error::{refuse, DomainError, RejectionCode};
use crate::event::Event;
use crate::ids::AccountKey;

pub(super) fn lapse(
    state: &AccountState,
    command: &LapseCapacitySlot,
    account: AccountKey,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    if !ctx.actor.is_system() {
        return refuse(
            RejectionCode::NotAuthorised,
            "capacity slots are given up by the timekeeper only",
        );
    }
    let (registration, partner, slot) = (command.registration_id, command.partner_id, command.slot);
    let backed = state
        .registrations
        .get(&registration)
        .is_some_and(|r| r.partner_id == partner && r.holds_slot);
    if backed {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "the registration holds this slot: it is in use",
        );
    }
    if state.lapsed_slots.contains(&(partner, registration, slot)) {
        return refuse(
            RejectionCode::AlreadyRecorded,
            "this slot was already given up",
        );
    }
    Ok(vec![
        Event::CapacitySlotLapsed {
            account: account.clone(),
            registration_id: registration,
            partner_id: partner,
            slot,
            at: ctx.now,
        },
        Event::CapacitySlotReleased {
            partner_id: partner,
            registration_id: registration,
            account,
            slot: Some(slot),
            at: ctx.now,
        },
    ])
}
