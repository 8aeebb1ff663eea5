//! The fake Salesforce: the REST behaviour dealreg's Salesforce adapter relies on, as strict
//! as Salesforce's documentation says the real API is. Each rule names the page it comes
//! from; what is not documented (exact message wording) is marked as such.
//!
//! The org it plays is the one docs/CRM.md's "Setting up Salesforce" creates: Lead and
//! Opportunity with their standard fields and the `Dealreg_*__c` custom fields, and the two
//! custom objects, and the partner's Account (`Account.Dealreg_Partner_Id__c`, the lookup
//! `Dealreg_Partner_Account__c` on Lead and Opportunity; relationships by external id are
//! resolved, a reference to an Account not written yet refused). A test can take a field
//! away ([`FakeCrm::salesforce_remove_field`]), define one
//! ([`FakeCrm::salesforce_define_field`]), turn multi-currency or partner accounts on
//! ([`FakeCrm::salesforce_partner_accounts`]), and convert a Lead as a user would
//! ([`FakeCrm::convert_lead`]).

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::{percent_decode, reply, throttled, FakeCrm, World, CLIENT_ID, CLIENT_SECRET};

/// A field's type, as describe names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    Text,
    Number,
    Currency,
    Date,
    DateTime,
    Boolean,
    Picklist,
    Reference,
}

/// One field of an object in the fake org.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    ty: FieldType,
    /// Required on create (and never null).
    required: bool,
    /// Written by the API (false: system fields such as `IsConverted`, `SystemModstamp`).
    writable: bool,
    external_id: bool,
    /// The integration user cannot see it (no field-level security grants it read): a
    /// field created through the Tooling API is visible to nobody until a permission set's
    /// FieldPermissions grant it. Describe leaves it out; queries and writes treat it as
    /// a field the object does not have.
    hidden: bool,
}

impl Field {
    fn of(ty: FieldType) -> Field {
        Field {
            ty,
            required: false,
            writable: true,
            external_id: false,
            hidden: false,
        }
    }
    fn required(mut self) -> Field {
        self.required = true;
        self
    }
    fn system(mut self) -> Field {
        self.writable = false;
        self
    }
    fn external_id(mut self) -> Field {
        self.external_id = true;
        self
    }
}

/// What the fake Salesforce keeps besides the records.
#[derive(Default)]
pub(crate) struct SalesforceWorld {
    /// object -> field -> definition; empty until first used (then docs/CRM.md's org).
    schema: BTreeMap<String, BTreeMap<String, Field>>,
    /// Currencies enabled in a multi-currency org (the `CurrencyIsoCode` picklist).
    currencies: Vec<String>,
    /// What the Tooling API created: `Object.Field` or an object's name.
    created: Vec<String>,
    /// Lookup fields created through the Tooling API: (object, field) -> the object it
    /// refers to (`referenceTo`).
    references: BTreeMap<(String, String), String>,
}

/// The partner's Account: the lookup field setup creates on Lead and Opportunity, and the
/// Account's external id it is written through.
const PARTNER_LOOKUP: &str = "Dealreg_Partner_Account__c";
const PARTNER_EXTERNAL_ID: &str = "Dealreg_Partner_Id__c";

/// The object a reference field refers to: the Tooling API's `referenceTo` for a lookup
/// it created, else the org's own (Account for `AccountId`, `PartnerAccountId` and the
/// partner lookup docs/CRM.md's setup creates).
fn referenced(sf: &SalesforceWorld, object: &str, field: &str) -> Option<String> {
    if let Some(to) = sf.references.get(&(object.to_string(), field.to_string())) {
        return Some(to.clone());
    }
    match field {
        PARTNER_LOOKUP | "PartnerAccountId" | "AccountId" | "ConvertedAccountId" => {
            Some("Account".into())
        }
        _ => None,
    }
}

/// The reference field a relationship name stands for: `Dealreg_Partner_Account__r` is
/// the custom `Dealreg_Partner_Account__c`, a standard `PartnerAccount` is
/// `PartnerAccountId` (relationship names: "Relationship Queries" / the object reference's
/// "Relationship Name" of each reference field).
fn reference_field(relationship: &str) -> String {
    match relationship.strip_suffix("__r") {
        Some(base) => format!("{base}__c"),
        None => format!("{relationship}Id"),
    }
}

/// The registration fields docs/CRM.md's setup creates on Lead and on Opportunity (the
/// Lead's fields map onto the Opportunity's on conversion).
const REGISTRATION_TEXT: &[&str] = &[
    "Dealreg_Account__c",
    "Dealreg_Product_Line__c",
    "Dealreg_Partner__c",
    "Dealreg_Partner_Id__c",
    "Dealreg_Motion__c",
    "Dealreg_Status__c",
    "Dealreg_Stage__c",
    "Dealreg_Protection__c",
    "Dealreg_Sourcing_Partner__c",
    "Dealreg_Next_Step__c",
    "Dealreg_Notes__c",
    "Dealreg_Currency__c",
    "Dealreg_Influencers__c",
    "Dealreg_Attribution__c",
];

