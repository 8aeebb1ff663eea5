//! Issue 31 item 6: the partner's Account on the registration's records, so Salesforce's
//! own reports by partner work. An Account per partner, upserted by `Dealreg_Partner_Id__c`
//! and written before the registrations that reference it; each Lead and Opportunity
//! references it through the lookup `Dealreg_Partner_Account__c` (sent as
//! `Dealreg_Partner_Account__r: {"Dealreg_Partner_Id__c": id}`), or, with `[salesforce]
//! partner_accounts = true`, Opportunity's `PartnerAccountId` (`PartnerAccount: {...}`).
//! Against the strict fake Salesforce only: not verified against a real org.

mod common;
use common::{patch, registration_change, registration_id, ListSource, LEADS, OPPORTUNITIES};

use std::sync::Arc;
use std::time::Duration;

use dealreg_clock::SystemClock;
use dealreg_crm::mapping::SalesforceSettings;
use dealreg_crm::salesforce::SalesforceClient;
use dealreg_crm::setup::Finding;
use dealreg_crm::setup_salesforce;
use dealreg_crm::sync::Outbound;
use dealreg_crm::{CrmConfig, SyncState, Target, ViewChange};
use dealreg_crm_fake::{FakeCrm, Kind, CLIENT_ID, CLIENT_SECRET};
use serde_json::json;

const CONTOSO: &str = "0193a000-0000-7000-8000-aaaaaaaaaaaa";
const FABRIKAM: &str = "0193a000-0000-7000-8000-bbbbbbbbbbbb";

/// A registration of partner `partner` (Contoso or Fabrikam).
fn registration(n: usize, partner: &str, status: &str) -> ViewChange {
    let name = if partner == CONTOSO {
        "Contoso Resellers"
    } else {
        "Fabrikam Partners"
    };
    registration_change(n, status, json!({ "partner_id": partner, "partner": name }))
}

fn client(fake: &FakeCrm) -> SalesforceClient {
    client_with(fake, false)
}

fn client_with(fake: &FakeCrm, partner_accounts: bool) -> SalesforceClient {
    let settings = SalesforceSettings {
        token_url: fake.token_url(),
        partner_accounts,
        ..SalesforceSettings::default()
    };
    SalesforceClient::new(settings, CLIENT_ID.into(), CLIENT_SECRET.into()).expect("a client")
}

fn outbound(
    config: CrmConfig,
    client: SalesforceClient,
    dir: &tempfile::TempDir,
) -> Outbound<SalesforceClient> {
    Outbound {
        config,
        target: Target::Salesforce,
        client,
        state: Arc::new(SyncState::open(&dir.path().join("crm.db")).expect("state")),
        clock: Arc::new(SystemClock),
        adapter: "salesforce-test".into(),
        backoff: Duration::from_millis(20),
    }
}

/// The default mapping with `[salesforce] partner_accounts = true`.
fn with_partner_accounts(text: &str) -> String {
    assert!(text.contains("partner_accounts = false"));
    text.replace("partner_accounts = false", "partner_accounts = true")
}

/// The registration as an Opportunity (Opportunity-first, its required fields mapped).
fn opportunity_first(text: &str) -> String {
    text.replace(
        "salesforce = { object = \"Lead\", external_id = \"Dealreg_Registration_Id__c\" }",
        "salesforce = { object = \"Opportunity\", external_id = \"Dealreg_Registration_Id__c\" }",
    )
    .replace("salesforce = \"LeadSource\"", "hubspot = \"dealreg_lead_source_unused\"")
    .replace("salesforce = \"LastName\"", "hubspot = \"dealreg_last_name_unused\"")
    .replace("salesforce = \"Company\"\n", "salesforce = \"Name\"\n")
    .replacen(
        "[[object.field]]\nfrom = \"/row/account\"",
        "[[object.field]]\nvalue = \"Prospecting\"\nsalesforce = \"StageName\"\ndirection = \"first_sync\"\n\n\
         [[object.field]]\nfrom = \"/row/protection_expires_at\"\nor_from = \"/row/submitted_at\"\ntransform = \"date\"\nsalesforce = \"CloseDate\"\ndirection = \"first_sync\"\n\n\
         [[object.field]]\nfrom = \"/row/account\"",
        1,
    )
}

