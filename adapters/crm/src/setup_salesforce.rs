//! Salesforce's side of `dealreg crm check` and `crm setup`.
//!
//! The check describes every mapped object (`GET /services/data/vXX.X/sobjects/{object}/describe`,
//! "sObject Describe",
//! https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm)
//! and compares each field's `type`, `createable` and `updateable` (describe lists only the
//! fields the integration user can see) with what the mapping needs. The setup creates
//! what is missing through the Tooling API (`POST /services/data/vXX.X/tooling/sobjects/CustomField`
//! with `FullName` and `Metadata`, "CustomField",
//! https://developer.salesforce.com/docs/atlas.en-us.api_tooling.meta/api_tooling/tooling_api_objects_customfield.htm;
//! `CustomObject` likewise), grants the integration user the fields through a permission
//! set (`PermissionSet`, `FieldPermissions` with `PermissionsRead`/`PermissionsEdit`,
//! `PermissionSetAssignment`: a field created by the API is visible to nobody until
//! field-level security grants it), and lists what no API does: the Lead field mapping
//! (Setup → Object Manager → Lead → Fields & Relationships → Map Lead Fields).
//! Idempotent: the plan comes from the check, so an org that passes it gets nothing.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::client::CrmError;
use crate::mapping::{
    CrmConfig, Direction, Target, Transform, DECISION_ERROR_FIELD, DECISION_FIELD,
    DECISION_REASON_FIELD, PARTNER_ACCOUNT_EXTERNAL_ID, PARTNER_ACCOUNT_LOOKUP,
    PARTNER_ACCOUNT_OBJECT, PARTNER_ACCOUNT_STANDARD_FIELD,
};
use crate::salesforce::{error_text, SalesforceClient};
use crate::setup::{Access, FieldKind, Finding, Requirement, Step};

/// The permission set setup creates and assigns to the integration user.
pub const PERMISSION_SET: &str = "Dealreg_Integration";