/// The org docs/CRM.md's "Setting up Salesforce" creates.
fn default_org() -> BTreeMap<String, BTreeMap<String, Field>> {
    use FieldType::*;
    let mut registration: BTreeMap<String, Field> = BTreeMap::new();
    registration.insert(
        "Dealreg_Registration_Id__c".into(),
        Field::of(Text).external_id(),
    );
    for name in REGISTRATION_TEXT {
        registration.insert((*name).into(), Field::of(Text));
    }
    registration.insert("Dealreg_Protection_Expires__c".into(), Field::of(DateTime));
    // Approvals from inside Salesforce (docs/CRM.md, setup creates them).
    registration.insert("Dealreg_Decision__c".into(), Field::of(Picklist));
    registration.insert("Dealreg_Decision_Reason__c".into(), Field::of(Text));
    registration.insert("Dealreg_Decision_Error__c".into(), Field::of(Text));
    // The partner's Account (docs/CRM.md, setup creates it): a lookup to Account.
    registration.insert(PARTNER_LOOKUP.into(), Field::of(Reference));
    registration.insert("Dealreg_Estimated_Amount__c".into(), Field::of(Number));
    registration.insert("Dealreg_Won_Amount__c".into(), Field::of(Number));
    let standard = |extra: &[(&str, Field)]| {
        let mut fields: BTreeMap<String, Field> = BTreeMap::new();
        fields.insert("Id".into(), Field::of(Id).system());
        fields.insert("OwnerId".into(), Field::of(Reference));
        fields.insert("SystemModstamp".into(), Field::of(DateTime).system());
        fields.insert("LastModifiedById".into(), Field::of(Reference).system());
        for (name, field) in extra {
            fields.insert((*name).into(), *field);
        }
        fields
    };
    let mut lead = standard(&[
        ("LastName", Field::of(Text).required()),
        ("FirstName", Field::of(Text)),
        ("Company", Field::of(Text).required()),
        ("LeadSource", Field::of(Picklist)),
        ("Status", Field::of(Picklist)),
        ("IsConverted", Field::of(Boolean).system()),
        ("ConvertedOpportunityId", Field::of(Reference).system()),
        ("ConvertedAccountId", Field::of(Reference).system()),
    ]);
    lead.extend(registration.clone());
    let mut opportunity = standard(&[
        ("Name", Field::of(Text).required()),
        ("StageName", Field::of(Picklist).required()),
        ("CloseDate", Field::of(Date).required()),
        ("Amount", Field::of(Currency)),
        ("IsClosed", Field::of(Boolean).system()),
        ("IsWon", Field::of(Boolean).system()),
        ("LeadSource", Field::of(Picklist)),
        ("AccountId", Field::of(Reference)),
    ]);
    opportunity.extend(registration);
    let conflict = standard(&[
        ("Dealreg_Conflict_Key__c", Field::of(Text).external_id()),
        ("Dealreg_Account__c", Field::of(Text)),
        ("Dealreg_Kind__c", Field::of(Text)),
        ("Dealreg_Status__c", Field::of(Text)),
        ("Dealreg_Product_Line__c", Field::of(Text)),
        ("Dealreg_Breached__c", Field::of(Text)),
        ("Dealreg_Reasons__c", Field::of(Text)),
        ("Dealreg_Acknowledge_By__c", Field::of(DateTime)),
        ("Dealreg_Resolution_Plan_By__c", Field::of(DateTime)),
        ("Dealreg_Acknowledged_At__c", Field::of(DateTime)),
        ("Dealreg_Resolved_At__c", Field::of(DateTime)),
    ]);
    let balance = standard(&[
        ("Dealreg_Balance_Key__c", Field::of(Text).external_id()),
        ("Dealreg_Partner_Id__c", Field::of(Text)),
        ("Dealreg_Currency__c", Field::of(Text)),
        ("Dealreg_Balance__c", Field::of(Number)),
    ]);
    let mut org = BTreeMap::from([
        ("Lead".to_string(), lead),
        ("Opportunity".to_string(), opportunity),
        ("Dealreg_Conflict__c".to_string(), conflict),
        ("Dealreg_Commission_Balance__c".to_string(), balance),
    ]);
    org.extend(setup_objects());
    // The partner's Account, upserted by the external id setup creates on Account.
    if let Some(account) = org.get_mut("Account") {
        account.insert(PARTNER_EXTERNAL_ID.into(), Field::of(Text).external_id());
    }
    org
}

/// What every org has besides Lead and Opportunity: Account, and the setup objects a
/// permission set is made of. PermissionSet, FieldPermissions (`ParentId`, `SobjectType`,
/// `Field` as `Object.Field`, `PermissionsRead`, `PermissionsEdit`: "FieldPermissions",
/// https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_fieldpermissions.htm)
/// and PermissionSetAssignment (`AssigneeId`, `PermissionSetId`).
fn setup_objects() -> BTreeMap<String, BTreeMap<String, Field>> {
    use FieldType::*;
    let object = |fields: &[(&str, Field)]| {
        let mut map: BTreeMap<String, Field> = BTreeMap::new();
        map.insert("Id".into(), Field::of(Id).system());
        map.insert("SystemModstamp".into(), Field::of(DateTime).system());
        for (name, field) in fields {
            map.insert((*name).into(), *field);
        }
        map
    };
    BTreeMap::from([
        (
            "Account".to_string(),
            object(&[
                ("Name", Field::of(Text).required()),
                ("OwnerId", Field::of(Reference)),
            ]),
        ),
        (
            "PermissionSet".to_string(),
            object(&[
                ("Name", Field::of(Text).required()),
                ("Label", Field::of(Text).required()),
            ]),
        ),
        (
            "FieldPermissions".to_string(),
            object(&[
                ("ParentId", Field::of(Reference).required()),
                ("SobjectType", Field::of(Picklist).required()),
                ("Field", Field::of(Picklist).required()),
                ("PermissionsRead", Field::of(Boolean)),
                ("PermissionsEdit", Field::of(Boolean)),
            ]),
        ),
        (
            "PermissionSetAssignment".to_string(),
            object(&[
                ("AssigneeId", Field::of(Reference).required()),
                ("PermissionSetId", Field::of(Reference).required()),
            ]),
        ),
    ])
}

/// An org before dealreg's setup: Lead and Opportunity with their standard fields only,
/// no custom objects.
fn empty_org() -> BTreeMap<String, BTreeMap<String, Field>> {
    let mut org = default_org();
    org.retain(|name, _| !name.ends_with("__c"));
    for fields in org.values_mut() {
        fields.retain(|name, _| !name.ends_with("__c"));
    }
    org
}

fn org(w: &mut World) -> &mut BTreeMap<String, BTreeMap<String, Field>> {
    if w.salesforce.schema.is_empty() {
        w.salesforce.schema = default_org();
    }
    &mut w.salesforce.schema
}

impl FakeCrm {
    /// Salesforce: the org as it is before dealreg's setup (`dealreg crm setup`): Lead,
    /// Opportunity and Account with their standard fields, no `Dealreg_*` field or object.
    pub fn salesforce_empty_org(&self) {
        self.world().salesforce.schema = empty_org();
    }

    /// Salesforce: the custom fields and objects the Tooling API created, in order
    /// (`Object.Field`, or the object's name).
    pub fn salesforce_tooling_created(&self) -> Vec<String> {
        self.world().salesforce.created.clone()
    }

    /// Salesforce: a user decides on a registration in Salesforce, as a channel manager
    /// editing the record would: `Dealreg_Decision__c` (Approve/Decline) and
    /// `Dealreg_Decision_Reason__c` set on the `object` record with this registration id,
    /// `LastModifiedById` the user, a new `SystemModstamp`.
    pub fn salesforce_decide(
        &self,
        object: &str,
        registration_id: &str,
        decision: &str,
        reason: &str,
        user_id: &str,
    ) -> bool {
        let mut w = self.world();
        let Some((_, fields)) = w
            .records
            .get_mut(object)
            .and_then(|t| t.get_mut(registration_id))
        else {
            return false;
        };
        fields.insert("Dealreg_Decision__c".into(), json!(decision));
        fields.insert("Dealreg_Decision_Reason__c".into(), json!(reason));
        fields.insert("LastModifiedById".into(), json!(user_id));
        fields.insert("SystemModstamp".into(), Value::String(modstamp()));
        true
    }

    /// Salesforce: the org loses a field (a test of what an org set up without it answers).
    pub fn salesforce_remove_field(&self, object: &str, field: &str) {
        let mut w = self.world();
        if let Some(fields) = org(&mut w).get_mut(object) {
            fields.remove(field);
        }
    }