fn parse(text: &str) -> CrmConfig {
    CrmConfig::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The Account id of each partner in the fake org.
fn account_ids(fake: &FakeCrm) -> (String, String) {
    let accounts = fake.records("Account");
    (accounts[CONTOSO].0.clone(), accounts[FABRIKAM].0.clone())
}

/// The upsert requests the fake answered, by object, in order.
fn upserted_objects(fake: &FakeCrm) -> Vec<String> {
    fake.log()
        .iter()
        .filter_map(|l| {
            let rest = l.path.split("/composite/sobjects/").nth(1)?;
            Some(rest.split('/').next()?.to_string())
        })
        .collect()
}

/// The default (Lead-first) mapping: one Account per partner with its name, written
/// before the Leads in the same batch; each Lead references its partner's; a converted
/// Lead's Opportunity is written with it too.
#[tokio::test]
async fn each_partner_has_one_account_and_each_registration_references_it() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sync = outbound(
        CrmConfig::default_mapping().expect("mapping"),
        client(&fake),
        &dir,
    );
    let mut source = ListSource(vec![
        registration(0, CONTOSO, "submitted"),
        registration(1, FABRIKAM, "submitted"),
        registration(2, CONTOSO, "submitted"),
    ]);
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    let accounts = fake.records("Account");
    assert_eq!(accounts.len(), 2, "one Account per partner: {accounts:?}");
    assert_eq!(accounts[CONTOSO].1["Name"], json!("Contoso Resellers"));
    assert_eq!(accounts[FABRIKAM].1["Name"], json!("Fabrikam Partners"));
    let (contoso, fabrikam) = account_ids(&fake);
    let leads = fake.records("Lead");
    for (n, account) in [(0, &contoso), (1, &fabrikam), (2, &contoso)] {
        assert_eq!(
            leads[&registration_id(n)].1["Dealreg_Partner_Account__c"],
            json!(account),
            "Lead {n}"
        );
    }
    // The Accounts went first although the mapping lists the registration object first.
    assert_eq!(upserted_objects(&fake), vec!["Account", "Lead"]);

    // More registrations of the same partners create no second Account.
    source.0.push(registration(3, FABRIKAM, "submitted"));
    sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(fake.records("Account").len(), 2);
    assert_eq!(
        fake.records("Lead")[&registration_id(3)].1["Dealreg_Partner_Account__c"],
        json!(fabrikam)
    );

    // Converted in Salesforce: the Opportunity is written with the partner's Account (the
    // adapter's write carries it; with partner accounts, below, PartnerAccountId too).
    let opportunity = fake.convert_lead(&registration_id(1)).expect("converted");
    source.0.push(registration(1, FABRIKAM, "approved"));
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    let (id, fields) = &fake.records("Opportunity")[&registration_id(1)];
    assert_eq!(id, &opportunity);
    assert_eq!(fields["Dealreg_Partner_Account__c"], json!(fabrikam));
    assert_eq!(fields["Dealreg_Status__c"], json!("approved"));
}

/// `[salesforce] partner_accounts = true` in an org with partner accounts: Opportunities
/// carry the partner's Account in `PartnerAccountId` (Opportunity-first, and a converted
/// Lead's Opportunity).
#[tokio::test]
async fn with_partner_accounts_the_opportunity_has_partner_account_id() {
    // Opportunity-first.
    let fake = FakeCrm::start(Kind::Salesforce).await;
    fake.salesforce_partner_accounts();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = parse(&with_partner_accounts(&opportunity_first(
        dealreg_crm::mapping::DEFAULT_MAPPING,
    )));
    let sync = outbound(config, client_with(&fake, true), &dir);
    let mut source = ListSource(vec![
        registration(0, CONTOSO, "submitted"),
        registration(1, FABRIKAM, "submitted"),
    ]);
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    let (contoso, fabrikam) = account_ids(&fake);
    let opportunities = fake.records("Opportunity");
    assert_eq!(
        opportunities[&registration_id(0)].1["PartnerAccountId"],
        json!(contoso)
    );
    assert_eq!(
        opportunities[&registration_id(1)].1["PartnerAccountId"],
        json!(fabrikam)
    );
    assert_eq!(upserted_objects(&fake), vec!["Account", "Opportunity"]);

    // Lead-first: the Lead has the lookup, its Opportunity PartnerAccountId once converted.
    let fake = FakeCrm::start(Kind::Salesforce).await;
    fake.salesforce_partner_accounts();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = parse(&with_partner_accounts(
        dealreg_crm::mapping::DEFAULT_MAPPING,
    ));
    let sync = outbound(config, client_with(&fake, true), &dir);
    let mut source = ListSource(vec![registration(0, CONTOSO, "submitted")]);
    sync.run_once(&mut source, 100).await.expect("sync");
    let contoso = fake.records("Account")[CONTOSO].0.clone();
    assert_eq!(
        fake.records("Lead")[&registration_id(0)].1["Dealreg_Partner_Account__c"],
        json!(contoso)
    );
    fake.convert_lead(&registration_id(0)).expect("converted");
    source.0.push(registration(0, CONTOSO, "approved"));
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    let fields = &fake.records("Opportunity")[&registration_id(0)].1;
    assert_eq!(fields["PartnerAccountId"], json!(contoso));
    assert_eq!(fields["Dealreg_Partner_Account__c"], json!(contoso));
}

