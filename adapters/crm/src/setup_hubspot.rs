//! HubSpot's side of `dealreg crm check` and `crm setup`, in the shape of
//! [`crate::setup_salesforce`]: requirements from the mapping, a check that reads what the
//! portal has, a plan of steps, and `apply`.
//!
//! The check reads every mapped object's properties (`GET /crm/v3/properties/{objectType}`:
//! each property's `type`, `fieldType`, `hasUniqueValue` and
//! `modificationMetadata.readOnlyValue`; "Properties",
//! https://developers.hubspot.com/docs/api/crm/properties) and the deal pipelines (`GET
//! /crm/v3/pipelines/deals`, "Pipelines", https://developers.hubspot.com/docs/api/crm/pipelines)
//! and names each property missing, mistyped, read-only, an `idProperty` without unique
//! values, and the board or a stage `[hubspot]` names that the portal lacks.
//!
//! The setup creates the property group `dealreg` (`POST
//! /crm/v3/properties/{objectType}/groups`), each missing property in it (`POST
//! /crm/v3/properties/{objectType}` with `name`, `label`, `type`, `fieldType`, `groupName`,
//! `hasUniqueValue: true` for the properties records are upserted by), and the deal
//! pipeline "Partner registrations" with one stage per motion stage and ending status
//! (`POST /crm/v3/pipelines/deals`; for deals each stage needs `metadata.probability`).
//! HubSpot gives the pipeline and its stages their ids (the v3 stage input has none), so
//! setup prints the `[hubspot]` lines to put in crm.toml. Idempotent: the plan comes from
//! the check, a group or property that exists already (409) is not an error, and a board
//! with the label "Partner registrations" is not created twice.
//!
//! Nothing of this has been run against a real HubSpot portal: the requests follow the
//! pages above and the fake HubSpot (adapters/crm-fake) answers them.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Value};

use crate::client::CrmError;
use crate::hubspot::{message, HubspotClient};
use crate::mapping::{hubspot_default_board, CrmConfig, Direction, Target, Transform};
use crate::setup::{Access, FieldKind, Finding, Requirement, Step};

/// The property group setup creates the properties in.
pub const GROUP: &str = "dealreg";
/// The board setup creates.
pub const BOARD_LABEL: &str = "Partner registrations";

/// Every property the mapping needs in HubSpot, object by object, in the mapping's order.
pub fn requirements(config: &CrmConfig) -> Vec<Requirement> {
    let mut out: Vec<Requirement> = Vec::new();
    let mut add = |r: Requirement| match out
        .iter_mut()
        .find(|o| o.object == r.object && o.field == r.field)
    {
        Some(existing) => {
            if rank(r.access) > rank(existing.access) {
                existing.access = r.access;
            }
            if r.kind == FieldKind::ExternalId {
                existing.kind = FieldKind::ExternalId;
            }
        }
        None => out.push(r),
    };
    for object in config.objects_for(Target::Hubspot) {
        let Some(target) = object.target(Target::Hubspot) else {
            continue;
        };
        let why = format!("object {:?} of crm.toml", object.name);
        add(Requirement {
            object: target.object.clone(),
            field: target.external_id.clone(),
            kind: FieldKind::ExternalId,
            access: Access::Write,
            why: why.clone(),
        });
        if object.hubspot_board.is_some() {
            for field in ["pipeline", "dealstage"] {
                add(Requirement {
                    object: target.object.clone(),
                    field: field.into(),
                    kind: FieldKind::Standard,
                    access: Access::Write,
                    why: why.clone(),
                });
            }
        }
        if let Some(company) = &object.hubspot_company {
            add(Requirement {
                object: "companies".into(),
                field: company.id_property.clone(),
                kind: FieldKind::ExternalId,
                access: Access::Write,
                why: why.clone(),
            });
            for (field, given) in [("name", &company.name), ("domain", &company.domain)] {
                if given.is_some() {
                    add(Requirement {
                        object: "companies".into(),
                        field: field.into(),
                        kind: FieldKind::Standard,
                        access: Access::Write,
                        why: why.clone(),
                    });
                }
            }
        }
        for field in &object.fields {
            let Some(name) = field.hubspot.as_deref() else {
                continue;
            };
            let kind = if name.starts_with("dealreg_") {
                kind_of(field.transform)
            } else {
                FieldKind::Standard
            };
            add(Requirement {
                object: target.object.clone(),
                field: name.to_string(),
                kind,
                access: match field.direction {
                    Direction::ToCrm => Access::Write,
                    Direction::FirstSync => Access::Create,
                    Direction::FromCrm => Access::Read,
                },
                why: why.clone(),
            });
        }
    }
    // The webhook reads these on deals a team creates.
    let inbound = &config.inbound;
    for field in [
        inbound.hubspot_account_property.as_str(),
        inbound.hubspot_product_line_property.as_str(),
        inbound.hubspot_owner_property.as_str(),
    ] {
        if field.is_empty() {
            continue;
        }
        add(Requirement {
            object: "deals".into(),
            field: field.to_string(),
            kind: if field.starts_with("dealreg_") {
                FieldKind::Text
            } else {
                FieldKind::Standard
            },
            access: Access::Read,
            why: "crm webhook".into(),
        });
    }
    out
}