    /// Salesforce: defines a field (creating the object if need be), writable, optional.
    pub fn salesforce_define_field(
        &self,
        object: &str,
        field: &str,
        ty: FieldType,
        external_id: bool,
    ) {
        let mut w = self.world();
        let mut definition = Field::of(ty);
        definition.external_id = external_id;
        let fields = org(&mut w).entry(object.to_string()).or_default();
        fields
            .entry("Id".into())
            .or_insert(Field::of(FieldType::Id).system());
        fields.insert(field.to_string(), definition);
    }

    /// Salesforce: partner accounts are enabled (Partner Relationship Management / Partner
    /// Central): Opportunity gets the standard `PartnerAccountId`, a reference to Account
    /// (relationship `PartnerAccount`). Without it the org has no such field and refuses
    /// it as any unknown field (Opportunity object reference: "PartnerAccountId ... available
    /// only if partner relationship management (partner portal) is enabled",
    /// https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_opportunity.htm).
    pub fn salesforce_partner_accounts(&self) {
        let mut w = self.world();
        if let Some(fields) = org(&mut w).get_mut("Opportunity") {
            fields.insert("PartnerAccountId".into(), Field::of(FieldType::Reference));
        }
    }

    /// Salesforce: turns multi-currency on with these currencies: every object gets
    /// `CurrencyIsoCode`, a restricted picklist of them.
    pub fn salesforce_multi_currency(&self, currencies: &[&str]) {
        let mut w = self.world();
        for fields in org(&mut w).values_mut() {
            fields.insert("CurrencyIsoCode".into(), Field::of(FieldType::Picklist));
        }
        w.salesforce.currencies = currencies.iter().map(|c| c.to_string()).collect();
    }

    /// Converts the Lead with this registration id as a user does in Salesforce (Convert,
    /// with an Opportunity): the Lead becomes `IsConverted` with its
    /// `ConvertedOpportunityId`, and a new Opportunity carries the Lead's `Dealreg_*__c`
    /// fields (the Lead field mapping docs/CRM.md sets up). The Opportunity's id.
    pub fn convert_lead(&self, registration_id: &str) -> Option<String> {
        let mut w = self.world();
        w.next_id += 1;
        let opportunity_id = format!("006{:015}", w.next_id);
        let stamp = modstamp();
        let lead = w
            .records
            .get_mut("Lead")?
            .get_mut(registration_id)
            .map(|(_, fields)| {
                fields.insert("IsConverted".into(), Value::Bool(true));
                fields.insert(
                    "ConvertedOpportunityId".into(),
                    Value::String(opportunity_id.clone()),
                );
                fields.insert("SystemModstamp".into(), Value::String(stamp.clone()));
                fields.clone()
            })?;
        let mut opportunity: Map<String, Value> = lead
            .iter()
            .filter(|(k, _)| k.ends_with("__c"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        opportunity.insert(
            "Name".into(),
            lead.get("Company").cloned().unwrap_or(Value::Null),
        );
        opportunity.insert("StageName".into(), json!("Prospecting"));
        opportunity.insert("CloseDate".into(), json!("2027-03-31"));
        opportunity.insert("IsClosed".into(), json!(false));
        opportunity.insert("IsWon".into(), json!(false));
        opportunity.insert("SystemModstamp".into(), Value::String(stamp));
        w.records.entry("Opportunity".into()).or_default().insert(
            registration_id.to_string(),
            (opportunity_id.clone(), opportunity),
        );
        w.crm_ids
            .insert(("Opportunity".into(), opportunity_id.clone()));
        w.creations += 1;
        Some(opportunity_id)
    }

    /// The URL of the generic login host's token endpoint (`login.salesforce.com`), where
    /// the client-credentials flow is refused. A path stands for the host here: the fake
    /// serves one address.
    pub fn generic_token_url(&self) -> String {
        format!("{}{GENERIC_LOGIN}/services/oauth2/token", self.url())
    }
}

/// The connected app's Run As user: the token answer's `id` names it, and every write
/// through the API is `LastModifiedById` it.
pub const INTEGRATION_USER: &str = "005fake";

/// The path prefix that stands for `https://login.salesforce.com`.
const GENERIC_LOGIN: &str = "/login.salesforce.com";

/// Now as Salesforce writes `SystemModstamp`: `2026-12-01T10:00:00.000+0000`.
pub(crate) fn modstamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let millis = now.as_millis() as i64;
    let (days, rest) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+0000",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

type Answer = (Response<Full<Bytes>>, usize);

fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    headers: &[(&str, String)],
) -> Response<Full<Bytes>> {
    // Error bodies: a list of {message, errorCode[, fields]}, as "Status Codes and Error
    // Responses" shows (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm).
    // The example there carries `fields` (the fields the error is about) beside `message`
    // and `errorCode`.
    reply(
        status,
        json!([{ "message": message, "errorCode": code, "fields": [] }]),
        headers,
    )
}

pub(crate) fn salesforce(
    w: &mut World,
    base: &str,
    method: &str,
    path: &str,
    query: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> Answer {
    org(w);
    if path.ends_with("/services/oauth2/token") && method == "POST" {
        return token(w, base, path, body);
    }
    if bearer.is_none() || bearer != w.valid_token.as_deref() {
        return (
            error(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
                &[],
            ),
            0,
        );
    }
    w.usage.0 += 1;
    let usage = vec![(
        "Sforce-Limit-Info",
        format!("api-usage={}/{}", w.usage.0, w.usage.1),
    )];
    // The org's daily allocation of API requests spent: every call is refused 403
    // REQUEST_LIMIT_EXCEEDED ("TotalRequests Limit exceeded.") until the rolling 24-hour
    // window frees some. "API Request Limits and Allocations"
    // (https://developer.salesforce.com/docs/platform/salesforce-app-limits-cheatsheet/guide/salesforce-app-limits-platform-api.html);
    // the message as integrators report it (not on that page).
    if w.usage.1 > 0 && w.usage.0 > w.usage.1 {
        return (
            error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
                &usage,
            ),
            0,
        );
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let data = segments.len() >= 4 && segments[0] == "services" && segments[1] == "data";
    if data && method == "GET" && segments[3] == "query" {
        return run_query(w, &segments, query, &usage);
    }
    if data
        && method == "GET"
        && segments.len() == 6
        && segments[3] == "sobjects"
        && segments[5] == "describe"
    {
        return describe(w, segments[4], &usage);
    }
    if data
        && method == "POST"
        && segments.len() == 6
        && segments[3] == "tooling"
        && segments[4] == "sobjects"
    {
        return tooling_create(w, segments[5], body, &usage);
    }
    if data && method == "POST" && segments.len() == 5 && segments[3] == "sobjects" {
        return create(w, segments[4], body, &usage);
    }
    if data
        && method == "PATCH"
        && segments.len() >= 5
        && segments[3] == "composite"
        && segments[4] == "sobjects"
    {
        return match segments.len() {
            5 => update_by_id(w, body, &usage),
            7 => upsert(w, segments[5], segments[6], body, &usage),
            _ => (
                error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "The requested resource does not exist",
                    &usage,
                ),
                0,
            ),
        };
    }
    (
        error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
            &usage,
        ),
        0,
    )
}