/// An org without partner accounts has no `PartnerAccountId`: the fake refuses it as an
/// unknown field, the switch against such an org dead-letters (never writes) the
/// registrations, and `crm check` names the field.
#[tokio::test]
async fn without_partner_accounts_partner_account_id_is_refused() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let (status, body) = patch(
        &fake,
        OPPORTUNITIES,
        json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Opportunity" }, "Dealreg_Registration_Id__c": "r1", "Name": "A",
          "StageName": "Prospecting", "CloseDate": "2027-03-01",
          "PartnerAccount": { "Dealreg_Partner_Id__c": CONTOSO } } ] }),
    )
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (400, json!("INVALID_FIELD")),
        "{body}"
    );
    let (status, body) = patch(&fake, OPPORTUNITIES, json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Opportunity" }, "Dealreg_Registration_Id__c": "r1", "Name": "A",
          "StageName": "Prospecting", "CloseDate": "2027-03-01", "PartnerAccountId": "001000000000000001" } ] }))
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (400, json!("INVALID_FIELD")),
        "{body}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let config = parse(&with_partner_accounts(&opportunity_first(
        dealreg_crm::mapping::DEFAULT_MAPPING,
    )));
    let requirements = setup_salesforce::requirements(&config);
    let findings = setup_salesforce::check(&client_with(&fake, true), &requirements)
        .await
        .expect("check");
    assert!(
        findings
            .iter()
            .any(|f| matches!(f, Finding::Missing { object, field, .. }
            if object == "Opportunity" && field == "PartnerAccountId")),
        "{findings:?}"
    );
    let steps = setup_salesforce::plan(&config, &requirements, &findings);
    assert!(
        steps
            .iter()
            .any(|(s, _)| s.by_hand && s.what.contains("partner accounts")),
        "{steps:?}"
    );
    let sync = outbound(config, client_with(&fake, true), &dir);
    let mut source = ListSource(vec![registration(0, CONTOSO, "submitted")]);
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    assert!(fake.records("Opportunity").is_empty());
}