fn rank(access: Access) -> u8 {
    match access {
        Access::Read => 0,
        Access::Create => 1,
        Access::Write => 2,
    }
}

/// dealreg's properties are strings (HubSpot values are strings on the wire, and the
/// mapping formats amounts and dates itself): long values (JSON, lists) multi-line.
fn kind_of(transform: Option<Transform>) -> FieldKind {
    match transform {
        Some(Transform::Json | Transform::Attribution | Transform::Join | Transform::Balances) => {
            FieldKind::LongText
        }
        _ => FieldKind::Text,
    }
}

/// The property `type` and `fieldType` each kind is created with and accepted as.
fn created_as(kind: &FieldKind) -> (&'static str, &'static str) {
    match kind {
        FieldKind::LongText => ("string", "textarea"),
        FieldKind::Number => ("number", "number"),
        FieldKind::Date => ("date", "date"),
        FieldKind::DateTime => ("datetime", "date"),
        FieldKind::Picklist(_) => ("enumeration", "select"),
        _ => ("string", "text"),
    }
}

fn accepts(kind: &FieldKind, found_type: &str, field_type: &str) -> bool {
    match kind {
        FieldKind::Standard => true,
        FieldKind::Text | FieldKind::LongText | FieldKind::ExternalId => {
            found_type == "string" && matches!(field_type, "text" | "textarea")
        }
        FieldKind::Number => found_type == "number",
        FieldKind::Date => found_type == "date",
        FieldKind::DateTime => found_type == "datetime",
        FieldKind::Picklist(_) => found_type == "enumeration",
        FieldKind::Lookup(_) => false,
    }
}

/// What a HubSpot check found: a property's finding (missing object or property,
/// mistyped, not unique), a read-only value, and the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubspotFinding {
    Field(Finding),
    /// `modificationMetadata.readOnlyValue`: no integration can write it.
    ReadOnly {
        object: String,
        field: String,
    },
    /// `[hubspot] pipeline` is not a deal pipeline of the portal; `labelled`: the id of
    /// a board labelled "Partner registrations" there is one.
    MissingBoard {
        pipeline: String,
        labelled: Option<String>,
    },
    /// A stage `[hubspot.stages]` names is not on the board.
    MissingStage {
        pipeline: String,
        key: String,
        stage: String,
    },
}

impl fmt::Display for HubspotFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubspotFinding::Field(Finding::MissingObject { object }) => {
                write!(f, "missing object {object}")
            }
            HubspotFinding::Field(Finding::Missing {
                object,
                field,
                kind,
            }) => write!(f, "missing property {object}.{field} ({kind})"),
            HubspotFinding::Field(Finding::Mistyped {
                object,
                field,
                expected,
                found,
            }) => write!(
                f,
                "mistyped property {object}.{field}: it is {found}, the mapping needs {expected}"
            ),
            HubspotFinding::Field(Finding::NotWritable { object, field })
            | HubspotFinding::ReadOnly { object, field } => write!(
                f,
                "property {object}.{field} is read-only (readOnlyValue): the adapter cannot write it"
            ),
            HubspotFinding::MissingBoard { pipeline, labelled } => match labelled {
                None => write!(f, "missing board: no deal pipeline {pipeline} ([hubspot] pipeline)"),
                Some(id) => write!(
                    f,
                    "missing board: no deal pipeline {pipeline} ([hubspot] pipeline); the board labelled {BOARD_LABEL:?} has the id {id}"
                ),
            },
            HubspotFinding::MissingStage {
                pipeline,
                key,
                stage,
            } => write!(
                f,
                "missing stage: {stage} ([hubspot.stages] {key}) is not a stage of the deal pipeline {pipeline}"
            ),
        }
    }
}