fn token(w: &mut World, base: &str, path: &str, body: &[u8]) -> Answer {
    let form = String::from_utf8_lossy(body).to_string();
    let field = |name: &str| {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(percent_decode)
            .unwrap_or_default()
    };
    // The client-credentials flow is not supported on login.salesforce.com or
    // test.salesforce.com: only on the org's My Domain login URL. "Migrate from OAuth
    // Username-Password to Client Credentials Flow"
    // (https://help.salesforce.com/s/articleView?id=000886201&type=1). The answer's wording
    // is what integrators report, not on that page.
    if path.starts_with(GENERIC_LOGIN) && field("grant_type") == "client_credentials" {
        return (
            reply(
                StatusCode::BAD_REQUEST,
                json!({ "error": "invalid_grant", "error_description": "request not supported on this domain" }),
                &[],
            ),
            0,
        );
    }
    if field("grant_type") != "client_credentials"
        || field("client_id") != CLIENT_ID
        || field("client_secret") != CLIENT_SECRET
    {
        return (
            reply(
                StatusCode::BAD_REQUEST,
                json!({ "error": "invalid_client", "error_description": "invalid client credentials" }),
                &[],
            ),
            0,
        );
    }
    w.tokens_issued += 1;
    let token = format!("00Dfake!token-{}", w.tokens_issued);
    w.valid_token = Some(token.clone());
    // The token answer of "OAuth 2.0 Client Credentials Flow for Server-to-Server
    // Integration" (https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_client_credentials_flow.htm&type=5):
    // access_token, signature, scope, instance_url, id, token_type, issued_at.
    (
        reply(
            StatusCode::OK,
            json!({ "access_token": token, "signature": "fake", "scope": "api",
                    "instance_url": base, "id": format!("{base}/id/00Dfake/{INTEGRATION_USER}"),
                    "token_type": "Bearer", "issued_at": "1700000000000" }),
            &[],
        ),
        0,
    )
}

/// The documented input formats of "Valid Date and DateTime Formats"
/// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/intro_valid_date_formats.htm):
/// date `yyyy-MM-dd` (no offset); dateTime `yyyy-MM-ddTHH:mm:ss[.SSS](Z|+/-HH:mm)` with at
/// most three digits of milliseconds (`+HHmm`, as Salesforce writes them back, is taken too).
fn valid_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn valid_datetime(text: &str) -> bool {
    if text.len() < 20 || !valid_date(&text[..10]) || text.as_bytes()[10] != b'T' {
        return false;
    }
    let time = &text.as_bytes()[11..];
    if !(time.len() >= 9
        && time[..8].iter().enumerate().all(|(i, c)| match i {
            2 | 5 => *c == b':',
            _ => c.is_ascii_digit(),
        }))
    {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits != 3 {
            return false;
        }
        rest = &fraction[digits..];
    }
    let offset = rest.as_bytes();
    rest == "Z"
        || (offset.len() == 6
            && matches!(offset[0], b'+' | b'-')
            && offset[3] == b':'
            && offset[1..3]
                .iter()
                .chain(&offset[4..])
                .all(u8::is_ascii_digit))
        || (offset.len() == 5
            && matches!(offset[0], b'+' | b'-')
            && offset[1..].iter().all(u8::is_ascii_digit))
}

/// Whether `value` can be read as a value of `ty`; null is always readable (required is
/// checked per record).
fn readable(ty: FieldType, value: &Value) -> bool {
    match (ty, value) {
        (_, Value::Null) => true,
        (FieldType::Date, Value::String(s)) => valid_date(s),
        (FieldType::DateTime, Value::String(s)) => valid_datetime(s),
        (FieldType::Date | FieldType::DateTime, _) => false,
        (FieldType::Number | FieldType::Currency, Value::Number(_)) => true,
        (FieldType::Number | FieldType::Currency, Value::String(s)) => s.parse::<f64>().is_ok(),
        (FieldType::Number | FieldType::Currency, _) => false,
        (FieldType::Boolean, Value::Bool(_)) => true,
        (FieldType::Boolean, _) => false,
        (_, Value::Object(_) | Value::Array(_)) => false,
        _ => true,
    }
}

/// Checks every record's fields against the object before anything is written: a field
/// the object does not have, or a value its type cannot take, fails the whole request
/// (400), as a request body Salesforce cannot deserialize does. Wording from "Status
/// Codes and Error Responses" (INVALID_FIELD, JSON_PARSER_ERROR); the exact messages are
/// not documented.
fn check_fields(
    sf: &SalesforceWorld,
    fields: &BTreeMap<String, Field>,
    object: &str,
    records: &[Value],
) -> Result<(), (StatusCode, &'static str, String)> {
    for record in records {
        let Some(record) = record.as_object() else {
            continue;
        };
        for (name, value) in record {
            if name == "attributes" || name == "id" {
                continue;
            }
            if let Value::Object(by) = value {
                // A relationship by external id ("Insert or Update (Upsert) a Record Using
                // an External ID", upserting and associating through a relationship's
                // external id, `"Account__r": {"Ext_Id__c": "..."}`,
                // https://developer.salesforce.com/docs/platform/api-rest/guide/dome-upsert.html):
                // the relationship name of a reference field the user can see, naming one
                // external id field of the object it refers to. Anything else is a field
                // the object does not have (INVALID_FIELD, as below).
                let reference = reference_field(name);
                let target = fields
                    .get(&reference)
                    .filter(|f| f.ty == FieldType::Reference && !f.hidden)
                    .and_then(|_| referenced(sf, object, &reference));
                let Some(target) = target else {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        "INVALID_FIELD",
                        format!("No such column '{name}' on sObject of type {object}"),
                    ));
                };
                let by_external_id = by.len() == 1
                    && by.iter().all(|(k, v)| {
                        v.is_string()
                            && sf
                                .schema
                                .get(&target)
                                .and_then(|t| t.get(k))
                                .is_some_and(|f| f.external_id && !f.hidden)
                    });
                if !by_external_id {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        "INVALID_FIELD",
                        format!("The relationship {name} must name one External ID field of {target} and its value"),
                    ));
                }
                continue;
            }
            let Some(field) = fields.get(name).filter(|f| !f.hidden) else {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    format!("No such column '{name}' on sObject of type {object}"),
                ));
            };
            if !readable(field.ty, value) {
                let kind = match field.ty {
                    FieldType::Date => "date",
                    FieldType::DateTime => "datetime",
                    FieldType::Number | FieldType::Currency => "double",
                    FieldType::Boolean => "boolean",
                    _ => "string",
                };
                return Err((
                    StatusCode::BAD_REQUEST,
                    "JSON_PARSER_ERROR",
                    format!("Cannot deserialize instance of {kind} from {value} (field {name})"),
                ));
            }
        }
    }
    Ok(())
}