/// Every field the mapping (and polling) needs in Salesforce, object by object, in the
/// mapping's order.
pub fn requirements(config: &CrmConfig) -> Vec<Requirement> {
    let mut out: Vec<Requirement> = Vec::new();
    let mut add = |r: Requirement| {
        match out
            .iter_mut()
            .find(|o| o.object == r.object && o.field == r.field)
        {
            // The stronger access wins (a field read by polling and written by the sync).
            Some(existing) => {
                if access_rank(r.access) > access_rank(existing.access) {
                    existing.access = r.access;
                }
            }
            None => out.push(r),
        }
    };
    for object in config.objects_for(Target::Salesforce) {
        let Some(target) = object.target(Target::Salesforce) else {
            continue;
        };
        let why = format!("object {:?} of crm.toml", object.name);
        // Lead-first: the Lead's custom fields are mapped onto the Opportunity it converts
        // to, and written there once it is converted.
        let objects: Vec<&str> = if target.object == "Lead" {
            vec!["Lead", "Opportunity"]
        } else {
            vec![target.object.as_str()]
        };
        for crm_object in &objects {
            add(Requirement {
                object: (*crm_object).to_string(),
                field: target.external_id.clone(),
                kind: FieldKind::ExternalId,
                access: Access::Write,
                why: why.clone(),
            });
        }
        for field in &object.fields {
            let Some(name) = field.salesforce.as_deref() else {
                continue;
            };
            let custom = name.ends_with("__c");
            let kind = if custom {
                kind_of(field.transform, field.from.as_deref())
            } else {
                FieldKind::Standard
            };
            let access = match field.direction {
                Direction::ToCrm => Access::Write,
                Direction::FirstSync => Access::Create,
                Direction::FromCrm => Access::Read,
            };
            for (i, crm_object) in objects.iter().enumerate() {
                // The Lead's standard fields stay on the Lead.
                if i > 0 && !custom {
                    continue;
                }
                add(Requirement {
                    object: (*crm_object).to_string(),
                    field: name.to_string(),
                    kind: kind.clone(),
                    access,
                    why: why.clone(),
                });
            }
        }
    }
    // The partner's Account on the registration's record: the lookup setup creates (on the
    // Lead and the Opportunity it converts to), and, with partner accounts, Opportunity's
    // standard PartnerAccountId (only where the org has partner accounts: enabling them
    // is by hand).
    for object in config.objects_for(Target::Salesforce) {
        let (Some(target), Some(_)) = (
            object.target(Target::Salesforce),
            &object.salesforce_partner_account,
        ) else {
            continue;
        };
        let why = format!(
            "the partner's Account of object {:?} of crm.toml",
            object.name
        );
        let objects: Vec<&str> = if target.object == "Lead" {
            vec!["Lead", "Opportunity"]
        } else {
            vec![target.object.as_str()]
        };
        for crm_object in objects {
            if config.salesforce.partner_accounts && crm_object == "Opportunity" {
                add(Requirement {
                    object: crm_object.into(),
                    field: PARTNER_ACCOUNT_STANDARD_FIELD.into(),
                    kind: FieldKind::Standard,
                    access: Access::Write,
                    why: format!("{why} ([salesforce] partner_accounts)"),
                });
                if target.object != "Lead" {
                    continue;
                }
            }
            add(Requirement {
                object: crm_object.into(),
                field: PARTNER_ACCOUNT_LOOKUP.into(),
                kind: FieldKind::Lookup(PARTNER_ACCOUNT_OBJECT.into()),
                access: Access::Write,
                why: why.clone(),
            });
        }
        add(Requirement {
            object: PARTNER_ACCOUNT_OBJECT.into(),
            field: PARTNER_ACCOUNT_EXTERNAL_ID.into(),
            kind: FieldKind::ExternalId,
            access: Access::Write,
            why,
        });
    }
    // Approvals from inside Salesforce: on the registration's record (and, Lead-first, on
    // the Opportunity it converts to).
    if config.salesforce.approvals {
        if let Some(target) = config
            .objects_for(Target::Salesforce)
            .find(|o| o.view == "pipeline" && o.table == "registration" && !o.portal)
            .and_then(|o| o.target(Target::Salesforce))
        {
            let objects: Vec<&str> = if target.object == "Lead" {
                vec!["Lead", "Opportunity"]
            } else {
                vec![target.object.as_str()]
            };
            for object in objects {
                for (field, kind, access) in [
                    (
                        DECISION_FIELD,
                        FieldKind::Picklist(vec!["Approve".into(), "Decline".into()]),
                        Access::Read,
                    ),
                    (DECISION_REASON_FIELD, FieldKind::Text, Access::Read),
                    (DECISION_ERROR_FIELD, FieldKind::Text, Access::Write),
                ] {
                    add(Requirement {
                        object: object.into(),
                        field: field.into(),
                        kind,
                        access,
                        why: "approvals in Salesforce ([salesforce] approvals)".into(),
                    });
                }
            }
        }
    }
    // `crm poll` reads these on Opportunity.
    let inbound = &config.inbound;
    for (field, kind) in [
        (inbound.salesforce_account_field.as_str(), FieldKind::Text),
        (
            inbound.salesforce_product_line_field.as_str(),
            FieldKind::Text,
        ),
    ] {
        if field.is_empty() {
            continue;
        }
        add(Requirement {
            object: "Opportunity".into(),
            field: field.to_string(),
            kind: if field.ends_with("__c") {
                kind
            } else {
                FieldKind::Standard
            },
            access: Access::Read,
            why: "crm poll".into(),
        });
    }
    out
}

fn access_rank(access: Access) -> u8 {
    match access {
        Access::Read => 0,
        Access::Create => 1,
        Access::Write => 2,
    }
}