/// Reads the properties of every object the requirements name, and the deal pipelines
/// when the mapping puts deals on a board; answers what is wrong. Nothing is written.
pub async fn check(
    client: &HubspotClient,
    config: &CrmConfig,
    requirements: &[Requirement],
) -> Result<Vec<HubspotFinding>, CrmError> {
    let mut read: BTreeMap<String, Option<BTreeMap<String, Value>>> = BTreeMap::new();
    let mut findings = Vec::new();
    for requirement in requirements {
        if !read.contains_key(&requirement.object) {
            let properties = properties(client, &requirement.object).await?;
            if properties.is_none() {
                findings.push(HubspotFinding::Field(Finding::MissingObject {
                    object: requirement.object.clone(),
                }));
            }
            read.insert(requirement.object.clone(), properties);
        }
        // An object the portal lacks is one finding, not one per property.
        let Some(properties) = read[&requirement.object].as_ref() else {
            continue;
        };
        let Some(property) = properties.get(&requirement.field) else {
            findings.push(HubspotFinding::Field(Finding::Missing {
                object: requirement.object.clone(),
                field: requirement.field.clone(),
                kind: requirement.kind.clone(),
            }));
            continue;
        };
        let text = |name: &str| property.get(name).and_then(Value::as_str).unwrap_or("");
        let (found_type, field_type) = (text("type"), text("fieldType"));
        let unique = property.get("hasUniqueValue").and_then(Value::as_bool) == Some(true);
        if !accepts(&requirement.kind, found_type, field_type)
            || (requirement.kind == FieldKind::ExternalId && !unique)
        {
            let mut found = format!("{found_type} ({field_type})");
            if requirement.kind == FieldKind::ExternalId && !unique {
                found.push_str(", without unique values (hasUniqueValue false)");
            }
            findings.push(HubspotFinding::Field(Finding::Mistyped {
                object: requirement.object.clone(),
                field: requirement.field.clone(),
                expected: requirement.kind.clone(),
                found,
            }));
            continue;
        }
        let read_only = property
            .pointer("/modificationMetadata/readOnlyValue")
            .and_then(Value::as_bool)
            == Some(true);
        if read_only && requirement.access != Access::Read {
            findings.push(HubspotFinding::ReadOnly {
                object: requirement.object.clone(),
                field: requirement.field.clone(),
            });
        }
    }
    let on_board = config
        .objects_for(Target::Hubspot)
        .any(|o| o.hubspot_board.is_some());
    if on_board {
        let boards = pipelines(client).await?;
        let pipeline = &config.hubspot.pipeline;
        match boards.iter().find(|b| &b.id == pipeline) {
            None => findings.push(HubspotFinding::MissingBoard {
                pipeline: pipeline.clone(),
                labelled: boards
                    .iter()
                    .find(|b| b.label == BOARD_LABEL)
                    .map(|b| b.id.clone()),
            }),
            Some(board) => {
                for (key, stage) in &config.hubspot.stages {
                    if !board.stages.iter().any(|(id, _)| id == stage) {
                        findings.push(HubspotFinding::MissingStage {
                            pipeline: pipeline.clone(),
                            key: key.clone(),
                            stage: stage.clone(),
                        });
                    }
                }
            }
        }
    }
    Ok(findings)
}

/// An object's properties by name; `None` when the portal has no such object.
async fn properties(
    client: &HubspotClient,
    object: &str,
) -> Result<Option<BTreeMap<String, Value>>, CrmError> {
    let (status, body) = client
        .get(&format!("/crm/v3/properties/{object}?archived=false"))
        .await?;
    match status {
        200 => Ok(Some(
            body.get("results")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p.get("name")?.as_str()?.to_string(), p.clone())))
                .collect(),
        )),
        // HubSpot cannot resolve the object type.
        400 | 404 => Ok(None),
        s => Err(CrmError::Refused(format!(
            "reading the properties of {object}: {s}: {}",
            message(&body)
        ))),
    }
}

/// A deal pipeline: its id, label and stages (id, label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub id: String,
    pub label: String,
    pub stages: Vec<(String, String)>,
}

fn board_of(value: &Value) -> Option<Board> {
    let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_string);
    Some(Board {
        id: text(value, "id")?,
        label: text(value, "label").unwrap_or_default(),
        stages: value
            .get("stages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| Some((text(s, "id")?, text(s, "label").unwrap_or_default())))
            .collect(),
    })
}