/// Replaces each relationship by external id (checked by [`check_fields`]) with the id of
/// the record it names, in its reference field; a record that does not exist (yet) refuses
/// this record alone: INVALID_FIELD "Foreign key external ID: <value> not found for field
/// <field> in entity <object>" (the error code from "Status Codes and Error Responses";
/// the wording is the one commonly reported, not on a page read here). Salesforce does not
/// create the referenced record: it must be written first.
fn resolve_references(
    w: &World,
    object: &str,
    record: &mut Map<String, Value>,
) -> Result<(), Value> {
    let relationships: Vec<(String, String, String)> = record
        .iter()
        .filter(|(name, _)| *name != "attributes")
        .filter_map(|(name, value)| {
            let (k, v) = value.as_object()?.iter().next()?;
            Some((name.clone(), k.clone(), v.as_str()?.to_string()))
        })
        .collect();
    for (name, external_field, value) in relationships {
        let reference = reference_field(&name);
        let target = referenced(&w.salesforce, object, &reference).unwrap_or_default();
        let found = w.records.get(&target).and_then(|t| {
            t.values()
                .find(|(_, f)| f.get(&external_field).and_then(Value::as_str) == Some(&value))
                .map(|(id, _)| id.clone())
        });
        let Some(id) = found else {
            return Err(record_error(
                "INVALID_FIELD",
                &format!("Foreign key external ID: {value} not found for field {external_field} in entity {target}"),
                &[],
            ));
        };
        record.remove(&name);
        record.insert(reference, Value::String(id));
    }
    Ok(())
}

fn record_error(code: &str, message: &str, fields: &[&str]) -> Value {
    json!({ "success": false, "errors": [{ "statusCode": code, "message": message, "fields": fields }] })
}

/// Per-record rules of a write to an existing record or a new one.
fn record_rules(
    fields: &BTreeMap<String, Field>,
    sf: &SalesforceWorld,
    object: &str,
    record: &Map<String, Value>,
    existing: Option<&Map<String, Value>>,
) -> Option<Value> {
    // A converted Lead cannot be updated: CANNOT_UPDATE_CONVERTED_LEAD ("cannot reference
    // converted lead"). Lead object reference, IsConverted
    // (https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_lead.htm)
    // and "Status Codes and Error Responses"; the message as Salesforce's knowledge article
    // 000384333 quotes it.
    if object == "Lead" && existing.and_then(|e| e.get("IsConverted")) == Some(&Value::Bool(true)) {
        return Some(record_error(
            "CANNOT_UPDATE_CONVERTED_LEAD",
            "cannot reference converted lead",
            &[],
        ));
    }
    for (name, value) in record {
        if name == "attributes" || name == "id" {
            continue;
        }
        // A relationship by external id was resolved (or refused) before these rules.
        let Some(&field) = fields.get(name.as_str()) else {
            continue;
        };
        // System fields (IsConverted, IsWon, SystemModstamp...) are not createable or
        // updateable: describe's createable/updateable flags, object reference.
        if !field.writable {
            return Some(record_error(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                &format!("Unable to create/update fields: {name}. Please check the security settings of this field and verify that it is read/write for your profile or permission set."),
                &[name],
            ));
        }
        // CurrencyIsoCode: a restricted picklist of the org's active currencies
        // ("CurrencyType", object reference,
        // https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_currencytype.htm).
        if name == "CurrencyIsoCode" {
            if let Some(code) = value.as_str() {
                if !sf.currencies.iter().any(|c| c == code) {
                    return Some(record_error(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        &format!("Currency ISO Code: invalid currency code: {code}"),
                        &["CurrencyIsoCode"],
                    ));
                }
            }
        }
    }
    // Required fields (Lead: LastName, Company; Opportunity: Name, StageName, CloseDate)
    // must be given on create and may not be set to null: REQUIRED_FIELD_MISSING
    // ("Required fields are missing: [..]"), object reference and "Status Codes and Error
    // Responses".
    let missing: Vec<&str> = fields
        .iter()
        .filter(|(_, f)| f.required)
        .filter(|(name, _)| match record.get(name.as_str()) {
            Some(Value::Null) => true,
            Some(_) => false,
            None => existing.is_none(),
        })
        .map(|(name, _)| name.as_str())
        .collect();
    if !missing.is_empty() {
        return Some(record_error(
            "REQUIRED_FIELD_MISSING",
            &format!("Required fields are missing: [{}]", missing.join(", ")),
            &missing,
        ));
    }
    None
}

/// `PATCH /services/data/vXX.X/composite/sobjects/{object}/{external id field}`: "Upsert
/// Records Using sObject Collections"
/// (https://developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-collections-upsert.html):
/// at most 200 records, of the URL's object only, each with `attributes.type`; one
/// UpsertResult (`id`, `success`, `errors`, `created`) per record, in order.
fn upsert(
    w: &mut World,
    object: &str,
    field: &str,
    body: &[u8],
    usage: &[(&str, String)],
) -> Answer {
    // An object the org does not have: 404 NOT_FOUND ("The requested resource does not
    // exist"), "Status Codes and Error Responses".
    let Some(fields) = w.salesforce.schema.get(object).cloned() else {
        return (
            error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
                usage,
            ),
            0,
        );
    };
    if !fields
        .get(field)
        .is_some_and(|f| f.external_id && !f.hidden)
    {
        return (
            error(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD",
                &format!("Field name provided, {field} is not an External ID or indexed field for {object}"),
                usage,
            ),
            0,
        );
    }
    let records = match collection_records(body, usage) {
        Ok(records) => records,
        Err(refused) => return *refused,
    };
    if let Some(seconds) = throttled(w) {
        let _ = seconds;
        return (
            error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
                usage,
            ),
            records.len(),
        );
    }
    if let Err((status, code, message)) = check_fields(&w.salesforce, &fields, object, &records) {
        return (error(status, code, &message, usage), records.len());
    }
    let stamp = modstamp();
    let mut results = Vec::new();
    for record in &records {
        let Some(record) = record.as_object() else {
            results.push(record_error(
                "INVALID_TYPE",
                "a record must be an object",
                &[],
            ));
            continue;
        };
        if record
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            != Some(object)
        {
            results.push(record_error(
                "INVALID_TYPE",
                "attributes.type does not match the URL",
                &[],
            ));
            continue;
        }
        let Some(external_id) = record
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            results.push(record_error(
                "REQUIRED_FIELD_MISSING",
                &format!("Required fields are missing: [{field}]"),
                &[field],
            ));
            continue;
        };
        if w.reject.contains(&external_id) {
            results.push(record_error(
                "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                "Rejected by a validation rule",
                &[],
            ));
            continue;
        }
        let existing = w
            .records
            .get(object)
            .and_then(|t| t.get(&external_id))
            .map(|(_, f)| f.clone());
        let mut record = record.clone();
        if let Err(refused) = resolve_references(w, object, &mut record) {
            results.push(refused);
            continue;
        }
        let record = &record;
        if let Some(refused) =
            record_rules(&fields, &w.salesforce, object, record, existing.as_ref())
        {
            results.push(refused);
            continue;
        }
        let mut written = record.clone();
        written.remove("attributes");
        written.insert("SystemModstamp".into(), Value::String(stamp.clone()));
        written.insert("LastModifiedById".into(), json!(INTEGRATION_USER));
        w.next_id += 1;
        let prefix = match object {
            "Lead" => "00Q",
            "Opportunity" => "006",
            "Account" => "001",
            _ => "a00",
        };
        let fresh_id = format!("{prefix}{:015}", w.next_id);
        let table = w.records.entry(object.to_string()).or_default();
        let (id, created) = match table.get_mut(&external_id) {
            Some((id, existing)) => {
                for (k, v) in written {
                    existing.insert(k, v);
                }
                (id.clone(), false)
            }
            None => {
                table.insert(external_id.clone(), (fresh_id.clone(), written));
                w.creations += 1;
                w.crm_ids.insert((object.to_string(), fresh_id.clone()));
                (fresh_id, true)
            }
        };
        results.push(json!({ "id": id, "success": true, "errors": [], "created": created }));
    }
    (
        reply(StatusCode::OK, Value::Array(results), usage),
        records.len(),
    )
}

