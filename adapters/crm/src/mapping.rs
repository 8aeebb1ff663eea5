//! `crm.toml`: which view rows become which CRM records, field by field.
//!
//! Why a file and not code: every program names its CRM fields its own way, and channel
//! teams decide per field which system wins (to the CRM, from it, or only on the first
//! sync). The default (`adapters/crm/crm.toml`, compiled in) follows Salesforce's own
//! Register Deal flow: a registration is a **Lead** with `LeadSource = Partner`; set
//! `salesforce.object = "Opportunity"` on the registration object for the
//! Opportunity-first variant.
//!
//! A field's `from` is a JSON pointer into a small document built per record:
//! `{"key": <row key>, "row": <row>, "element": <key in the exploded map>, "value":
//! <its value>}`. `explode` turns one row holding a map (an account's conflict flags, a
//! partner's balances by currency) into one record per entry.

use std::collections::BTreeSet;

use dealreg_projections::Projection;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::change::ViewChange;

/// The mapping compiled in: what `dealreg crm sync` uses without `--config`.
pub const DEFAULT_MAPPING: &str = include_str!("../crm.toml");

/// Which CRM a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Salesforce,
    Hubspot,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Salesforce => "salesforce",
            Target::Hubspot => "hubspot",
        }
    }
}

impl std::str::FromStr for Target {
    type Err = MappingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "salesforce" => Ok(Target::Salesforce),
            "hubspot" => Ok(Target::Hubspot),
            other => Err(MappingError::Invalid(format!(
                "unknown CRM target {other:?}; use salesforce or hubspot"
            ))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("crm.toml cannot be read: {0}")]
    Parse(String),
    #[error("crm.toml is not valid: {0}")]
    Invalid(String),
    #[error("the row {key} of {view}/{table} cannot be mapped: {reason}")]
    Row {
        view: String,
        table: String,
        key: String,
        reason: String,
    },
}

/// The whole `crm.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmConfig {
    #[serde(default)]
    pub salesforce: SalesforceSettings,
    #[serde(default)]
    pub hubspot: HubspotSettings,
    #[serde(rename = "object", default)]
    pub objects: Vec<ObjectMapping>,
    #[serde(default)]
    pub inbound: InboundSettings,
}

/// Where Salesforce is and how to authenticate (secrets come from the environment).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SalesforceSettings {
    /// `https://<my-domain>.my.salesforce.com`; the token answer's `instance_url` wins.
    pub instance_url: Option<String>,
    /// The org's My Domain login URL (`https://<my-domain>.my.salesforce.com`, a sandbox
    /// `https://<my-domain>--<sandbox>.sandbox.my.salesforce.com`): the token comes from
    /// `<my_domain>/services/oauth2/token`. Salesforce refuses the client-credentials flow
    /// on `login.salesforce.com` and `test.salesforce.com`.
    pub my_domain: Option<String>,
    /// A multi-currency org: each record also carries `CurrencyIsoCode`, the currency of
    /// its first amount (single-currency orgs have no such field and refuse it).
    pub multi_currency: bool,
    /// The org has partner accounts (Partner Relationship Management / Partner Central):
    /// Opportunities carry the partner's Account in the standard `PartnerAccountId` (sent
    /// as `PartnerAccount: {"Dealreg_Partner_Id__c": ...}`) instead of the lookup
    /// `Dealreg_Partner_Account__c` setup creates. Orgs without partner accounts have no
    /// such field and refuse it.
    pub partner_accounts: bool,
    /// The token endpoint when `my_domain` is not set (a My Domain URL; the generic login
    /// hosts are refused).
    pub token_url: String,
    pub api_version: String,
    pub client_id_env: String,
    pub client_secret_env: String,
    /// Approvals from inside Salesforce: a channel manager sets `Dealreg_Decision__c`
    /// (Approve/Decline, with `Dealreg_Decision_Reason__c`) on the registration's record;
    /// `crm poll` sends approve_registration / decline_registration and writes the
    /// engine's refusal to `Dealreg_Decision_Error__c` (setup creates the three fields).
    pub approvals: bool,
    /// Who may decide from Salesforce: the Salesforce user id (`LastModifiedById`, 15 or
    /// 18 characters as Salesforce answers it) -> the vendor role the decision is made as
    /// (`channel_manager`). A decision by a user not listed is refused and recorded.
    pub approvers: std::collections::BTreeMap<String, String>,
}