/// The portal's deal pipelines.
pub async fn pipelines(client: &HubspotClient) -> Result<Vec<Board>, CrmError> {
    let (status, body) = client.get("/crm/v3/pipelines/deals").await?;
    if status != 200 {
        return Err(CrmError::Refused(format!(
            "reading the deal pipelines: {status}: {}",
            message(&body)
        )));
    }
    Ok(body
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(board_of)
        .collect())
}

/// One thing setup does through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The property group `dealreg` on this object (409: it is there already).
    Group(String),
    Property {
        object: String,
        name: String,
        kind: FieldKind,
    },
    /// The board "Partner registrations", unless the portal has one by that label; then
    /// its ids for crm.toml.
    Board,
}

/// What setup would do about `findings`: each step, with the action that takes it (none
/// for the steps by hand).
pub fn plan(findings: &[HubspotFinding]) -> Vec<(Step, Option<Action>)> {
    let mut steps: Vec<(Step, Option<Action>)> = Vec::new();
    let by_hand = |what: String| {
        (
            Step {
                what,
                by_hand: true,
            },
            None,
        )
    };
    for finding in findings {
        match finding {
            HubspotFinding::Field(Finding::MissingObject { object }) => steps.push(by_hand(format!(
                "create the custom object {object} (Enterprise portals only: Settings → Objects → Custom objects, or the schemas API), or set [hubspot] custom_objects = false to carry its data on companies"
            ))),
            HubspotFinding::Field(Finding::Missing { object, field, kind }) => {
                if *kind == FieldKind::Standard {
                    steps.push(by_hand(format!(
                        "{object}.{field} is a HubSpot property this portal does not have: check the mapping in crm.toml"
                    )));
                    continue;
                }
                let group = Action::Group(object.clone());
                if !steps.iter().any(|(_, a)| a.as_ref() == Some(&group)) {
                    steps.push((
                        Step {
                            what: format!(
                                "create the property group {GROUP} on {object} (POST /crm/v3/properties/{object}/groups)"
                            ),
                            by_hand: false,
                        },
                        Some(group),
                    ));
                }
                let (kind_type, field_type) = created_as(kind);
                let unique = if *kind == FieldKind::ExternalId {
                    ", hasUniqueValue: true"
                } else {
                    ""
                };
                steps.push((
                    Step {
                        what: format!(
                            "create the property {object}.{field}: type {kind_type}, fieldType {field_type}, groupName {GROUP}{unique} (POST /crm/v3/properties/{object})"
                        ),
                        by_hand: false,
                    },
                    Some(Action::Property {
                        object: object.clone(),
                        name: field.clone(),
                        kind: kind.clone(),
                    }),
                ));
            }
            HubspotFinding::Field(Finding::Mistyped { object, field, expected, found }) => {
                steps.push(by_hand(format!(
                    "{object}.{field} is {found}; the mapping needs {expected}: HubSpot cannot make an existing property unique or change its type without losing values, so archive it and run setup again (Settings → Properties), or map another property in crm.toml"
                )))
            }
            HubspotFinding::Field(Finding::NotWritable { object, field })
            | HubspotFinding::ReadOnly { object, field } => steps.push(by_hand(format!(
                "{object}.{field} is read-only in this portal: map another property in crm.toml"
            ))),
            HubspotFinding::MissingBoard { pipeline, labelled } => steps.push((
                Step {
                    what: match labelled {
                        None => format!(
                            "create the deal pipeline {BOARD_LABEL:?} with {} stages, one per motion stage and ending status (POST /crm/v3/pipelines/deals), and show the ids HubSpot gives for [hubspot] pipeline and [hubspot.stages]",
                            hubspot_default_board().len()
                        ),
                        Some(id) => format!(
                            "the board {BOARD_LABEL:?} is there with the id {id}, not {pipeline}: show its ids for [hubspot] pipeline and [hubspot.stages]"
                        ),
                    },
                    by_hand: false,
                },
                Some(Action::Board),
            )),
            HubspotFinding::MissingStage { pipeline, key, stage } => steps.push(by_hand(format!(
                "add a stage for {key} to the deal pipeline {pipeline} (Settings → Objects → Deals → Pipelines) and put its id in [hubspot.stages] in place of {stage}"
            ))),
        }
    }
    steps
}

/// The label a property is created with: `dealreg_registration_id` is "dealreg
/// registration id".
fn label(name: &str) -> String {
    name.replace('_', " ")
}