/// The `records` of an sObject Collections request body, at most 200 of them (both
/// Collections pages: "The list can contain up to 200 objects"), or the documented refusal
/// of the whole request (`JSON_PARSER_ERROR`, `EXCEEDED_ID_LIMIT`).
fn collection_records(body: &[u8], usage: &[(&str, String)]) -> Result<Vec<Value>, Box<Answer>> {
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return Err(Box::new((
            error(
                StatusCode::BAD_REQUEST,
                "JSON_PARSER_ERROR",
                "Unexpected character",
                usage,
            ),
            0,
        )));
    };
    let records = parsed
        .get("records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if records.len() > 200 {
        return Err(Box::new((
            error(
                StatusCode::BAD_REQUEST,
                "EXCEEDED_ID_LIMIT",
                "Number of records exceeds the limit of 200",
                usage,
            ),
            records.len(),
        )));
    }
    Ok(records)
}

/// `PATCH /services/data/vXX.X/composite/sobjects`: "Update Records Using sObject
/// Collections"
/// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections_update.htm):
/// up to 200 records, each with `attributes.type` and `id`; one SaveResult (`id`,
/// `success`, `errors`) per record.
fn update_by_id(w: &mut World, body: &[u8], usage: &[(&str, String)]) -> Answer {
    let records = match collection_records(body, usage) {
        Ok(records) => records,
        Err(refused) => return *refused,
    };
    for record in &records {
        let object = record
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(fields) = w.salesforce.schema.get(object) else {
            return (
                error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_TYPE",
                    &format!("sObject type '{object}' is not supported."),
                    usage,
                ),
                records.len(),
            );
        };
        if let Err((status, code, message)) =
            check_fields(&w.salesforce, fields, object, std::slice::from_ref(record))
        {
            return (error(status, code, &message, usage), records.len());
        }
    }
    let stamp = modstamp();
    let mut results = Vec::new();
    for record in &records {
        let record = record.as_object().cloned().unwrap_or_default();
        let object = record
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let id = record
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let fields = w.salesforce.schema[&object].clone();
        let key = w
            .records
            .get(&object)
            .and_then(|t| t.iter().find(|(_, (crm_id, _))| *crm_id == id))
            .map(|(k, (_, f))| (k.clone(), f.clone()));
        let Some((key, existing)) = key else {
            results.push(json!({ "id": id, "success": false, "errors": [{ "statusCode": "INVALID_CROSS_REFERENCE_KEY", "message": "invalid cross reference id", "fields": [] }] }));
            continue;
        };
        let mut record = record;
        if let Err(mut refused) = resolve_references(w, &object, &mut record) {
            refused["id"] = Value::String(id);
            results.push(refused);
            continue;
        }
        if let Some(refused) =
            record_rules(&fields, &w.salesforce, &object, &record, Some(&existing))
        {
            let mut refused = refused;
            refused["id"] = Value::String(id);
            results.push(refused);
            continue;
        }
        if let Some((_, stored)) = w.records.get_mut(&object).and_then(|t| t.get_mut(&key)) {
            for (k, v) in record {
                if k != "attributes" && k != "id" {
                    stored.insert(k, v);
                }
            }
            stored.insert("SystemModstamp".into(), Value::String(stamp.clone()));
            stored.insert("LastModifiedById".into(), json!(INTEGRATION_USER));
        }
        results.push(json!({ "id": id, "success": true, "errors": [] }));
    }
    (
        reply(StatusCode::OK, Value::Array(results), usage),
        records.len(),
    )
}

/// A SOQL literal: a quoted string or a bare date-time.
fn literal(text: &str) -> String {
    text.trim().trim_matches('\'').replace("+0000", "Z")
}

/// A stored value compared with a literal (date-times in one form).
fn comparable(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.replace("+0000", "Z"),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `GET /services/data/vXX.X/query?q=SOQL` and `.../query/<locator>`: "Query"
/// (https://developer.salesforce.com/docs/platform/api-rest/guide/resources-query.html):
/// `totalSize`, `done`, `nextRecordsUrl` while more remain, `records` with their
/// `attributes` (`type`, `url`). The fake reads the SOQL the adapter sends: `SELECT f, ...
/// FROM Object [WHERE f >= x | f = x | f IN ('a', ...) [AND ...]] [ORDER BY f [ASC]]`.
/// A field the object does not have fails the whole query, 400 INVALID_FIELD ("No such
/// column 'X' on entity 'Opportunity'"); an unknown object 400 INVALID_TYPE ("sObject type
/// 'X' is not supported"): "Status Codes and Error Responses".
fn run_query(w: &mut World, segments: &[&str], query: &str, usage: &[(&str, String)]) -> Answer {
    let page = if segments.len() == 5 {
        let Some(rest) = w.query_pages.remove(segments[4]) else {
            return (
                error(
                    StatusCode::NOT_FOUND,
                    "INVALID_QUERY_LOCATOR",
                    "invalid query locator",
                    usage,
                ),
                0,
            );
        };
        rest
    } else {
        let soql = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("q="))
            .map(percent_decode)
            .unwrap_or_default();
        match select(w, &soql) {
            Ok(found) => found,
            Err((code, message)) => {
                return (error(StatusCode::BAD_REQUEST, code, &message, usage), 0);
            }
        }
    };
    // Two records a page, so every test crosses pages.
    let total = page.len();
    let (now, rest) = page.split_at(total.min(2));
    let mut body = json!({ "totalSize": total, "done": rest.is_empty(), "records": now });
    if !rest.is_empty() {
        w.next_id += 1;
        let locator = format!("01gFAKE{}-2", w.next_id);
        body["nextRecordsUrl"] = Value::String(format!("/services/data/v62.0/query/{locator}"));
        w.query_pages.insert(locator, rest.to_vec());
    }
    (reply(StatusCode::OK, body, usage), 0)
}