/// The partner's Account in Salesforce: an Account per partner, upserted by this external
/// id (the partner's id) ...
pub const PARTNER_ACCOUNT_OBJECT: &str = "Account";
pub const PARTNER_ACCOUNT_EXTERNAL_ID: &str = "Dealreg_Partner_Id__c";
/// ... referenced from each registration's record through the lookup setup creates (sent
/// by its relationship name, `Dealreg_Partner_Account__r: {"Dealreg_Partner_Id__c": id}`)
/// or, with `[salesforce] partner_accounts = true`, on Opportunities through the standard
/// `PartnerAccountId` (relationship `PartnerAccount`).
pub const PARTNER_ACCOUNT_LOOKUP: &str = "Dealreg_Partner_Account__c";
pub const PARTNER_ACCOUNT_RELATIONSHIP: &str = "Dealreg_Partner_Account__r";
pub const PARTNER_ACCOUNT_STANDARD_FIELD: &str = "PartnerAccountId";
pub const PARTNER_ACCOUNT_STANDARD_RELATIONSHIP: &str = "PartnerAccount";

/// The approval fields on the registration's record.
pub const DECISION_FIELD: &str = "Dealreg_Decision__c";
pub const DECISION_REASON_FIELD: &str = "Dealreg_Decision_Reason__c";
pub const DECISION_ERROR_FIELD: &str = "Dealreg_Decision_Error__c";

impl Default for SalesforceSettings {
    fn default() -> Self {
        SalesforceSettings {
            instance_url: None,
            my_domain: None,
            multi_currency: false,
            partner_accounts: false,
            token_url: "https://login.salesforce.com/services/oauth2/token".into(),
            api_version: "v62.0".into(),
            client_id_env: "DEALREG_SALESFORCE_CLIENT_ID".into(),
            client_secret_env: "DEALREG_SALESFORCE_CLIENT_SECRET".into(),
            approvals: true,
            approvers: std::collections::BTreeMap::new(),
        }
    }
}

/// The hosts where Salesforce refuses the client-credentials flow ("Migrate from OAuth
/// Username-Password to Client Credentials Flow",
/// https://help.salesforce.com/s/articleView?id=000886201&type=1).
const GENERIC_LOGIN_HOSTS: &[&str] = &["login.salesforce.com", "test.salesforce.com"];

/// What to set instead of a generic login host.
pub const MY_DOMAIN_HINT: &str = "set my_domain = \"https://<your-domain>.my.salesforce.com\" in [salesforce] of crm.toml (a sandbox: \"https://<your-domain>--<sandbox>.sandbox.my.salesforce.com\"; Setup → My Domain shows it): Salesforce issues client-credentials tokens only on the org's My Domain host, never on login.salesforce.com or test.salesforce.com";

impl SalesforceSettings {
    /// The token endpoint: `<my_domain>/services/oauth2/token`, else `token_url`; refused
    /// when it is a generic login host (or empty), with what to set.
    pub fn token_endpoint(&self) -> Result<String, String> {
        let url = match self
            .my_domain
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            Some(domain) => format!("{}/services/oauth2/token", domain.trim_end_matches('/')),
            None => self.token_url.trim().to_string(),
        };
        let host = url
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest)
            .split(['/', ':', '?'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if host.is_empty() || GENERIC_LOGIN_HOSTS.contains(&host.as_str()) {
            let shown = if url.is_empty() {
                "no token URL"
            } else {
                url.as_str()
            };
            return Err(format!("{shown}: {MY_DOMAIN_HINT}"));
        }
        Ok(url)
    }
}

/// Where HubSpot is and which environment variables hold its secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubspotSettings {
    pub base_url: String,
    pub token_env: String,
    pub app_secret_env: String,
    /// Write the objects marked `custom = true` (HubSpot custom objects, which only an
    /// Enterprise portal can have) in place of those marked `without_custom_objects`.
    pub custom_objects: bool,
    /// The account's offset from UTC in minutes (its time zone setting): HubSpot resets
    /// the daily API limit at the account's midnight, and a spent limit pauses the
    /// adapter until then.
    pub daily_reset_utc_offset_minutes: i32,
    /// The deal pipeline (board) registrations' deals are on: its internal id.
    pub pipeline: String,
    /// Its stages' internal ids: by dealreg stage name (`deal_registration`,
    /// `qualification`...) and by registration status (`won`, `lost`, `declined`...; a
    /// status listed here wins over the stage).
    pub stages: std::collections::BTreeMap<String, String>,
}

/// The board `crm setup` would create in HubSpot, "Partner registrations": one stage per
/// stage of the five motions (shared names once), one for a registration past its last
/// stage, and one per ending status. (key, stage id, label). HubSpot gives a pipeline's
/// stages their internal ids; these are the ids the defaults name, to be replaced in
/// `[hubspot.stages]` with the ones the portal gave.
pub fn hubspot_default_board() -> Vec<(String, String, String)> {
    use dealreg_domain::motion::Motion;
    let mut board: Vec<(String, String, String)> = Vec::new();
    for motion in [
        Motion::Referral,
        Motion::Reseller,
        Motion::Marketplace,
        Motion::Services,
        Motion::TechIsv,
    ] {
        for stage in dealreg_domain::stages::stages(motion) {
            if !board.iter().any(|(k, _, _)| k == stage) {
                board.push((
                    stage.into(),
                    format!("dealreg_{stage}"),
                    stage.replace('_', " "),
                ));
            }
        }
    }
    for key in [
        "closed",
        "won",
        "lost",
        "declined",
        "withdrawn",
        "expired",
        "released",
    ] {
        board.push((key.into(), format!("dealreg_{key}"), key.into()));
    }
    board
}