/// A reference to an Account that is not in the org (yet) is refused, that record alone
/// (the order matters); the sync writes the Accounts of a batch first, whatever the
/// mapping's order of objects.
#[tokio::test]
async fn a_reference_to_an_account_not_written_yet_is_refused_and_the_sync_avoids_it() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let lead = |id: &str, partner: &str| {
        json!({ "attributes": { "type": "Lead" }, "Dealreg_Registration_Id__c": id, "LastName": "A",
                "Company": "A", "Dealreg_Partner_Account__r": { "Dealreg_Partner_Id__c": partner } })
    };
    let (status, body) = patch(
        &fake,
        LEADS,
        json!({ "allOrNone": false, "records": [lead("r1", CONTOSO)] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["success"], json!(false), "{body}");
    assert_eq!(body[0]["errors"][0]["statusCode"], json!("INVALID_FIELD"));
    assert!(
        body[0]["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Foreign key external ID") && m.contains(CONTOSO)),
        "{body}"
    );
    assert!(fake.records("Lead").is_empty());
    // A relationship naming a field that is not an external id of Account: the request.
    let (status, body) = patch(&fake, LEADS, json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Lead" }, "Dealreg_Registration_Id__c": "r1", "LastName": "A", "Company": "A",
          "Dealreg_Partner_Account__r": { "Name": "Contoso" } } ] }))
    .await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (400, json!("INVALID_FIELD")),
        "{body}"
    );
    // Once the Account exists, the same Lead is written and references it.
    let (status, body) = patch(
        &fake,
        "/services/data/v62.0/composite/sobjects/Account/Dealreg_Partner_Id__c",
        json!({ "allOrNone": false, "records": [
            { "attributes": { "type": "Account" }, "Dealreg_Partner_Id__c": CONTOSO, "Name": "Contoso Resellers" } ] }),
    )
    .await;
    assert_eq!(
        (status, body[0]["success"].clone()),
        (200, json!(true)),
        "{body}"
    );
    let (_, body) = patch(
        &fake,
        LEADS,
        json!({ "allOrNone": false, "records": [lead("r1", CONTOSO)] }),
    )
    .await;
    assert_eq!(body[0]["success"], json!(true), "{body}");
    assert_eq!(
        fake.records("Lead")["r1"].1["Dealreg_Partner_Account__c"],
        json!(fake.records("Account")[CONTOSO].0)
    );

    // The sync, with the registration object listed before the Accounts' (the default)
    // and a new partner in a batch: the Account request goes first, nothing refused.
    let fake = FakeCrm::start(Kind::Salesforce).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = dealreg_crm::mapping::DEFAULT_MAPPING;
    assert!(
        text.find("name = \"registration\"") < text.find("name = \"partner_account\""),
        "the default mapping lists the registration first"
    );
    let sync = outbound(parse(text), client(&fake), &dir);
    let mut source = ListSource(
        (0..5)
            .map(|n| registration(n, if n % 2 == 0 { CONTOSO } else { FABRIKAM }, "submitted"))
            .collect(),
    );
    let report = sync.run_once(&mut source, 2).await.expect("sync");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    assert_eq!(fake.records("Lead").len(), 5);
    let objects = upserted_objects(&fake);
    let first_lead = objects.iter().position(|o| o == "Lead").expect("leads");
    assert_eq!(objects[0], "Account", "{objects:?}");
    assert!(first_lead > 0, "{objects:?}");
}

/// An org before setup: the check names the Account's external id and the lookups;
/// setup creates them (Tooling API, a Lookup to Account) and grants them; the check then
/// passes and the sync references the Accounts.
#[tokio::test]
async fn setup_creates_the_partner_account_fields_and_check_requires_them() {
    let fake = FakeCrm::start(Kind::Salesforce).await;
    fake.salesforce_empty_org();
    let config = CrmConfig::default_mapping().expect("mapping");
    let client = client(&fake);
    let requirements = setup_salesforce::requirements(&config);
    let findings = setup_salesforce::check(&client, &requirements)
        .await
        .expect("check");
    let named: Vec<String> = findings.iter().map(ToString::to_string).collect();
    for expected in [
        "missing field Account.Dealreg_Partner_Id__c (text, external id, unique)",
        "missing field Lead.Dealreg_Partner_Account__c (lookup to Account)",
        "missing field Opportunity.Dealreg_Partner_Account__c (lookup to Account)",
    ] {
        assert!(named.iter().any(|n| n == expected), "{expected}: {named:?}");
    }
    let steps = setup_salesforce::plan(&config, &requirements, &findings);
    setup_salesforce::apply(&client, &steps)
        .await
        .expect("apply");
    let created = fake.salesforce_tooling_created();
    for field in [
        "Account.Dealreg_Partner_Id__c",
        "Lead.Dealreg_Partner_Account__c",
        "Opportunity.Dealreg_Partner_Account__c",
    ] {
        assert!(created.contains(&field.to_string()), "{field}: {created:?}");
    }
    let findings = setup_salesforce::check(&client, &requirements)
        .await
        .expect("check");
    assert!(findings.is_empty(), "{findings:?}");
    let dir = tempfile::tempdir().expect("temp dir");
    let sync = outbound(config, client, &dir);
    let mut source = ListSource(vec![registration(0, CONTOSO, "submitted")]);
    let report = sync.run_once(&mut source, 100).await.expect("sync");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    assert_eq!(
        fake.records("Lead")[&registration_id(0)].1["Dealreg_Partner_Account__c"],
        json!(fake.records("Account")[CONTOSO].0)
    );
}