/// The kind of a custom field, from what the mapping puts in it: amounts are numbers,
/// `date` a Date, a view's `*_at`/`*_by` value a date-time, anything else text.
fn kind_of(transform: Option<Transform>, from: Option<&str>) -> FieldKind {
    match transform {
        Some(Transform::Money | Transform::MinorUnits) => FieldKind::Number,
        Some(Transform::Date) => FieldKind::Date,
        Some(Transform::Json | Transform::Attribution | Transform::Join | Transform::Balances) => {
            FieldKind::LongText
        }
        Some(_) => FieldKind::Text,
        None => {
            let last = from.and_then(|f| f.rsplit('/').next()).unwrap_or_default();
            if last.ends_with("_at") || last.ends_with("_by") {
                FieldKind::DateTime
            } else {
                FieldKind::Text
            }
        }
    }
}

/// Describe's field types each kind accepts.
fn accepts(kind: &FieldKind, found: &str) -> bool {
    match kind {
        FieldKind::Text | FieldKind::LongText => matches!(found, "string" | "textarea"),
        FieldKind::ExternalId => found == "string",
        FieldKind::Number => matches!(found, "double" | "currency" | "int" | "percent"),
        FieldKind::Date => found == "date",
        FieldKind::DateTime => found == "datetime",
        FieldKind::Picklist(_) => found == "picklist",
        FieldKind::Lookup(_) => found == "reference",
        FieldKind::Standard => true,
    }
}

/// Describes every object the requirements name and answers what is wrong, in the
/// requirements' order. Nothing is written.
pub async fn check(
    client: &SalesforceClient,
    requirements: &[Requirement],
) -> Result<Vec<Finding>, CrmError> {
    let mut described: BTreeMap<String, Option<BTreeMap<String, Value>>> = BTreeMap::new();
    let mut findings = Vec::new();
    for requirement in requirements {
        if !described.contains_key(&requirement.object) {
            let fields = client.describe(&requirement.object).await?.map(|d| {
                d.get("fields")
                    .and_then(Value::as_array)
                    .map(|fields| {
                        fields
                            .iter()
                            .filter_map(|f| Some((f.get("name")?.as_str()?.to_string(), f.clone())))
                            .collect()
                    })
                    .unwrap_or_default()
            });
            if fields.is_none() {
                findings.push(Finding::MissingObject {
                    object: requirement.object.clone(),
                });
            }
            described.insert(requirement.object.clone(), fields);
        }
        let fields = described[&requirement.object].as_ref();
        let Some(field) = fields.and_then(|f| f.get(&requirement.field)) else {
            findings.push(Finding::Missing {
                object: requirement.object.clone(),
                field: requirement.field.clone(),
                kind: requirement.kind.clone(),
            });
            continue;
        };
        let found = field.get("type").and_then(Value::as_str).unwrap_or("");
        let external = field.get("externalId").and_then(Value::as_bool) == Some(true);
        if !accepts(&requirement.kind, found)
            || (requirement.kind == FieldKind::ExternalId && !external)
        {
            findings.push(Finding::Mistyped {
                object: requirement.object.clone(),
                field: requirement.field.clone(),
                expected: requirement.kind.clone(),
                found: if external {
                    format!("{found}, external id")
                } else {
                    found.to_string()
                },
            });
            continue;
        }
        let flag = |name: &str| field.get(name).and_then(Value::as_bool) == Some(true);
        let writable = match requirement.access {
            Access::Read => true,
            Access::Create => flag("createable"),
            Access::Write => flag("createable") && flag("updateable"),
        };
        if !writable {
            findings.push(Finding::NotWritable {
                object: requirement.object.clone(),
                field: requirement.field.clone(),
            });
        }
    }
    Ok(findings)
}

/// One thing setup does through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    CustomObject(String),
    CustomField {
        object: String,
        field: String,
        kind: FieldKind,
    },
    /// Read (and edit) access to a field through the permission set.
    FieldAccess {
        object: String,
        field: String,
        edit: bool,
    },
    /// The permission set, if the org does not have it, assigned to the integration user.
    PermissionSet,
}