/// One WHERE clause of a query.
type Filter = Box<dyn Fn(&Map<String, Value>) -> bool>;

fn select(w: &World, soql: &str) -> Result<Vec<Value>, (&'static str, String)> {
    let malformed = || ("MALFORMED_QUERY", format!("unexpected query: {soql}"));
    let rest = soql.trim().strip_prefix("SELECT ").ok_or_else(malformed)?;
    let (fields, rest) = rest.split_once(" FROM ").ok_or_else(malformed)?;
    let fields: Vec<String> = fields.split(',').map(|f| f.trim().to_string()).collect();
    let (object, rest) = match rest.trim().split_once(' ') {
        Some((o, r)) => (o.to_string(), r.to_string()),
        None => (rest.trim().to_string(), String::new()),
    };
    let Some(schema) = w.salesforce.schema.get(&object) else {
        return Err((
            "INVALID_TYPE",
            format!("sObject type '{object}' is not supported."),
        ));
    };
    for field in &fields {
        if schema.get(field).is_none_or(|f| f.hidden) {
            return Err((
                "INVALID_FIELD",
                format!("No such column '{field}' on entity '{object}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name."),
            ));
        }
    }
    let (condition, order) = match rest.split_once("ORDER BY") {
        Some((c, o)) => (
            c.to_string(),
            Some(o.split_whitespace().next().unwrap_or_default().to_string()),
        ),
        None => (rest.clone(), None),
    };
    let condition = condition
        .trim()
        .strip_prefix("WHERE")
        .unwrap_or("")
        .trim()
        .to_string();
    let mut filters: Vec<Filter> = Vec::new();
    if !condition.is_empty() {
        for clause in condition.split(" AND ") {
            let clause = clause.trim();
            if let Some((field, value)) = clause.split_once(">=") {
                let (field, value) = (field.trim().to_string(), literal(value));
                check_known(schema, &object, &field)?;
                filters.push(Box::new(move |r| comparable(r.get(&field)) >= value));
            } else if let Some((field, values)) = clause.split_once(" IN ") {
                let field = field.trim().to_string();
                check_known(schema, &object, &field)?;
                let values: Vec<String> = values
                    .trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .map(literal)
                    .collect();
                filters.push(Box::new(move |r| {
                    values.contains(&comparable(r.get(&field)))
                }));
            } else if let Some((field, value)) = clause.split_once('=') {
                let (field, value) = (field.trim().to_string(), literal(value));
                check_known(schema, &object, &field)?;
                filters.push(Box::new(move |r| comparable(r.get(&field)) == value));
            } else {
                return Err(malformed());
            }
        }
    }
    let mut found: Vec<(String, Map<String, Value>)> = w
        .records
        .get(&object)
        .map(|t| {
            t.values()
                .map(|(id, f)| {
                    let mut f = f.clone();
                    f.insert("Id".into(), Value::String(id.clone()));
                    (id.clone(), f)
                })
                .filter(|(_, f)| filters.iter().all(|keep| keep(f)))
                .collect()
        })
        .unwrap_or_default();
    if let Some(order) = order {
        found.sort_by_key(|(_, f)| comparable(f.get(&order)));
    }
    Ok(found
        .into_iter()
        .map(|(id, f)| {
            let mut out = Map::new();
            out.insert(
                "attributes".into(),
                json!({ "type": object, "url": format!("/services/data/v62.0/sobjects/{object}/{id}") }),
            );
            for field in &fields {
                let value = match (f.get(field), schema[field.as_str()].ty) {
                    (Some(v), _) => v.clone(),
                    (None, FieldType::Boolean) => Value::Bool(false),
                    (None, _) => Value::Null,
                };
                out.insert(field.clone(), value);
            }
            Value::Object(out)
        })
        .collect())
}

fn check_known(
    schema: &BTreeMap<String, Field>,
    object: &str,
    field: &str,
) -> Result<(), (&'static str, String)> {
    if schema.get(field).is_some_and(|f| !f.hidden) {
        Ok(())
    } else {
        Err((
            "INVALID_FIELD",
            format!("No such column '{field}' on entity '{object}'."),
        ))
    }
}

/// Describe's name for a field type ("DescribeSObjectResult", Field `type`).
fn describe_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Id => "id",
        FieldType::Text => "string",
        FieldType::Number => "double",
        FieldType::Currency => "currency",
        FieldType::Date => "date",
        FieldType::DateTime => "datetime",
        FieldType::Boolean => "boolean",
        FieldType::Picklist => "picklist",
        FieldType::Reference => "reference",
    }
}

/// `GET /services/data/vXX.X/sobjects/{object}/describe`: "sObject Describe"
/// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm):
/// the object's `name` and its `fields`, each with `name`, `type`, `createable`,
/// `updateable`, `externalId`, `nillable`. Only the fields the integration user can see
/// (field-level security); an object the org does not have: 404 NOT_FOUND.
fn describe(w: &mut World, object: &str, usage: &[(&str, String)]) -> Answer {
    let Some(fields) = w.salesforce.schema.get(object) else {
        return (
            error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
                usage,
            ),
            0,
        );
    };
    let fields: Vec<Value> = fields
        .iter()
        .filter(|(_, f)| !f.hidden)
        .map(|(name, f)| {
            json!({ "name": name, "type": describe_type(f.ty), "createable": f.writable,
                    "updateable": f.writable, "externalId": f.external_id,
                    "nillable": !f.required, "custom": name.ends_with("__c") })
        })
        .collect();
    (
        reply(
            StatusCode::OK,
            json!({ "name": object, "custom": object.ends_with("__c"), "createable": true,
                    "updateable": true, "fields": fields }),
            usage,
        ),
        0,
    )
}