/// The probability HubSpot requires of each deal stage: 1.0 won, 0.0 the endings that
/// are not won, 0.5 the open stages.
fn probability(key: &str) -> &'static str {
    match key {
        "won" => "1.0",
        "lost" | "declined" | "withdrawn" | "expired" | "released" => "0.0",
        _ => "0.5",
    }
}

/// What apply did: a line per step taken, and the board's ids for crm.toml when it made
/// or found one.
#[derive(Debug, Default)]
pub struct Applied {
    pub done: Vec<String>,
    pub board: Option<Board>,
}

/// Takes the steps that have an action, in order. A group or property HubSpot says
/// exists already (409) is not an error; the board is found by its label before it is
/// created.
pub async fn apply(
    client: &HubspotClient,
    steps: &[(Step, Option<Action>)],
) -> Result<Applied, CrmError> {
    let mut applied = Applied::default();
    for (step, action) in steps {
        let Some(action) = action else { continue };
        let (path, body) = match action {
            Action::Group(object) => (
                format!("/crm/v3/properties/{object}/groups"),
                json!({ "name": GROUP, "label": "dealreg", "displayOrder": -1 }),
            ),
            Action::Property { object, name, kind } => {
                let (kind_type, field_type) = created_as(kind);
                (
                    format!("/crm/v3/properties/{object}"),
                    json!({ "name": name, "label": label(name), "type": kind_type,
                            "fieldType": field_type, "groupName": GROUP,
                            "hasUniqueValue": *kind == FieldKind::ExternalId,
                            "description": "written by dealreg (crm setup)" }),
                )
            }
            Action::Board => {
                if let Some(board) = pipelines(client)
                    .await?
                    .into_iter()
                    .find(|b| b.label == BOARD_LABEL)
                {
                    applied
                        .done
                        .push(format!("found the board {BOARD_LABEL:?} ({})", board.id));
                    applied.board = Some(board);
                    continue;
                }
                let stages: Vec<Value> = hubspot_default_board()
                    .iter()
                    .enumerate()
                    .map(|(i, (key, _, label))| {
                        json!({ "label": label, "displayOrder": i,
                                "metadata": { "probability": probability(key) } })
                    })
                    .collect();
                let body = json!({ "label": BOARD_LABEL, "displayOrder": 1, "stages": stages });
                let (status, answer) = client.post("/crm/v3/pipelines/deals", &body).await?;
                match (status, board_of(&answer)) {
                    (200 | 201, Some(board)) => {
                        applied.done.push(step.what.clone());
                        applied.board = Some(board);
                    }
                    _ => {
                        return Err(CrmError::Refused(format!(
                            "{}: {status}: {}",
                            step.what,
                            message(&answer)
                        )))
                    }
                }
                continue;
            }
        };
        let (status, answer) = client.post(&path, &body).await?;
        match status {
            200 | 201 => applied.done.push(step.what.clone()),
            409 => applied.done.push(format!("{} (already there)", step.what)),
            _ => {
                return Err(CrmError::Refused(format!(
                    "{}: {status}: {}",
                    step.what,
                    message(&answer)
                )))
            }
        }
    }
    Ok(applied)
}

/// `[hubspot.stages]` for `board`: each key of dealreg's board by its stage's label.
pub fn board_stages(board: &Board) -> BTreeMap<String, String> {
    hubspot_default_board()
        .into_iter()
        .filter_map(|(key, _, label)| {
            board
                .stages
                .iter()
                .find(|(_, l)| *l == label)
                .map(|(id, _)| (key, id.clone()))
        })
        .collect()
}

/// The crm.toml lines that name `board` and its stages: `pipeline = "..."` for the
/// `[hubspot]` section, then its `[hubspot.stages]` table (each key of dealreg's board by
/// its stage's label), and the won and lost stages for `[inbound]` as a comment.
pub fn board_toml(board: &Board) -> String {
    let mut out = format!("pipeline = \"{}\"\n\n[hubspot.stages]\n", board.id);
    let id_of = board_stages(board);
    for (key, _, _) in hubspot_default_board() {
        if let Some(id) = id_of.get(&key) {
            out.push_str(&format!("{key} = \"{id}\"\n"));
        }
    }
    let stage = |key: &str| id_of.get(key).cloned().unwrap_or_default();
    out.push_str(&format!(
        "# and in [inbound]: the board's won stage {:?} in hubspot_won_stages, its lost stage {:?} in hubspot_lost_stages, the others in hubspot_open_stages\n",
        stage("won"),
        stage("lost")
    ));
    out
}