/// The default board's pipeline id.
pub const HUBSPOT_DEFAULT_PIPELINE: &str = "partner_registrations";

impl Default for HubspotSettings {
    fn default() -> Self {
        HubspotSettings {
            base_url: "https://api.hubapi.com".into(),
            token_env: "DEALREG_HUBSPOT_TOKEN".into(),
            app_secret_env: "DEALREG_HUBSPOT_APP_SECRET".into(),
            custom_objects: false,
            daily_reset_utc_offset_minutes: 0,
            pipeline: HUBSPOT_DEFAULT_PIPELINE.into(),
            stages: hubspot_default_board()
                .into_iter()
                .map(|(key, id, _)| (key, id))
                .collect(),
        }
    }
}

/// CRM facts that come back as commands.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundSettings {
    /// HubSpot deal stages that mean won and lost (internal values).
    pub hubspot_won_stages: Vec<String>,
    pub hubspot_lost_stages: Vec<String>,
    /// Stages that are neither (a change to one of them does nothing); a stage in none of
    /// the three lists is reported as an error.
    pub hubspot_open_stages: Vec<String>,
    /// The deal property naming the customer's domain, for deals direct sales created.
    pub hubspot_account_property: String,
    pub hubspot_product_line_property: String,
    pub hubspot_owner_property: String,
    /// Where Salesforce polling starts the first time (a SOQL datetime literal).
    pub salesforce_since: String,
    /// The Opportunity fields naming the customer's domain and the product line.
    pub salesforce_account_field: String,
    pub salesforce_product_line_field: String,
    /// `CurrencyIsoCode` in a multi-currency org; empty: every amount is in
    /// `salesforce_default_currency`.
    pub salesforce_currency_field: String,
    pub salesforce_default_currency: String,
    /// Each poll reads again this many seconds before its watermark (changes committed
    /// late with an older SystemModstamp); what was seen (same id and modstamp) is dropped.
    pub salesforce_overlap_seconds: u64,
}

impl Default for InboundSettings {
    fn default() -> Self {
        InboundSettings {
            hubspot_won_stages: vec!["closedwon".into()],
            hubspot_lost_stages: vec!["closedlost".into()],
            hubspot_open_stages: [
                "appointmentscheduled",
                "qualifiedtobuy",
                "presentationscheduled",
                "decisionmakerboughtin",
                "contractsent",
            ]
            .map(String::from)
            .to_vec(),
            hubspot_account_property: "dealreg_account".into(),
            hubspot_product_line_property: "dealreg_product_line".into(),
            hubspot_owner_property: "hubspot_owner_id".into(),
            salesforce_since: "2000-01-01T00:00:00.000Z".into(),
            salesforce_account_field: "Dealreg_Account__c".into(),
            salesforce_product_line_field: "Dealreg_Product_Line__c".into(),
            salesforce_currency_field: String::new(),
            salesforce_default_currency: "USD".into(),
            salesforce_overlap_seconds: 300,
        }
    }
}

/// HubSpot's standard CRM objects, which every tier has (custom objects: Enterprise only,
/// https://knowledge.hubspot.com/crm-setup/create-custom-objects).
pub const HUBSPOT_STANDARD_OBJECTS: &[&str] = &[
    "contacts",
    "companies",
    "deals",
    "tickets",
    "notes",
    "tasks",
    "products",
    "line_items",
    "quotes",
];

/// One kind of CRM record and the view table it mirrors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectMapping {
    /// Names the mapping in status and dead letters (`registration`, `conflict`...).
    pub name: String,
    pub view: String,
    pub table: String,
    /// Records a partner sees in the CRM's partner portal: built from the row's
    /// partner-safe form only, and refused here if a field is not in it.
    #[serde(default)]
    pub portal: bool,
    /// Pointers whose values, joined by `:`, make the record's external id.
    pub key: Vec<String>,
    #[serde(default)]
    pub explode: Option<String>,
    #[serde(default)]
    pub salesforce: Option<TargetObject>,
    #[serde(default)]
    pub hubspot: Option<TargetObject>,
    #[serde(rename = "field", default)]
    pub fields: Vec<FieldMapping>,
    /// HubSpot: link each record to the customer's company, upserted by this key.
    #[serde(default)]
    pub hubspot_company: Option<CompanyMapping>,
    /// HubSpot deals: put each on the board (`[hubspot] pipeline`), in the stage
    /// `[hubspot.stages]` gives for its status or, failing that, its stage.
    #[serde(default)]
    pub hubspot_board: Option<BoardMapping>,
    /// Salesforce: the pointer to the partner's id; the record references the partner's
    /// Account (upserted by `Dealreg_Partner_Id__c`, an object of its own in crm.toml)
    /// through `Dealreg_Partner_Account__r`, or `PartnerAccount` on an Opportunity with
    /// `[salesforce] partner_accounts = true`.
    #[serde(default)]
    pub salesforce_partner_account: Option<String>,
}