/// `POST /services/data/vXX.X/tooling/sobjects/CustomField` (or `CustomObject`) with
/// `FullName` and `Metadata`: Tooling API, "CustomField"
/// (https://developer.salesforce.com/docs/atlas.en-us.api_tooling.meta/api_tooling/tooling_api_objects_customfield.htm)
/// and the Metadata API's CustomField types (Text with `length`, Number with `precision`
/// and `scale`, Date, DateTime, Picklist with `valueSet`, Lookup with `referenceTo` and
/// `relationshipName`). A field created so has no field-level security for anyone:
/// hidden until FieldPermissions grant it. A name already taken:
/// DUPLICATE_DEVELOPER_NAME (wording not documented).
fn tooling_create(w: &mut World, kind: &str, body: &[u8], usage: &[(&str, String)]) -> Answer {
    let bad = |code: &str, message: String| {
        (
            error(StatusCode::BAD_REQUEST, code, &message, usage),
            0usize,
        )
    };
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return bad("JSON_PARSER_ERROR", "Unexpected character".into());
    };
    let full_name = parsed
        .get("FullName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let metadata = parsed.get("Metadata").cloned().unwrap_or(Value::Null);
    let text = |name: &str| metadata.get(name).and_then(Value::as_str).unwrap_or("");
    if text("label").is_empty() {
        return bad(
            "REQUIRED_FIELD_MISSING",
            "Required field is missing: label".into(),
        );
    }
    match kind {
        "CustomObject" => {
            if !full_name.ends_with("__c") {
                return bad(
                    "FIELD_INTEGRITY_EXCEPTION",
                    format!("invalid custom object name {full_name}"),
                );
            }
            if text("pluralLabel").is_empty() || metadata.get("nameField").is_none() {
                return bad(
                    "REQUIRED_FIELD_MISSING",
                    "Required fields are missing: pluralLabel, nameField".into(),
                );
            }
            if w.salesforce.schema.contains_key(&full_name) {
                return bad(
                    "DUPLICATE_DEVELOPER_NAME",
                    format!("{full_name} already exists"),
                );
            }
            let mut fields: BTreeMap<String, Field> = BTreeMap::new();
            for (name, field) in [
                ("Id", Field::of(FieldType::Id).system()),
                ("Name", Field::of(FieldType::Text).system()),
                ("OwnerId", Field::of(FieldType::Reference)),
                ("SystemModstamp", Field::of(FieldType::DateTime).system()),
                ("LastModifiedById", Field::of(FieldType::Reference).system()),
            ] {
                fields.insert(name.into(), field);
            }
            w.salesforce.schema.insert(full_name.clone(), fields);
        }
        "CustomField" => {
            let Some((object, field)) = full_name.split_once('.') else {
                return bad(
                    "FIELD_INTEGRITY_EXCEPTION",
                    format!("FullName {full_name:?} is not Object.Field__c"),
                );
            };
            if !field.ends_with("__c") {
                return bad(
                    "FIELD_INTEGRITY_EXCEPTION",
                    format!("a custom field's name ends in __c: {field}"),
                );
            }
            let number = |name: &str| metadata.get(name).and_then(Value::as_u64);
            let ty = match text("type") {
                "Text" if number("length").is_some_and(|l| (1..=255).contains(&l)) => {
                    FieldType::Text
                }
                "LongTextArea"
                    if number("length").is_some_and(|l| (256..=131_072).contains(&l))
                        && number("visibleLines").is_some() =>
                {
                    FieldType::Text
                }
                "Number" if number("precision").is_some() && number("scale").is_some() => {
                    FieldType::Number
                }
                "Date" => FieldType::Date,
                "DateTime" => FieldType::DateTime,
                "Picklist"
                    if metadata
                        .pointer("/valueSet/valueSetDefinition/value")
                        .is_some() =>
                {
                    FieldType::Picklist
                }
                "Lookup"
                    if !text("referenceTo").is_empty() && !text("relationshipName").is_empty() =>
                {
                    FieldType::Reference
                }
                other => {
                    return bad(
                        "FIELD_INTEGRITY_EXCEPTION",
                        format!("type {other:?} without the attributes it needs (Text: length 1-255; Number: precision, scale; Picklist: valueSet; Lookup: referenceTo, relationshipName)"),
                    );
                }
            };
            let Some(fields) = w.salesforce.schema.get_mut(object) else {
                return bad(
                    "FIELD_INTEGRITY_EXCEPTION",
                    format!("no such object {object}"),
                );
            };
            if fields.contains_key(field) {
                return bad(
                    "DUPLICATE_DEVELOPER_NAME",
                    format!("{full_name} already exists"),
                );
            }
            let mut definition = Field::of(ty);
            definition.external_id = metadata.get("externalId") == Some(&Value::Bool(true));
            definition.hidden = true;
            definition.writable = false;
            fields.insert(field.to_string(), definition);
            if ty == FieldType::Reference {
                w.salesforce.references.insert(
                    (object.to_string(), field.to_string()),
                    text("referenceTo").to_string(),
                );
            }
        }
        other => {
            return (
                error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!("The requested resource does not exist: tooling {other}"),
                    usage,
                ),
                0,
            );
        }
    }
    w.salesforce.created.push(full_name);
    w.next_id += 1;
    let id = format!("00N{:015}", w.next_id);
    (
        reply(
            StatusCode::CREATED,
            json!({ "id": id, "success": true, "errors": [], "warnings": [] }),
            usage,
        ),
        0,
    )
}

/// `POST /services/data/vXX.X/sobjects/{object}`: "Create a Record"
/// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_create.htm):
/// 201 with `id`, `success`, `errors`. A FieldPermissions record grants its field to the
/// integration user at once (the fake does not model which user holds the permission set).
fn create(w: &mut World, object: &str, body: &[u8], usage: &[(&str, String)]) -> Answer {
    let Some(fields) = w.salesforce.schema.get(object).cloned() else {
        return (
            error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
                usage,
            ),
            0,
        );
    };
    let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(body) else {
        return (
            error(
                StatusCode::BAD_REQUEST,
                "JSON_PARSER_ERROR",
                "Unexpected character",
                usage,
            ),
            0,
        );
    };
    if let Err((status, code, message)) = check_fields(
        &w.salesforce,
        &fields,
        object,
        &[Value::Object(record.clone())],
    ) {
        return (error(status, code, &message, usage), 0);
    }
    if let Some(refused) = record_rules(&fields, &w.salesforce, object, &record, None) {
        let first = refused.pointer("/errors/0").cloned().unwrap_or(Value::Null);
        return (
            reply(
                StatusCode::BAD_REQUEST,
                json!([{ "message": first["message"], "errorCode": first["statusCode"], "fields": first["fields"] }]),
                usage,
            ),
            0,
        );
    }
    if object == "FieldPermissions" {
        let name = record.get("Field").and_then(Value::as_str).unwrap_or("");
        let read = record.get("PermissionsRead") == Some(&Value::Bool(true));
        let edit = record.get("PermissionsEdit") == Some(&Value::Bool(true));
        // PermissionsEdit requires PermissionsRead ("FieldPermissions", object reference).
        if edit && !read {
            return (
                error(
                    StatusCode::BAD_REQUEST,
                    "FIELD_INTEGRITY_EXCEPTION",
                    "Permission Edit depends on permission(s): Read",
                    usage,
                ),
                0,
            );
        }
        let target = name
            .split_once('.')
            .and_then(|(o, f)| w.salesforce.schema.get_mut(o)?.get_mut(f));
        let Some(target) = target else {
            return (
                error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    &format!("Field Name: bad value for restricted picklist field: {name}"),
                    usage,
                ),
                0,
            );
        };
        target.hidden &= !read;
        target.writable |= edit;
    }
    w.next_id += 1;
    let id = format!("0PS{:015}", w.next_id);
    let mut stored = record;
    stored.insert("SystemModstamp".into(), Value::String(modstamp()));
    w.records
        .entry(object.to_string())
        .or_default()
        .insert(id.clone(), (id.clone(), stored));
    w.crm_ids.insert((object.to_string(), id.clone()));
    (
        reply(
            StatusCode::CREATED,
            json!({ "id": id, "success": true, "errors": [] }),
            usage,
        ),
        0,
    )
}
