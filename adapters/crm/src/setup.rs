//! What a CRM must have for a mapping, whichever CRM: the requirements (object, field,
//! kind), what a check found wrong, and the steps a setup takes.
//!
//! `dealreg crm check` turns a mapping into [`Requirement`]s, asks the CRM what it has
//! (Salesforce: sObject describe; HubSpot: the properties and pipelines APIs) and answers
//! [`Finding`]s; `dealreg crm sync` and `crm poll` run it first and send nothing when
//! anything is found. `dealreg crm setup` shows the [`Step`]s that would make the findings
//! go away and takes them on `--apply`. Each CRM has its own module for the specifics
//! (`setup_salesforce`, `setup_hubspot`).

use std::fmt;

/// The kind of value a field holds, as the mapping needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    /// Text (up to 255 characters).
    Text,
    /// Long text (JSON, joined lists).
    LongText,
    /// Text, unique, marked as an external id: what records are upserted by.
    ExternalId,
    /// A decimal number (amounts).
    Number,
    Date,
    DateTime,
    /// One of these values.
    Picklist(Vec<String>),
    /// A reference to a record of this object.
    Lookup(String),
    /// A field the CRM has on its own (standard): only that it exists and can be written.
    Standard,
}

impl fmt::Display for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldKind::Text => write!(f, "text"),
            FieldKind::LongText => write!(f, "long text"),
            FieldKind::ExternalId => write!(f, "text, external id, unique"),
            FieldKind::Number => write!(f, "number"),
            FieldKind::Date => write!(f, "date"),
            FieldKind::DateTime => write!(f, "date-time"),
            FieldKind::Picklist(values) => write!(f, "picklist ({})", values.join(", ")),
            FieldKind::Lookup(object) => write!(f, "lookup to {object}"),
            FieldKind::Standard => write!(f, "standard field"),
        }
    }
}

/// What the adapter does with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads it only (the CRM's users write it).
    Read,
    /// Writes it when it creates a record.
    Create,
    /// Writes it on create and on update.
    Write,
}

/// One field the mapping needs on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub object: String,
    pub field: String,
    pub kind: FieldKind,
    pub access: Access,
    /// Why: the mapping that names it, or the feature (polling, approvals...).
    pub why: String,
}

/// What a check found wrong with one requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The CRM has no such object (every field of it is missing too).
    MissingObject { object: String },
    Missing {
        object: String,
        field: String,
        kind: FieldKind,
    },
    /// The field exists with another type.
    Mistyped {
        object: String,
        field: String,
        expected: FieldKind,
        found: String,
    },
    /// The field exists but the integration user may not write it.
    NotWritable { object: String, field: String },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::MissingObject { object } => write!(f, "missing object {object}"),
            Finding::Missing {
                object,
                field,
                kind,
            } => write!(f, "missing field {object}.{field} ({kind})"),
            Finding::Mistyped {
                object,
                field,
                expected,
                found,
            } => write!(
                f,
                "mistyped field {object}.{field}: it is {found}, the mapping needs {expected}"
            ),
            Finding::NotWritable { object, field } => write!(
                f,
                "field {object}.{field} is not writable by the integration user (field-level security)"
            ),
        }
    }
}

/// One step of a setup: what it does, and whether someone has to do it by hand (no API
/// does it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub what: String,
    pub by_hand: bool,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.by_hand {
            write!(f, "by hand: {}", self.what)
        } else {
            write!(f, "{}", self.what)
        }
    }
}