/// Where a deal's stage and status are: pointers into the record's document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardMapping {
    pub stage: String,
    pub status: String,
}

/// The company a HubSpot record is associated with: pointers into the record's document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyMapping {
    /// The company's unique property (its `idProperty`), e.g. `dealreg_account`.
    pub id_property: String,
    /// The pointer to its value, e.g. `/row/account`.
    pub key: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
}

/// The CRM object and its external-id field (HubSpot: the `idProperty`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetObject {
    pub object: String,
    pub external_id: String,
    /// HubSpot: a custom object (Enterprise portals only), written only with
    /// `[hubspot] custom_objects = true`.
    #[serde(default)]
    pub custom: bool,
    /// HubSpot: what carries the data on standard objects where there are no custom
    /// objects; skipped with `[hubspot] custom_objects = true`.
    #[serde(default)]
    pub without_custom_objects: bool,
}

/// Which system owns a field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Written on every sync: the views are the truth.
    #[default]
    ToCrm,
    /// Written when the adapter first creates the record, then left to the CRM's users.
    FirstSync,
    /// Never written: the CRM owns it (read back by the inbound side).
    FromCrm,
}

/// How a view value becomes a CRM value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// `{"amount_minor", "currency"}` as a decimal amount in major units.
    Money,
    /// `{"amount_minor", "currency"}`: its currency code.
    Currency,
    /// An integer in minor units, in the currency the field's `currency` pointer names.
    MinorUnits,
    /// An attribution (`sourcing`, `influencers`) as one line of text.
    Attribution,
    /// An array of strings joined by `; `.
    Join,
    /// Any value as compact JSON text.
    Json,
    /// A date-time (or date) as its UTC date, `YYYY-MM-DD`: what a Salesforce Date field
    /// such as Opportunity's `CloseDate` takes.
    Date,
    /// A map of currency -> minor units as one line: `EUR 12500.50; JPY 1200`.
    Balances,
    /// A map or list of conflict flags: how many are not resolved (`resolved_at` null).
    OpenCount,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// A pointer into the record's document; or `value`, a constant.
    #[serde(default)]
    pub from: Option<String>,
    /// Where the value comes from when `from` is null (a required field such as
    /// `CloseDate` is never sent empty).
    #[serde(default)]
    pub or_from: Option<String>,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub transform: Option<Transform>,
    /// For `minor_units`: the pointer to the currency code.
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub salesforce: Option<String>,
    #[serde(default)]
    pub hubspot: Option<String>,
    #[serde(default)]
    pub direction: Direction,
}

impl FieldMapping {
    fn name_in(&self, target: Target) -> Option<&str> {
        match target {
            Target::Salesforce => self.salesforce.as_deref(),
            Target::Hubspot => self.hubspot.as_deref(),
        }
    }
}

impl ObjectMapping {
    pub fn target(&self, target: Target) -> Option<&TargetObject> {
        match target {
            Target::Salesforce => self.salesforce.as_ref(),
            Target::Hubspot => self.hubspot.as_ref(),
        }
    }
}

/// One record to upsert: the CRM object, its external id, and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The mapping it came from (`registration`...).
    pub mapping: String,
    pub object: String,
    pub external_id_field: String,
    pub external_id: String,
    /// Fields written on every sync.
    pub fields: Map<String, Value>,
    /// Fields written only when the adapter creates the record.
    pub first_sync: Map<String, Value>,
    /// HubSpot: the company to link the record to.
    pub company: Option<crate::client::Company>,
    /// The CRM objects this record references by external id (Salesforce relationships):
    /// their records are written first within a batch.
    pub references: Vec<String>,
}