/// What setup would do about `findings`: each step, with the action that takes it (none
/// for steps by hand).
pub fn plan(
    config: &CrmConfig,
    requirements: &[Requirement],
    findings: &[Finding],
) -> Vec<(Step, Option<Action>)> {
    let mut steps: Vec<(Step, Option<Action>)> = Vec::new();
    let mut access = Vec::new();
    for finding in findings {
        match finding {
            Finding::MissingObject { object } => steps.push((
                Step {
                    what: format!(
                        "create the custom object {object} (Tooling API CustomObject, deployed, read/write sharing)"
                    ),
                    by_hand: false,
                },
                Some(Action::CustomObject(object.clone())),
            )),
            Finding::Missing {
                object,
                field,
                kind,
            } => {
                if *kind == FieldKind::Standard && field == PARTNER_ACCOUNT_STANDARD_FIELD {
                    steps.push((
                        Step {
                            what: format!("{object}.{field} exists only where the org has partner accounts (Partner Relationship Management / Partner Central): enable them, or set [salesforce] partner_accounts = false to use the lookup {PARTNER_ACCOUNT_LOOKUP} setup creates"),
                            by_hand: true,
                        },
                        None,
                    ));
                    continue;
                }
                if *kind == FieldKind::Standard {
                    steps.push((
                        Step {
                            what: format!("{object}.{field} is a standard field this org does not show the integration user: check the object's field-level security, or the feature that brings it"),
                            by_hand: true,
                        },
                        None,
                    ));
                    continue;
                }
                steps.push((
                    Step {
                        what: format!(
                            "create the field {object}.{field}: {} (Tooling API CustomField)",
                            metadata_text(kind)
                        ),
                        by_hand: false,
                    },
                    Some(Action::CustomField {
                        object: object.clone(),
                        field: field.clone(),
                        kind: kind.clone(),
                    }),
                ));
                access.push((object.clone(), field.clone()));
            }
            Finding::Mistyped {
                object,
                field,
                expected,
                found,
            } => steps.push((
                Step {
                    what: format!("{object}.{field} is {found}; change it to {expected} (Setup → Object Manager → {object} → Fields & Relationships), or map another field in crm.toml: setup does not change a field's type, which can lose data"),
                    by_hand: true,
                },
                None,
            )),
            Finding::NotWritable { object, field } => {
                access.push((object.clone(), field.clone()));
            }
        }
    }
    if !access.is_empty() {
        steps.push((
            Step {
                what: format!(
                    "create the permission set {PERMISSION_SET} if the org has none, and assign it to the integration user (PermissionSet, PermissionSetAssignment)"
                ),
                by_hand: false,
            },
            Some(Action::PermissionSet),
        ));
        for (object, field) in access {
            let edit = requirements
                .iter()
                .find(|r| r.object == object && r.field == field)
                .is_none_or(|r| r.access != Access::Read);
            steps.push((
                Step {
                    what: format!(
                        "grant {} on {object}.{field} through {PERMISSION_SET} (FieldPermissions)",
                        if edit { "read and edit" } else { "read" }
                    ),
                    by_hand: false,
                },
                Some(Action::FieldAccess {
                    object,
                    field,
                    edit,
                }),
            ));
        }
    }
    // The Lead field mapping has no API (Metadata API has no Lead conversion mapping):
    // shown whenever registrations are Leads, as a reminder to check it.
    let lead_fields: Vec<&str> = requirements
        .iter()
        .filter(|r| r.object == "Lead" && r.field.ends_with("__c"))
        .map(|r| r.field.as_str())
        .collect();
    let lead_first = config.objects_for(Target::Salesforce).any(|o| {
        o.target(Target::Salesforce)
            .is_some_and(|t| t.object == "Lead")
    });
    if lead_first && !lead_fields.is_empty() {
        steps.push((
            Step {
                what: format!(
                    "check the Lead field mapping (Setup → Object Manager → Lead → Fields & Relationships → Map Lead Fields): map each of {} to the Opportunity field of the same name, so a converted Lead carries them",
                    lead_fields.join(", ")
                ),
                by_hand: true,
            },
            None,
        ));
    }
    steps
}

/// A field's kind as the Tooling API's `Metadata` (Metadata API CustomField).
fn metadata(field: &str, kind: &FieldKind) -> Value {
    let label = field
        .trim_end_matches("__c")
        .replace('_', " ")
        .trim()
        .to_string();
    match kind {
        FieldKind::Text | FieldKind::Standard => {
            json!({ "label": label, "type": "Text", "length": 255 })
        }
        FieldKind::LongText => {
            json!({ "label": label, "type": "LongTextArea", "length": 32768, "visibleLines": 3 })
        }
        FieldKind::ExternalId => json!({ "label": label, "type": "Text", "length": 255,
                                         "externalId": true, "unique": true }),
        // Scale 3: the most decimals a currency dealreg knows has (BHD, KWD...).
        FieldKind::Number => {
            json!({ "label": label, "type": "Number", "precision": 18, "scale": 3 })
        }
        FieldKind::Date => json!({ "label": label, "type": "Date" }),
        FieldKind::DateTime => json!({ "label": label, "type": "DateTime" }),
        FieldKind::Picklist(values) => json!({ "label": label, "type": "Picklist",
            "valueSet": { "restricted": true, "valueSetDefinition": { "sorted": false,
                "value": values.iter().map(|v| json!({ "fullName": v, "label": v, "default": false })).collect::<Vec<_>>() } } }),
        FieldKind::Lookup(object) => {
            json!({ "label": label, "type": "Lookup", "referenceTo": object,
            "relationshipName": field.trim_end_matches("__c"), "deleteConstraint": "SetNull" })
        }
    }
}

fn metadata_text(kind: &FieldKind) -> String {
    match kind {
        FieldKind::Text | FieldKind::Standard => "Text(255)".into(),
        FieldKind::LongText => "Long Text Area(32768)".into(),
        FieldKind::ExternalId => "Text(255), External ID, Unique".into(),
        FieldKind::Number => "Number(18, 3)".into(),
        FieldKind::Date => "Date".into(),
        FieldKind::DateTime => "Date/Time".into(),
        FieldKind::Picklist(values) => format!("Picklist ({})", values.join(", ")),
        FieldKind::Lookup(object) => format!("Lookup({object})"),
    }
}

/// Takes the steps that have an action, in order; what it did, one line each. A field
/// the org already has (DUPLICATE_DEVELOPER_NAME: created before but not yet visible to
/// the integration user) is not an error: its access is granted next.
pub async fn apply(
    client: &SalesforceClient,
    steps: &[(Step, Option<Action>)],
) -> Result<Vec<String>, CrmError> {
    let mut done = Vec::new();
    let mut permission_set: Option<String> = None;
    for (step, action) in steps {
        let Some(action) = action else { continue };
        match action {
            Action::CustomObject(object) => {
                let label = object.trim_end_matches("__c").replace('_', " ");
                let body = json!({ "FullName": object, "Metadata": {
                    "label": label, "pluralLabel": format!("{label}s"),
                    "nameField": { "type": "AutoNumber", "label": format!("{label} Number"), "displayFormat": "{000000}" },
                    "deploymentStatus": "Deployed", "sharingModel": "ReadWrite" } });
                tooling(client, "CustomObject", &body, &mut done, step).await?;
            }
            Action::CustomField {
                object,
                field,
                kind,
            } => {
                let body = json!({ "FullName": format!("{object}.{field}"), "Metadata": metadata(field, kind) });
                tooling(client, "CustomField", &body, &mut done, step).await?;
            }
            Action::PermissionSet => {
                permission_set = Some(ensure_permission_set(client, &mut done).await?);
            }
            Action::FieldAccess {
                object,
                field,
                edit,
            } => {
                let Some(parent) = permission_set.clone() else {
                    return Err(CrmError::Refused(
                        "field access without the permission set".into(),
                    ));
                };
                let body = json!({ "ParentId": parent, "SobjectType": object,
                    "Field": format!("{object}.{field}"), "PermissionsRead": true, "PermissionsEdit": edit });
                let (status, answer) = client
                    .request(
                        reqwest::Method::POST,
                        "/sobjects/FieldPermissions",
                        Some(&body),
                    )
                    .await?;
                if !status.is_success() {
                    return Err(CrmError::Refused(format!(
                        "{}: {status}: {}",
                        step.what,
                        error_text(&answer)
                    )));
                }
                done.push(step.what.clone());
            }
        }
    }
    Ok(done)
}