impl CrmConfig {
    /// Reads and checks a `crm.toml`.
    pub fn parse(text: &str) -> Result<CrmConfig, MappingError> {
        let config: CrmConfig =
            toml::from_str(text).map_err(|e| MappingError::Parse(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// The default mapping.
    pub fn default_mapping() -> Result<CrmConfig, MappingError> {
        CrmConfig::parse(DEFAULT_MAPPING)
    }

    /// Refuses what would misbehave at sync time: unknown views or tables, portal records
    /// of tables partners may not see, portal fields outside the partner-safe form,
    /// fields with neither a source nor a constant.
    fn check(&self) -> Result<(), MappingError> {
        let mut names = BTreeSet::new();
        for object in &self.objects {
            if !names.insert(object.name.as_str()) {
                return Err(MappingError::Invalid(format!(
                    "two objects are named {:?}; give each its own name",
                    object.name
                )));
            }
            let Some(partner_form) = published(&object.view, &object.table) else {
                return Err(MappingError::Invalid(format!(
                    "object {:?}: {}/{} is not a published view table; published: {}",
                    object.name,
                    object.view,
                    object.table,
                    published_tables().join(", ")
                )));
            };
            if object.key.is_empty() {
                return Err(MappingError::Invalid(format!(
                    "object {:?} has no key; name the pointers that identify a record",
                    object.name
                )));
            }
            if object.portal {
                if !partner_form {
                    return Err(MappingError::Invalid(format!(
                        "object {:?} is a portal object, but partners may not see {}/{}; set portal = false",
                        object.name, object.view, object.table
                    )));
                }
                if let Some(allowed) = partner_safe_fields(&object.view, &object.table) {
                    for field in &object.fields {
                        if let Some(from) = &field.from {
                            let first = from
                                .strip_prefix("/row/")
                                .map(|rest| rest.split('/').next().unwrap_or_default().to_string());
                            if let Some(first) = first {
                                if !allowed.contains(&first) {
                                    return Err(MappingError::Invalid(format!(
                                        "object {:?} is a portal object and {from} is not partner-safe; partner-safe fields: {}",
                                        object.name,
                                        allowed.iter().cloned().collect::<Vec<_>>().join(", ")
                                    )));
                                }
                            }
                        }
                    }
                }
            }
            if let Some(hubspot) = &object.hubspot {
                if !hubspot.custom && !HUBSPOT_STANDARD_OBJECTS.contains(&hubspot.object.as_str()) {
                    return Err(MappingError::Invalid(format!(
                        "object {:?}: HubSpot object {:?} is not a standard object; a custom object (Enterprise portals only) needs `custom = true` and `[hubspot] custom_objects = true`",
                        object.name, hubspot.object
                    )));
                }
            }
            for field in &object.fields {
                if field.from.is_none() && field.value.is_none() {
                    return Err(MappingError::Invalid(format!(
                        "a field of object {:?} has neither `from` nor `value`",
                        object.name
                    )));
                }
                if field.transform == Some(Transform::MinorUnits) && field.currency.is_none() {
                    return Err(MappingError::Invalid(format!(
                        "a minor_units field of object {:?} needs `currency`, the pointer to its currency code",
                        object.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// The objects mapped to `target` (for HubSpot, the custom objects only where
    /// `[hubspot] custom_objects` opts in, and their standard-object stand-ins otherwise).
    pub fn objects_for(&self, target: Target) -> impl Iterator<Item = &ObjectMapping> {
        let custom = self.hubspot.custom_objects;
        self.objects.iter().filter(move |o| match o.target(target) {
            None => false,
            Some(t) if target == Target::Hubspot => {
                if custom {
                    !t.without_custom_objects
                } else {
                    !t.custom
                }
            }
            Some(_) => true,
        })
    }

    /// The records one view change makes in `target`. A deleted row makes none (a CRM
    /// keeps its records; dealreg never deletes them).
    pub fn records(
        &self,
        target: Target,
        change: &ViewChange,
    ) -> Result<Vec<Record>, MappingError> {
        let Some(row) = &change.row else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for object in self.objects_for(target).filter(|o| {
            o.view == change.view && o.table == change.table && o.portal == change.partner.is_some()
        }) {
            let Some(crm) = object.target(target) else {
                continue;
            };
            let key = change
                .key
                .split_once('/')
                .map_or(change.key.as_str(), |(_, k)| k);
            let row_error = |reason: String| MappingError::Row {
                view: change.view.clone(),
                table: change.table.clone(),
                key: change.key.clone(),
                reason,
            };
            let base = json_document(key, row, None);
            let documents = match &object.explode {
                None => vec![base],
                Some(pointer) => match base.pointer(pointer) {
                    Some(Value::Object(entries)) => entries
                        .iter()
                        .map(|(k, v)| json_document(key, row, Some((k, v))))
                        .collect(),
                    Some(Value::Null) | None => Vec::new(),
                    Some(_) => {
                        return Err(row_error(format!("{pointer} is not a map to explode")));
                    }
                },
            };
            for document in documents {
                let mut parts = Vec::new();
                for pointer in &object.key {
                    match document.pointer(pointer) {
                        Some(Value::String(s)) => parts.push(s.clone()),
                        Some(Value::Null) | None => {
                            return Err(row_error(format!("its key {pointer} is missing")));
                        }
                        Some(other) => parts.push(other.to_string()),
                    }
                }
                let mut record = Record {
                    mapping: object.name.clone(),
                    object: crm.object.clone(),
                    external_id_field: crm.external_id.clone(),
                    external_id: parts.join(":"),
                    fields: Map::new(),
                    first_sync: Map::new(),
                    company: None,
                    references: Vec::new(),
                };
                if let (Target::Hubspot, Some(company)) = (target, &object.hubspot_company) {
                    let text = |p: &str| {
                        document
                            .pointer(p)
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    };
                    if let Some(key) = text(&company.key) {
                        record.company = Some(crate::client::Company {
                            id_property: company.id_property.clone(),
                            key,
                            name: company.name.as_deref().and_then(text),
                            domain: company.domain.as_deref().and_then(text),
                        });
                    }
                }
                if let (Target::Hubspot, Some(board)) = (target, &object.hubspot_board) {
                    let text = |p: &str| document.pointer(p).and_then(Value::as_str);
                    let stage = text(&board.stage);
                    let status = text(&board.status);
                    let id = status
                        .and_then(|s| self.hubspot.stages.get(s))
                        .or_else(|| stage.and_then(|s| self.hubspot.stages.get(s)))
                        .ok_or_else(|| {
                            row_error(format!(
                                "its stage {stage:?} (status {status:?}) has no HubSpot stage id in [hubspot.stages]"
                            ))
                        })?;
                    record.fields.insert(
                        "pipeline".into(),
                        Value::String(self.hubspot.pipeline.clone()),
                    );
                    record
                        .fields
                        .insert("dealstage".into(), Value::String(id.clone()));
                }
                for field in &object.fields {
                    let Some(name) = field.name_in(target) else {
                        continue;
                    };
                    if field.direction == Direction::FromCrm {
                        continue;
                    }
                    let mut value = field_value(field, &document, target).map_err(&row_error)?;
                    if target == Target::Salesforce {
                        value = salesforce_datetime(value);
                    }
                    match field.direction {
                        Direction::FirstSync => record.first_sync.insert(name.to_string(), value),
                        _ => record.fields.insert(name.to_string(), value),
                    };
                }
                if let (Target::Salesforce, Some(pointer)) =
                    (target, &object.salesforce_partner_account)
                {
                    // The partner's Account by its external id ("Insert or Update (Upsert)
                    // a Record Using an External ID": a relationship set through the
                    // related record's external id,
                    // https://developer.salesforce.com/docs/platform/api-rest/guide/dome-upsert.html).
                    let partner = match document.pointer(pointer) {
                        Some(Value::String(s)) if !s.is_empty() => s.clone(),
                        Some(Value::Null) | None => {
                            return Err(row_error(format!("its partner {pointer} is missing")));
                        }
                        Some(other) => other.to_string(),
                    };
                    let relationship =
                        if self.salesforce.partner_accounts && crm.object == "Opportunity" {
                            PARTNER_ACCOUNT_STANDARD_RELATIONSHIP
                        } else {
                            PARTNER_ACCOUNT_RELATIONSHIP
                        };
                    record.fields.insert(
                        relationship.into(),
                        serde_json::json!({ PARTNER_ACCOUNT_EXTERNAL_ID: partner }),
                    );
                    record.references.push(PARTNER_ACCOUNT_OBJECT.into());
                }
                if target == Target::Salesforce
                    && self.salesforce.multi_currency
                    && !record.fields.contains_key("CurrencyIsoCode")
                {
                    if let Some(currency) = record_currency(object, &document) {
                        record
                            .fields
                            .insert("CurrencyIsoCode".into(), Value::String(currency));
                    }
                }
                out.push(record);
            }
        }
        Ok(out)
    }
}

/// The document a record's pointers read: the row and its key, and in an exploded row
/// the entry's key and value. Borrowed: mapping a row copies only what the record keeps.
struct Document<'a> {
    key: Value,
    row: &'a Value,
    element: Option<Value>,
    value: Option<&'a Value>,
}

fn json_document<'a>(
    key: &str,
    row: &'a Value,
    entry: Option<(&String, &'a Value)>,
) -> Document<'a> {
    Document {
        key: Value::String(key.to_string()),
        row,
        element: entry.map(|(k, _)| Value::String(k.clone())),
        value: entry.map(|(_, v)| v),
    }
}

impl Document<'_> {
    /// RFC 6901 pointer lookup, as `serde_json::Value::pointer` over
    /// `{"key", "row", "element", "value"}`.
    fn pointer(&self, pointer: &str) -> Option<&Value> {
        let rest = pointer.strip_prefix('/')?;
        let (first, inner) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let root: &Value = match first {
            "key" => &self.key,
            "row" => self.row,
            "element" => self.element.as_ref()?,
            "value" => self.value?,
            _ => return None,
        };
        if inner.is_empty() {
            Some(root)
        } else {
            root.pointer(inner)
        }
    }
}

fn field_value(
    field: &FieldMapping,
    document: &Document<'_>,
    target: Target,
) -> Result<Value, String> {
    if let Some(constant) = &field.value {
        return Ok(constant.clone());
    }
    let pointer = field.from.as_deref().unwrap_or_default();
    let raw = match document.pointer(pointer) {
        Some(Value::Null) | None => field
            .or_from
            .as_deref()
            .and_then(|p| document.pointer(p))
            .cloned()
            .unwrap_or(Value::Null),
        Some(value) => value.clone(),
    };
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let value = match field.transform {
        None => match raw {
            Value::Object(_) | Value::Array(_) => Value::String(raw.to_string()),
            other => other,
        },
        Some(Transform::Json) => Value::String(raw.to_string()),
        Some(Transform::Join) => match raw {
            Value::Array(items) => Value::String(
                items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            other => other,
        },
        Some(Transform::Money) | Some(Transform::Currency) => {
            let minor = raw.get("amount_minor").and_then(Value::as_i64);
            let currency = raw.get("currency").and_then(Value::as_str);
            let (Some(minor), Some(currency)) = (minor, currency) else {
                return Err(format!(
                    "{pointer} is not an amount (amount_minor, currency)"
                ));
            };
            if field.transform == Some(Transform::Currency) {
                Value::String(currency.to_string())
            } else {
                amount(i128::from(minor), currency, target)
            }
        }
        Some(Transform::MinorUnits) => {
            let currency_pointer = field.currency.as_deref().unwrap_or_default();
            let currency = document
                .pointer(currency_pointer)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{currency_pointer} names no currency"))?;
            // A balance is an `i128` sum: past `i64` it is read as `u64` (past that, JSON
            // numbers are floats here, and an inexact amount is refused, not sent).
            let minor = raw
                .as_i64()
                .map(i128::from)
                .or_else(|| raw.as_u64().map(i128::from))
                .ok_or_else(|| format!("{pointer} is not an integer amount in minor units"))?;
            amount(minor, currency, target)
        }
        Some(Transform::Attribution) => Value::String(attribution_text(&raw)),
        Some(Transform::Date) => {
            let text = raw.as_str().unwrap_or_default();
            let date = chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&chrono::Utc).date_naive())
                .or_else(|_| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d"))
                .map_err(|_| format!("{pointer} is not a date or date-time: {raw}"))?;
            Value::String(date.format("%Y-%m-%d").to_string())
        }
        Some(Transform::Balances) => {
            let Value::Object(by_currency) = &raw else {
                return Err(format!("{pointer} is not a map of currency to minor units"));
            };
            let mut parts = Vec::new();
            for (currency, minor) in by_currency {
                let minor = minor
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| minor.as_u64().map(i128::from))
                    .ok_or_else(|| format!("{pointer}/{currency} is not an integer amount"))?;
                let exponent = dealreg_domain::money::Currency::try_from(currency.clone())
                    .map(|c| c.exponent())
                    .unwrap_or(2);
                parts.push(format!("{currency} {}", decimal(minor, exponent)));
            }
            Value::String(parts.join("; "))
        }
        Some(Transform::OpenCount) => {
            let open = |flag: &Value| flag.get("resolved_at").is_none_or(Value::is_null);
            let count = match &raw {
                Value::Object(flags) => flags.values().filter(|f| open(f)).count(),
                Value::Array(flags) => flags.iter().filter(|f| open(f)).count(),
                _ => return Err(format!("{pointer} is not a map or list of flags")),
            };
            Value::String(count.to_string())
        }
    };
    Ok(value)
}

/// A date-time as Salesforce's REST API documents it ("Valid Date and DateTime Formats":
/// `yyyy-MM-ddTHH:mm:ss.SSSZ`): UTC, exactly three digits of milliseconds. Other values
/// pass as they are.
fn salesforce_datetime(value: Value) -> Value {
    let Value::String(text) = &value else {
        return value;
    };
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(t) if text.len() > 10 => Value::String(
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
        ),
        _ => value,
    }
}

/// The currency of a record's first amount (a `money` field's or a `minor_units` field's).
fn record_currency(object: &ObjectMapping, document: &Document<'_>) -> Option<String> {
    object
        .fields
        .iter()
        .find_map(|field| match field.transform {
            Some(Transform::Money) | Some(Transform::Currency) => document
                .pointer(field.from.as_deref()?)?
                .get("currency")?
                .as_str()
                .map(str::to_string),
            Some(Transform::MinorUnits) => document
                .pointer(field.currency.as_deref()?)?
                .as_str()
                .map(str::to_string),
            _ => None,
        })
}

/// An amount in major units, exactly: a decimal string for HubSpot (every property is a
/// string there), a JSON number for Salesforce (currency fields are numbers).
fn amount(minor: i128, currency: &str, target: Target) -> Value {
    let exponent = dealreg_domain::money::Currency::try_from(currency.to_string())
        .map(|c| c.exponent())
        .unwrap_or(2);
    let text = decimal(minor, exponent);
    match target {
        Target::Hubspot => Value::String(text),
        Target::Salesforce => text
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or(Value::String(text)),
    }
}

/// `minor` with `exponent` decimals: `decimal(-12345, 2) == "-123.45"`.
pub fn decimal(minor: i128, exponent: u32) -> String {
    if exponent == 0 {
        return minor.to_string();
    }
    let digits = minor.unsigned_abs().to_string();
    let width = exponent as usize + 1;
    let padded = format!("{digits:0>width$}");
    let (whole, fraction) = padded.split_at(padded.len() - exponent as usize);
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{whole}.{fraction}")
}

fn attribution_text(raw: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(sourcing) = raw.get("sourcing").and_then(Value::as_str) {
        parts.push(format!("sourced by {sourcing}"));
    }
    if let Some(Value::Object(influencers)) = raw.get("influencers") {
        for (partner, percent) in influencers {
            parts.push(format!("influenced by {partner} {percent}%"));
        }
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("; ")
    }
}

/// Whether `view/table` is published, and if so whether partners get a form of it.
fn published(view: &str, table: &str) -> Option<bool> {
    use dealreg_projections::{conflicts, ledger, pipeline};
    let list = match view {
        v if v == pipeline::Pipeline::NAME => pipeline::Pipeline::PUBLISHED,
        v if v == ledger::Ledger::NAME => ledger::Ledger::PUBLISHED,
        v if v == conflicts::ConflictFlags::NAME => conflicts::ConflictFlags::PUBLISHED,
        _ => return None,
    };
    dealreg_projections::published(list, table).map(|p| p.for_partners.is_some())
}

fn published_tables() -> Vec<String> {
    use dealreg_projections::{conflicts, ledger, pipeline};
    [
        (pipeline::Pipeline::NAME, pipeline::Pipeline::PUBLISHED),
        (ledger::Ledger::NAME, ledger::Ledger::PUBLISHED),
        (
            conflicts::ConflictFlags::NAME,
            conflicts::ConflictFlags::PUBLISHED,
        ),
    ]
    .iter()
    .flat_map(|(view, list)| list.iter().map(move |p| format!("{view}/{}", p.table)))
    .collect()
}

/// The fields of a table's partner-safe form, where it is a closed type (a pipeline
/// registration: `PartnerRow`); `None` where partners get the row as it is.
fn partner_safe_fields(view: &str, table: &str) -> Option<BTreeSet<String>> {
    if view != dealreg_projections::pipeline::Pipeline::NAME || table != "registration" {
        return None;
    }
    let schema = schemars::schema_for!(dealreg_projections::pipeline::PartnerRow);
    let properties = schema.as_value().get("properties")?.as_object()?;
    Some(properties.keys().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal(-12345, 2), "-123.45");
        assert_eq!(decimal(5, 2), "0.05");
        assert_eq!(decimal(5, 0), "5");
        assert_eq!(decimal(1, 3), "0.001");
        assert_eq!(decimal(i64::MIN.into(), 2), "-92233720368547758.08");
        assert_eq!(
            decimal(6 * i128::from(i64::MAX), 2),
            "553402322211286548.42"
        );
    }

    #[test]
    fn the_default_mapping_is_valid() {
        let config = CrmConfig::default_mapping();
        assert!(config.is_ok(), "{config:?}");
    }

    #[test]
    fn a_portal_field_outside_the_partner_form_is_refused() {
        let text = r#"
[[object]]
name = "registration"
view = "pipeline"
table = "registration"
portal = true
key = ["/row/registration_id"]
salesforce = { object = "Lead", external_id = "Dealreg_Registration_Id__c" }
[[object.field]]
from = "/row/internal_notes"
salesforce = "Description"
"#;
        let refused = CrmConfig::parse(text);
        assert!(
            matches!(&refused, Err(MappingError::Invalid(m)) if m.contains("not partner-safe")),
            "{refused:?}"
        );
    }

    #[test]
    fn an_unknown_table_is_refused_with_the_list() {
        let text = r#"
[[object]]
name = "x"
view = "pipeline"
table = "nope"
key = ["/key"]
"#;
        let refused = CrmConfig::parse(text);
        assert!(
            matches!(&refused, Err(MappingError::Invalid(m)) if m.contains("pipeline/registration")),
            "{refused:?}"
        );
    }
}