async fn tooling(
    client: &SalesforceClient,
    kind: &str,
    body: &Value,
    done: &mut Vec<String>,
    step: &Step,
) -> Result<(), CrmError> {
    let (status, answer) = client
        .request(
            reqwest::Method::POST,
            &format!("/tooling/sobjects/{kind}"),
            Some(body),
        )
        .await?;
    if status.is_success() {
        done.push(step.what.clone());
        return Ok(());
    }
    if error_text(&answer).starts_with("DUPLICATE_DEVELOPER_NAME") {
        done.push(format!("{} (already there)", step.what));
        return Ok(());
    }
    Err(CrmError::Refused(format!(
        "{}: {status}: {}",
        step.what,
        error_text(&answer)
    )))
}

/// The permission set's id: found by name, or created; assigned to the integration user
/// unless it already is.
async fn ensure_permission_set(
    client: &SalesforceClient,
    done: &mut Vec<String>,
) -> Result<String, CrmError> {
    let found = client
        .query(&format!(
            "SELECT Id FROM PermissionSet WHERE Name = '{PERMISSION_SET}'"
        ))
        .await?;
    let id = match found
        .first()
        .and_then(|r| r.get("Id"))
        .and_then(Value::as_str)
    {
        Some(id) => id.to_string(),
        None => {
            let body = json!({ "Name": PERMISSION_SET, "Label": "dealreg integration" });
            let (status, answer) = client
                .request(
                    reqwest::Method::POST,
                    "/sobjects/PermissionSet",
                    Some(&body),
                )
                .await?;
            let id = answer.get("id").and_then(Value::as_str);
            match (status.is_success(), id) {
                (true, Some(id)) => {
                    done.push(format!("created the permission set {PERMISSION_SET}"));
                    id.to_string()
                }
                _ => {
                    return Err(CrmError::Refused(format!(
                        "creating the permission set {PERMISSION_SET}: {status}: {}",
                        error_text(&answer)
                    )))
                }
            }
        }
    };
    let Some(user) = client.user_id().await? else {
        done.push(format!(
            "by hand: assign the permission set {PERMISSION_SET} to the integration user (the token answer named no user)"
        ));
        return Ok(id);
    };
    let assigned = client
        .query(&format!(
            "SELECT Id FROM PermissionSetAssignment WHERE AssigneeId = '{user}' AND PermissionSetId = '{id}'"
        ))
        .await?;
    if assigned.is_empty() {
        let body = json!({ "AssigneeId": user, "PermissionSetId": id });
        let (status, answer) = client
            .request(
                reqwest::Method::POST,
                "/sobjects/PermissionSetAssignment",
                Some(&body),
            )
            .await?;
        if !status.is_success() {
            return Err(CrmError::Refused(format!(
                "assigning {PERMISSION_SET} to {user}: {status}: {}",
                error_text(&answer)
            )));
        }
        done.push(format!(
            "assigned {PERMISSION_SET} to the integration user {user}"
        ));
    }
    Ok(id)
}
