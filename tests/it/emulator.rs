//! The emulator against clients nobody here wrote: the official AWS SDK for Customer
//! Profiles, the AWS CLI (Customer Profiles and Connect), and plain HTTP for Genesys; plus
//! faults, quotas and statistics.

use std::time::Duration;

use aws_sdk_customerprofiles::Client;
use aws_sdk_customerprofiles::config::retry::RetryConfig;
use aws_sdk_customerprofiles::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_customerprofiles::error::ProvideErrorMetadata;
use aws_sdk_customerprofiles::operation::batch_get_profile::builders::BatchGetProfileFluentBuilder;
use aws_sdk_customerprofiles::operation::search_profiles::builders::SearchProfilesFluentBuilder;
use aws_sdk_customerprofiles::operation::update_profile::builders::UpdateProfileFluentBuilder;
use aws_sdk_customerprofiles::types::UpdateAddress;
use profilesync::emulator::{EmulatorConfig, EmulatorHandle, FaultConfig};
use serde_json::{Value, json};

use crate::support::{
    AwsCli, CliCase, Dir, emulator_process, emulator_process_sync, faults, genesys_profile,
    profile_in, start_emulator,
};

const DOMAIN: &str = "TestDomain";
const P1: &str = "0123456789abcdef0123456789abcdef";
const P2: &str = "11111111111111111111111111111111";
const MISSING: &str = "ffffffffffffffffffffffffffffffff";
const INSTANCE: &str = "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111";
const USER: &str = "87654321-2222-1234-1234-111234567891";
const FAKE_SIGV4: &str = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/profile/aws4_request, SignedHeaders=host, Signature=00";

fn seed() -> Value {
    json!({
        "domains": {DOMAIN: {"profiles": {
            P1: {"FirstName": "Ann", "LastName": "Lee", "EmailAddress": "ann@example.com",
                 "Address": {"City": "Paris", "PostalCode": "75001"},
                 "Attributes": {"Tier": "gold", "Points": "10"}},
            P2: {"FirstName": "Bob", "PersonalEmailAddress": "bob@example.com"}
        }}},
        "instances": {INSTANCE: {"users": {
            USER: {"Username": "mary", "IdentityInfo": {"FirstName": "Mary", "LastName": "Major",
                   "Email": "mary@example.com", "Mobile": "+14155550100"}}
        }}},
        "genesys": {"tenant_id": 1, "profiles": {
            "00027a52JCGY000M": {"FirstName": "Bruce", "LastName": "Banner", "DOB": "1962-05-10",
                                 "EmailAddress": ["bruce@example.com"],
                                 "Address": {"Type": 1, "City": "Hollywood"}}
        }}
    })
}

async fn seeded() -> EmulatorHandle {
    start_emulator(EmulatorConfig::default().with_seed(seed())).await
}

fn sdk(handle: &EmulatorHandle, retries: bool) -> Client {
    let retry = if retries {
        // Enough attempts that full jitter cannot, by chance, spend them
        // all before the emulator's bucket refills.
        RetryConfig::standard().with_max_attempts(10)
    } else {
        RetryConfig::disabled()
    };
    let config = aws_sdk_customerprofiles::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(handle.endpoint_url())
        .retry_config(retry)
        .build();
    Client::from_conf(config)
}

/// An emulator with [`seed`], configured further by `with`.
async fn seeded_with(with: impl FnOnce(EmulatorConfig) -> EmulatorConfig) -> EmulatorHandle {
    start_emulator(with(EmulatorConfig::default().with_seed(seed()))).await
}

/// UpdateProfile of profile `id` in [`DOMAIN`].
fn update(client: &Client, id: &str) -> UpdateProfileFluentBuilder {
    client.update_profile().domain_name(DOMAIN).profile_id(id)
}

/// BatchGetProfile in [`DOMAIN`].
fn batch(client: &Client) -> BatchGetProfileFluentBuilder {
    client.batch_get_profile().domain_name(DOMAIN)
}

/// SearchProfiles in [`DOMAIN`] by `key` = `value`.
fn search(client: &Client, key: &str, value: &str) -> SearchProfilesFluentBuilder {
    client
        .search_profiles()
        .domain_name(DOMAIN)
        .key_name(key)
        .values(value)
}

/// Asserts that the emulator accepted one `operation` request and throttled one.
fn assert_one_accepted_one_throttled(handle: &EmulatorHandle, operation: &str) {
    let stats = handle.stats().operation(operation);
    assert_eq!(
        (stats.status(200), stats.status(429), stats.accepted),
        (1, 1, 1),
        "{operation}"
    );
}

/// Sends a request that must fail (`$what` says why it must); its service error.
macro_rules! refused {
    ($request:expr, $what:expr $(,)?) => {
        $request.send().await.expect_err($what).into_service_error()
    };
}

// ---- Customer Profiles through the official Rust SDK ----

#[tokio::test]
async fn sdk_update_sets_keeps_and_removes_with_empty_string() {
    let handle = seeded().await;
    let client = sdk(&handle, false);
    let out = update(&client, P1)
        .first_name("Anne")
        .last_name("")
        .address(UpdateAddress::builder().city("").country("FR").build())
        .attributes("Points", "")
        .attributes("Since", "2020")
        .send()
        .await
        .expect("update succeeds");
    assert_eq!(out.profile_id(), P1);
    assert_eq!(
        profile_in(&handle, DOMAIN, P1),
        json!({"FirstName": "Anne", "EmailAddress": "ann@example.com",
               "Address": {"PostalCode": "75001", "Country": "FR"},
               "Attributes": {"Tier": "gold", "Since": "2020"}})
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn sdk_unknown_profile_is_resource_not_found() {
    let handle = seeded().await;
    let client = sdk(&handle, false);
    let err = refused!(update(&client, MISSING).first_name("X"), "unknown profile",);
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = refused!(
        client
            .update_profile()
            .domain_name("NoSuchDomain")
            .profile_id(P1),
        "unknown domain",
    );
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    assert!(err.message().is_some_and(|m| m.contains("NoSuchDomain")));
    handle.shutdown().await;
}

#[tokio::test]
async fn sdk_validation_error_is_bad_request_naming_member_and_rule() {
    let handle = seeded().await;
    let client = sdk(&handle, false);
    let err = refused!(update(&client, P1).first_name("x".repeat(256)), "too long",);
    assert!(err.is_bad_request_exception(), "{err:?}");
    assert_eq!(
        err.message(),
        Some(
            "1 validation error detected: Value at 'firstName' failed to satisfy constraint: Member must have length less than or equal to 255"
        )
    );
    let err = refused!(update(&client, "NOT-HEX"), "bad id",);
    assert!(err.is_bad_request_exception(), "{err:?}");
    assert!(err.message().is_some_and(|m| m.contains("[a-f0-9]{32}")));
    assert_eq!(profile_in(&handle, DOMAIN, P1)["FirstName"], "Ann");
    handle.shutdown().await;
}

#[tokio::test]
async fn sdk_throttle_is_throttling_exception() {
    let handle = seeded_with(|c| c.with_quota("UpdateProfile", 1.0, 1)).await;
    let client = sdk(&handle, false);
    let update = || update(&client, P1).first_name("Z");
    update().send().await.expect("first request fits the burst");
    let err = refused!(update(), "second is throttled");
    assert!(err.is_throttling_exception(), "{err:?}");
    assert_eq!(err.code(), Some("ThrottlingException"));
    assert_one_accepted_one_throttled(&handle, "UpdateProfile");
    handle.shutdown().await;
}

#[tokio::test]
async fn sdk_sees_a_denied_operation_as_access_denied() {
    let handle = seeded_with(|c| c.with_denied("UpdateProfile")).await;
    let client = sdk(&handle, false);
    let err = update(&client, P1)
        .first_name("Z")
        .send()
        .await
        .expect_err("denied");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    let err = err.into_service_error();
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert!(
        err.message()
            .is_some_and(|m| m.contains("not authorized to perform: profile:UpdateProfile")),
        "{err:?}"
    );
    assert_eq!(profile_in(&handle, DOMAIN, P1)["FirstName"], "Ann");
    // Other operations are not affected.
    search(&client, "_profileId", P1)
        .send()
        .await
        .expect("search is allowed");
    handle.shutdown().await;
}

#[tokio::test]
async fn sdk_retries_a_throttle_because_its_code_says_throttling() {
    let handle = seeded_with(|c| c.with_quota("UpdateProfile", 5.0, 1)).await;
    let client = sdk(&handle, true);
    for _ in 0..2 {
        update(&client, P1)
            .first_name("Z")
            .send()
            .await
            .expect("retried until accepted");
    }
    let stats = handle.stats().operation("UpdateProfile");
    assert_eq!(stats.status(200), 2);
    assert!(stats.status(429) >= 1, "{stats:?}");
    handle.shutdown().await;
}

#[tokio::test]
async fn sdk_create_returns_hex_id_and_refuses_empty_strings() {
    let handle = seeded().await;
    let client = sdk(&handle, false);
    let out = client
        .create_profile()
        .domain_name(DOMAIN)
        .first_name("Cy")
        .email_address("cy@example.com")
        .send()
        .await
        .expect("create succeeds");
    let id = out.profile_id().to_string();
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    assert_eq!(
        profile_in(&handle, DOMAIN, &id),
        json!({"FirstName": "Cy", "EmailAddress": "cy@example.com"})
    );
    let err = refused!(
        client.create_profile().domain_name(DOMAIN).first_name(""),
        "empty first name",
    );
    assert!(err.is_bad_request_exception(), "{err:?}");
    handle.shutdown().await;
}

#[tokio::test]
async fn sdk_search_by_email_pages_through_all_e_mail_members() {
    let mut seed = seed();
    let profiles = &mut seed["domains"][DOMAIN]["profiles"];
    let members = [
        "EmailAddress",
        "PersonalEmailAddress",
        "BusinessEmailAddress",
    ];
    for i in 0..5u32 {
        let id = format!("{:032x}", 0xa0 + i);
        profiles[&id] = json!({ members[i as usize % 3]: "same@example.com" });
    }
    let handle = start_emulator(EmulatorConfig::default().with_seed(seed)).await;
    let client = sdk(&handle, false);
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let out = search(&client, "_email", "same@example.com")
            .max_results(2)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("search succeeds");
        pages += 1;
        for item in out.items() {
            found.push(item.profile_id().unwrap_or_default().to_string());
            assert_eq!(item.found_by_items()[0].key_name(), Some("_email"));
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(found.len(), 5);
    let by_attribute = search(&client, "Tier", "gold")
        .send()
        .await
        .expect("custom key search");
    assert_eq!(by_attribute.items().len(), 1);
    assert_eq!(by_attribute.items()[0].profile_id(), Some(P1));
    handle.shutdown().await;
}

#[tokio::test]
async fn sdk_batch_get_answers_found_profiles_and_an_error_per_missing_id() {
    let handle = seeded().await;
    let client = sdk(&handle, false);
    let out = batch(&client)
        .profile_ids(P2)
        .profile_ids(MISSING)
        .profile_ids(P1)
        .profile_ids(P2)
        .send()
        .await
        .expect("batch get succeeds");
    let ids: Vec<_> = out.profiles().iter().map(|p| p.profile_id()).collect();
    assert_eq!(
        ids,
        [Some(P2), Some(P1)],
        "request order, a repeated id once"
    );
    let ann = &out.profiles()[1];
    assert_eq!(ann.first_name(), Some("Ann"));
    assert_eq!(ann.email_address(), Some("ann@example.com"));
    assert_eq!(ann.address().and_then(|a| a.city()), Some("Paris"));
    assert_eq!(
        ann.attributes()
            .and_then(|a| a.get("Tier"))
            .map(String::as_str),
        Some("gold")
    );
    assert!(ann.found_by_items().is_empty());
    assert_eq!(out.errors().len(), 1);
    let error = &out.errors()[0];
    assert_eq!(
        (error.profile_id(), error.code(), error.message()),
        (MISSING, "ResourceNotFoundException", "Profile not found")
    );
    // The same profile as SearchProfiles returns it, but for FoundByItems.
    let searched = search(&client, "_profileId", P1)
        .send()
        .await
        .expect("search succeeds");
    let mut item = searched.items()[0].clone();
    item.found_by_items = None;
    assert_eq!(&item, ann);

    let err = refused!(
        client
            .batch_get_profile()
            .domain_name("NoSuchDomain")
            .profile_ids(P1),
        "unknown domain",
    );
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    assert!(err.message().is_some_and(|m| m.contains("NoSuchDomain")));
    let stats = handle.stats().operation("BatchGetProfile");
    assert_eq!((stats.status(200), stats.status(404)), (1, 1));
    handle.shutdown().await;
}

#[tokio::test]
async fn sdk_batch_get_refuses_21_ids_no_ids_and_a_bad_id() {
    let handle = seeded().await;
    let client = sdk(&handle, false);
    let twenty_one: Vec<String> = (0..21u32).map(|i| format!("{i:032x}")).collect();
    let err = refused!(
        batch(&client).set_profile_ids(Some(twenty_one.clone())),
        "21 ids",
    );
    assert!(err.is_bad_request_exception(), "{err:?}");
    assert_eq!(
        err.message(),
        Some(
            "1 validation error detected: Value at 'profileIds' failed to satisfy constraint: Member must have length less than or equal to 20"
        )
    );
    let twenty = batch(&client)
        .set_profile_ids(Some(twenty_one[..20].to_vec()))
        .send()
        .await
        .expect("20 ids are fine");
    assert_eq!(twenty.errors().len(), 20);

    let err = refused!(batch(&client).set_profile_ids(Some(Vec::new())), "no ids",);
    assert!(err.is_bad_request_exception(), "{err:?}");
    assert!(
        err.message()
            .is_some_and(|m| m.contains("'profileIds'") && m.contains("greater than or equal to 1")),
        "{err:?}"
    );

    let err = refused!(
        batch(&client)
            .profile_ids(P1)
            .profile_ids("0123456789ABCDEF0123456789ABCDEF"),
        "upper-case id",
    );
    assert!(err.is_bad_request_exception(), "{err:?}");
    assert_eq!(
        err.message(),
        Some(
            "1 validation error detected: Value at 'profileIds.2' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-f0-9]{32}"
        )
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn sdk_batch_get_is_throttled_by_its_own_quota() {
    let handle = seeded_with(|c| c.with_quota("BatchGetProfile", 0.1, 1)).await;
    let client = sdk(&handle, false);
    let batch = || batch(&client).profile_ids(P1);
    batch().send().await.expect("first request fits the burst");
    let err = refused!(batch(), "second is throttled");
    assert!(err.is_throttling_exception(), "{err:?}");
    update(&client, P1)
        .first_name("Z")
        .send()
        .await
        .expect("UpdateProfile has its own bucket");
    assert_one_accepted_one_throttled(&handle, "BatchGetProfile");
    handle.shutdown().await;
}

#[tokio::test]
async fn sdk_batch_get_reports_an_injected_per_id_error_and_serves_the_rest() {
    let handle = seeded_with(|c| c.with_batch_error(P2)).await;
    let client = sdk(&handle, false);
    let out = batch(&client)
        .profile_ids(P1)
        .profile_ids(P2)
        .profile_ids(MISSING)
        .send()
        .await
        .expect("batch get succeeds");
    assert_eq!(out.profiles().len(), 1);
    assert_eq!(out.profiles()[0].profile_id(), Some(P1));
    let errors: Vec<_> = out
        .errors()
        .iter()
        .map(|e| (e.profile_id(), e.code()))
        .collect();
    assert_eq!(
        errors,
        [
            (P2, "InternalServerException"),
            (MISSING, "ResourceNotFoundException")
        ]
    );
    handle.shutdown().await;
}

// ---- Raw protocol checks ----

#[tokio::test]
async fn unsigned_aws_request_is_access_denied() {
    let handle = seeded().await;
    let response = reqwest::Client::new()
        .put(format!(
            "{}/domains/{DOMAIN}/profiles",
            handle.endpoint_url()
        ))
        .json(&json!({"ProfileId": P1, "FirstName": "X"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["x-amzn-ErrorType"],
        "AccessDeniedException"
    );
    let body: Value = response.json().await.expect("json");
    assert!(body["message"].is_string());
    assert_eq!(profile_in(&handle, DOMAIN, P1)["FirstName"], "Ann");
    handle.shutdown().await;
}

#[tokio::test]
async fn state_and_stats_are_readable_over_http() {
    let handle = seeded().await;
    let http = reqwest::Client::new();
    let url = handle.endpoint_url();
    let state = get_json(&http, format!("{url}/_emulator/state")).await;
    assert_eq!(state, seed());
    update(&sdk(&handle, false), P2)
        .send()
        .await
        .expect("update");
    let stats = get_json(&http, format!("{url}/_emulator/stats")).await;
    assert_eq!(stats["operations"]["UpdateProfile"]["by_status"]["200"], 1);
    assert_eq!(
        stats,
        serde_json::to_value(handle.stats()).expect("serializable")
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn default_state_has_example_domain_and_instance() {
    let handle = start_emulator(EmulatorConfig::default()).await;
    assert_eq!(
        handle.state(),
        json!({"domains": {"ExampleDomainName": {"profiles": {}}},
               "instances": {INSTANCE: {"users": {}}},
               "genesys": {"profiles": {}}})
    );
    handle.shutdown().await;
}

// ---- Expiry on the emulator's clock ----

const DAY: i64 = 86_400;
const P3: &str = "33333333333333333333333333333333";

/// Seconds since the epoch on the system clock.
fn epoch_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_secs() as i64)
}

/// [`DOMAIN`] with a 365-day expiration: P1 and P2 last updated 350 days ago, P3 with no time
/// (so updated at the emulator's start).
fn aging_seed() -> Value {
    let old = epoch_now() - 350 * DAY;
    json!({"domains": {DOMAIN: {
        "profiles": {
            P1: {"FirstName": "Ann", "EmailAddress": "ann@example.com"},
            P2: {"FirstName": "Bob"},
            P3: {"FirstName": "Cy"}
        },
        "expiration_days": 365,
        "updated": {P1: old, P2: old}
    }}})
}

#[tokio::test]
async fn sdk_profile_350_days_old_is_gone_30_days_later_unless_updated_meanwhile() {
    let handle = start_emulator(EmulatorConfig::default().with_seed(aging_seed())).await;
    let client = sdk(&handle, false);
    let domain = client.get_domain().domain_name(DOMAIN).send().await;
    assert_eq!(
        domain.expect("get domain").default_expiration_days(),
        Some(365)
    );
    let before = handle.now();
    update(&client, P2)
        .first_name("Bo")
        .send()
        .await
        .expect("update");
    let updated = handle.state()["domains"][DOMAIN]["updated"][P2].as_i64();
    assert!(updated.is_some_and(|t| t >= before), "{updated:?}");

    handle.set_clock_offset_days(30).expect("a valid offset");
    assert_eq!(handle.clock_offset_days(), 30);
    let found = batch(&client).profile_ids(P1).profile_ids(P2).send().await;
    let found = found.expect("batch get");
    let found_ids: Vec<_> = found
        .profiles()
        .iter()
        .filter_map(|p| p.profile_id())
        .collect();
    let missing: Vec<_> = found.errors().iter().map(|e| e.profile_id()).collect();
    assert_eq!((found_ids, missing), (vec![P2], vec![P1]));
    let searched = search(&client, "_email", "ann@example.com").send().await;
    assert!(searched.expect("search").items().is_empty());
    let gone = refused!(update(&client, P1).first_name("Ann"), "P1 expired");
    assert_eq!(gone.code(), Some("ResourceNotFoundException"));
    let state = handle.state();
    let profiles = &state["domains"][DOMAIN]["profiles"];
    assert!(profiles[P1].is_null() && !profiles[P2].is_null() && !profiles[P3].is_null());
    assert!(state["domains"][DOMAIN]["updated"][P1].is_null());
    let domain = client.get_domain().domain_name(DOMAIN).send().await;
    let count = domain
        .expect("get domain")
        .stats()
        .map(|s| s.profile_count());
    assert_eq!(count, Some(2));
    handle.shutdown().await;
}

#[tokio::test]
async fn clock_moves_over_http_and_expires_what_it_passes() {
    let handle = start_emulator(EmulatorConfig::default().with_seed(aging_seed())).await;
    let http = reqwest::Client::new();
    let url = format!("{}/_emulator/clock", handle.endpoint_url());
    let clock = get_json(&http, url.clone()).await;
    assert_eq!(clock["offset_days"], 0);
    // P3 counts as updated at the start: 366 days later it is gone too.
    let moved = http
        .post(&url)
        .json(&json!({"offset_days": 366}))
        .send()
        .await;
    let moved: Value = moved.expect("answered").json().await.expect("json");
    assert_eq!(moved["offset_days"], 366);
    let now = moved["now"].as_i64().unwrap_or_default();
    assert!((now - epoch_now() - 366 * DAY).abs() <= 2, "{moved}");
    assert_eq!(handle.state()["domains"][DOMAIN]["profiles"], json!({}));
    for body in [json!({"offset_days": "x"}), json!({"offset_days": 99_999})] {
        let refused = http.post(&url).json(&body).send().await.expect("answered");
        assert_eq!(refused.status(), 400, "{body}");
    }
    assert_eq!(handle.clock_offset_days(), 366);
    // API answers carry the emulator's clock in `Date`, as a service's carry its own.
    let answer = http
        .get(format!("{}/domains/{DOMAIN}", handle.endpoint_url()))
        .header("Authorization", FAKE_SIGV4)
        .send()
        .await
        .expect("answered");
    let date = answer.headers()["date"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let date = chrono::DateTime::parse_from_rfc2822(&date).map(|d| d.timestamp());
    assert!(
        date.is_ok_and(|d| (d - epoch_now() - 366 * DAY).abs() <= 2),
        "{date:?}"
    );
    handle.shutdown().await;
}

/// GETs `url` and reads its JSON answer.
async fn get_json(http: &reqwest::Client, url: String) -> Value {
    let response = http.get(url).send().await.expect("answered");
    response.json().await.expect("json")
}

// ---- Quotas, statistics and faults ----

async fn signed_update(http: &reqwest::Client, handle: &EmulatorHandle) -> reqwest::Result<u16> {
    let response = http
        .put(format!(
            "{}/domains/{DOMAIN}/profiles",
            handle.endpoint_url()
        ))
        .header("Authorization", FAKE_SIGV4)
        .json(&json!({"ProfileId": P1, "FirstName": "Q"}))
        .send()
        .await?;
    Ok(response.status().as_u16())
}

#[tokio::test]
async fn stats_prove_accepted_requests_stay_within_the_quota() {
    let handle = seeded_with(|c| c.with_quota("UpdateProfile", 5.0, 5)).await;
    let http = reqwest::Client::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(2300);
    while tokio::time::Instant::now() < until {
        signed_update(&http, &handle).await.expect("answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = handle.stats().operation("UpdateProfile");
    assert!(stats.status(429) > 0, "{stats:?}");
    assert_eq!(stats.accepted, stats.status(200));
    assert_eq!(
        stats.accepted_per_second.iter().sum::<u64>(),
        stats.accepted
    );
    // A bucket of 5 refilled at 5/s lets at most 5 + 5 through in any one-second window.
    assert!(stats.max_accepted_in_any_second <= 10, "{stats:?}");
    assert!(stats.max_accepted_in_any_second >= 5, "{stats:?}");
    assert!(
        stats.accepted_per_second.iter().all(|n| *n <= 10),
        "{stats:?}"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn connect_default_quota_is_two_per_second_with_burst_five() {
    let handle = seeded().await;
    let http = reqwest::Client::new();
    let url = format!("{}/users/{INSTANCE}/{USER}", handle.endpoint_url());
    let started = std::time::Instant::now();
    let mut accepted = 0;
    loop {
        let response = http
            .get(&url)
            .header("Authorization", FAKE_SIGV4)
            .send()
            .await
            .expect("answered");
        if response.status() != 429 {
            assert_eq!(response.status(), 200);
            accepted += 1;
            assert!(accepted <= 20, "never throttled");
            continue;
        }
        assert_eq!(
            response.headers()["x-amzn-ErrorType"],
            "ThrottlingException"
        );
        assert!(response.headers().get("Retry-After").is_none());
        let body: Value = response.json().await.expect("json");
        assert!(body["Message"].is_string());
        break;
    }
    // The burst of five, plus whatever 2/s refilled while the requests ran
    // (nothing, unless this machine is very slow).
    let refilled = (started.elapsed().as_secs_f64() * 2.0).floor() as usize;
    assert!(
        (5..=5 + refilled).contains(&accepted),
        "{accepted} accepted before the first throttle"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn throttle_carries_retry_after_when_asked() {
    let config = EmulatorConfig {
        retry_after: true,
        ..EmulatorConfig::default()
            .with_seed(seed())
            .with_quota("UpdateProfile", 0.5, 1)
    };
    let handle = start_emulator(config).await;
    let http = reqwest::Client::new();
    assert_eq!(signed_update(&http, &handle).await.expect("answered"), 200);
    let response = http
        .put(format!(
            "{}/domains/{DOMAIN}/profiles",
            handle.endpoint_url()
        ))
        .header("Authorization", FAKE_SIGV4)
        .json(&json!({"ProfileId": P1}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["Retry-After"], "2");
    let millis: u64 = response.headers()["x-amz-retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("milliseconds");
    assert!((1500..=2000).contains(&millis), "{millis}");
    handle.shutdown().await;
}

async fn count_500s(seed_value: u64) -> u64 {
    let handle = seeded_with(|c| c.with_faults(faults(0.5, 0.0, seed_value))).await;
    let http = reqwest::Client::new();
    for _ in 0..40 {
        signed_update(&http, &handle).await.expect("answered");
    }
    let stats = handle.stats().operation("UpdateProfile");
    assert_eq!(stats.requests, 40);
    handle.shutdown().await;
    stats.status(500)
}

#[tokio::test]
async fn injected_errors_repeat_with_the_same_seed() {
    let first = count_500s(42).await;
    assert_eq!(first, count_500s(42).await);
    assert!((8..=32).contains(&first), "{first} of 40");
}

#[tokio::test]
async fn injected_500_is_classified_by_the_sdk() {
    let handle = seeded_with(|c| c.with_faults(faults(1.0, 0.0, 0))).await;
    let err = refused!(update(&sdk(&handle, false), P1), "fault");
    assert!(err.is_internal_server_exception(), "{err:?}");
    handle.shutdown().await;
}

#[tokio::test]
async fn dropped_connection_is_a_connection_error_and_latency_is_added() {
    let faults = FaultConfig {
        drop_rate: 1.0,
        latency: Duration::from_millis(150),
        ..FaultConfig::default()
    };
    let handle = seeded_with(|c| c.with_faults(faults)).await;
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    let err = signed_update(&http, &handle).await.expect_err("dropped");
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(err.is_request() || err.is_connect(), "{err:?}");
    let stats = handle.stats().operation("UpdateProfile");
    assert_eq!((stats.requests, stats.dropped), (1, 1));
    // Read-back routes never see faults.
    let state = http
        .get(format!("{}/_emulator/state", handle.endpoint_url()))
        .send()
        .await
        .expect("state is not faulted");
    assert_eq!(state.status(), 200);
    handle.shutdown().await;
}

// ---- Genesys UCS profiles over plain HTTP ----

const GENESYS_ID: &str = "00027a52JCGY000M";

struct Genesys {
    http: reqwest::Client,
    url: String,
}

impl Genesys {
    fn new(handle: &EmulatorHandle) -> Genesys {
        Genesys {
            http: reqwest::Client::new(),
            url: format!("{}/profiles", handle.endpoint_url()),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .header("X-Genesys-TenantId", "1")
    }

    async fn put(&self, id: &str, body: Value) -> reqwest::Response {
        self.request(reqwest::Method::PUT, &format!("/{id}"))
            .json(&body)
            .send()
            .await
            .expect("answered")
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn genesys_put_overwrites_every_attribute_and_keeps_extensions_when_absent() {
    let handle = seeded().await;
    let genesys = Genesys::new(&handle);
    let response = genesys
        .put(GENESYS_ID, json!({"FirstName": "Robert"}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        genesys_profile(&handle, GENESYS_ID),
        json!({"FirstName": "Robert", "Address": {"Type": 1, "City": "Hollywood"}})
    );
    let (status, body) = genesys.get(&format!("/{GENESYS_ID}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"customer_id": GENESYS_ID, "FirstName": "Robert"})
    );
    let (_, body) = genesys
        .get(&format!("/{GENESYS_ID}?extensions=Address"))
        .await;
    assert_eq!(body["Address"]["City"], "Hollywood");
    handle.shutdown().await;
}

#[tokio::test]
async fn genesys_put_with_extensions_replaces_the_whole_set() {
    let handle = seeded().await;
    let genesys = Genesys::new(&handle);
    let body = json!({"FirstName": "Bruce", "EmailAddress": ["b1@x.com", "b2@x.com"],
                      "Phones": [{"Number": "1"}, {"Number": "2"}]});
    assert_eq!(genesys.put(GENESYS_ID, body.clone()).await.status(), 200);
    assert_eq!(genesys_profile(&handle, GENESYS_ID), body);
    handle.shutdown().await;
}

#[tokio::test]
async fn genesys_create_then_duplicate() {
    let handle = seeded().await;
    let genesys = Genesys::new(&handle);
    let create = |body: Value| {
        genesys
            .request(reqwest::Method::POST, "")
            .json(&body)
            .send()
    };
    let response = create(json!({"customer_id": "NEW1", "FirstName": "N"}))
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
    assert_eq!(
        handle.state()["genesys"]["profiles"]["NEW1"],
        json!({"FirstName": "N"})
    );
    let again = create(json!({"customer_id": "NEW1"}))
        .await
        .expect("answered");
    assert_eq!(again.status(), 400);
    let too_long = create(json!({"customer_id": "x".repeat(17)}))
        .await
        .expect("answered");
    assert_eq!(too_long.status(), 400);
    handle.shutdown().await;
}

#[tokio::test]
async fn genesys_writes_before_a_profile_schema_are_forbidden() {
    let mut seed = seed();
    seed["genesys"]["schema"] = json!(false);
    let handle = start_emulator(EmulatorConfig::default().with_seed(seed)).await;
    let genesys = Genesys::new(&handle);
    let response = genesys
        .put(GENESYS_ID, json!({"FirstName": "Robert"}))
        .await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("a JSON error");
    assert!(
        body["message"].as_str().unwrap().contains("profile schema"),
        "{body}"
    );
    let create = genesys
        .request(reqwest::Method::POST, "")
        .json(&json!({"customer_id": "NEW1"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(create.status(), 403);
    assert_eq!(handle.state()["genesys"]["schema"], json!(false));
    let (status, _) = genesys.get(&format!("/{GENESYS_ID}")).await;
    assert_eq!(status, 200, "reads still work");
    handle.shutdown().await;
}

#[tokio::test]
async fn genesys_errors_have_the_documented_statuses() {
    let handle = seeded_with(|c| c.with_genesys_auth("agent", "s3cret")).await;
    let genesys = Genesys::new(&handle);
    let path = format!("/{GENESYS_ID}");
    // 401: credentials missing, then wrong.
    let (status, body) = genesys.get(&path).await;
    assert_eq!(status, 401);
    assert!(body["exception"].is_string() && body["message"].is_string());
    let wrong = genesys
        .request(reqwest::Method::GET, &path)
        .basic_auth("agent", Some("nope"))
        .send()
        .await
        .expect("answered");
    assert_eq!(wrong.status(), 401);
    let authed = |method: reqwest::Method, path: &str| {
        genesys
            .request(method, path)
            .basic_auth("agent", Some("s3cret"))
    };
    let ok = authed(reqwest::Method::GET, &path)
        .send()
        .await
        .expect("answered");
    assert_eq!(ok.status(), 200);
    // 400: wrong tenant, with the documented message.
    let tenant = genesys
        .http
        .get(format!("{}{path}", genesys.url))
        .basic_auth("agent", Some("s3cret"))
        .header("X-Genesys-TenantId", "7")
        .send()
        .await
        .expect("answered");
    assert_eq!(tenant.status(), 400);
    let body: Value = tenant.json().await.expect("json");
    assert_eq!(body["message"], "Invalid tenant specified : 7");
    // 404, 405, 415.
    let missing = authed(reqwest::Method::GET, "/NOPE")
        .send()
        .await
        .expect("answered");
    assert_eq!(missing.status(), 404);
    // DELETE is served (mirror mode); PATCH is not.
    let patch = authed(reqwest::Method::PATCH, &path)
        .send()
        .await
        .expect("answered");
    assert_eq!(patch.status(), 405);
    let text = authed(reqwest::Method::PUT, &path)
        .header("Content-Type", "text/plain")
        .body("FirstName=X")
        .send()
        .await
        .expect("answered");
    assert_eq!(text.status(), 415);
    assert_eq!(genesys_profile(&handle, GENESYS_ID)["FirstName"], "Bruce");
    handle.shutdown().await;
}

// ---- The AWS CLI, a client nobody here wrote ----

/// The AWS CLI against this emulator.
fn aws(cli: AwsCli, handle: &EmulatorHandle) -> AwsCli {
    cli.at(&handle.endpoint_url())
}

#[tokio::test]
async fn aws_cli_customer_profiles_update_and_search() {
    let Some(cli) = AwsCli::find() else { return };
    let handle = seeded().await;
    let update = [
        "customer-profiles",
        "update-profile",
        "--domain-name",
        DOMAIN,
        "--profile-id",
        P1,
        "--first-name",
        "Annie",
        "--middle-name",
        "",
        "--attributes",
        "Tier=platinum",
    ];
    let search = [
        "customer-profiles",
        "search-profiles",
        "--domain-name",
        DOMAIN,
        "--key-name",
        "_email",
        "--values",
        "bob@example.com",
    ];
    let missing = [
        "customer-profiles",
        "update-profile",
        "--domain-name",
        DOMAIN,
        "--profile-id",
        MISSING,
    ];
    aws(cli, &handle)
        .check(vec![
            CliCase::json(&update, vec![("/ProfileId", json!(P1))]),
            CliCase::json(
                &search,
                vec![
                    ("/Items/0/ProfileId", json!(P2)),
                    ("/Items/0/FirstName", json!("Bob")),
                ],
            ),
            CliCase::fails(&missing, &["ResourceNotFoundException"]),
        ])
        .await;
    // Only the first call changed anything.
    assert_eq!(profile_in(&handle, DOMAIN, P1)["FirstName"], "Annie");
    assert_eq!(
        profile_in(&handle, DOMAIN, P1)["Attributes"],
        json!({"Tier": "platinum", "Points": "10"})
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn aws_cli_sts_get_caller_identity_and_arns_name_the_seeded_account() {
    let Some(cli) = AwsCli::find() else { return };
    let mut seed = seed();
    seed["account"] = json!("210987654321");
    let handle = start_emulator(EmulatorConfig::default().with_seed(seed)).await;
    let describe = ["connect", "describe-instance", "--instance-id", INSTANCE];
    aws(cli.clone(), &handle)
        .check(vec![
            CliCase::json(
                &["sts", "get-caller-identity"],
                vec![
                    ("/Account", json!("210987654321")),
                    ("/Arn", json!("arn:aws:iam::210987654321:user/emulator")),
                ],
            ),
            // The CLI signs for us-east-1: the instance lives there, in the seeded account.
            CliCase::json(
                &describe,
                vec![(
                    "/Instance/Arn",
                    json!(format!(
                        "arn:aws:connect:us-east-1:210987654321:instance/{INSTANCE}"
                    )),
                )],
            ),
        ])
        .await;
    handle.shutdown().await;
    let denied = seeded_with(|c| {
        c.with_account("109876543210")
            .with_denied("GetCallerIdentity")
    })
    .await;
    aws(cli, &denied)
        .check(vec![CliCase::fails(
            &["sts", "get-caller-identity"],
            &["AccessDenied", "sts:GetCallerIdentity"],
        )])
        .await;
    let stats = denied.stats().operation("GetCallerIdentity");
    assert_eq!(stats.status(403), 1);
    denied.shutdown().await;
}

/// `customer-profiles batch-get-profile` of these ids.
fn cli_batch_get(ids: &[&str]) -> Vec<String> {
    let mut args = vec![
        "customer-profiles",
        "batch-get-profile",
        "--domain-name",
        DOMAIN,
        "--profile-ids",
    ];
    args.extend_from_slice(ids);
    args.into_iter().map(str::to_owned).collect()
}

#[tokio::test]
async fn aws_cli_batch_get_profile_found_missing_and_refused() {
    let Some(cli) = AwsCli::find() else { return };
    let handle = seeded().await;
    let twenty_one: Vec<String> = (0..21u32).map(|i| format!("{i:032x}")).collect();
    let twenty_one: Vec<&str> = twenty_one.iter().map(String::as_str).collect();
    let printed = aws(cli, &handle)
        .check(vec![
            CliCase::json(
                &cli_batch_get(&[P1, MISSING]),
                vec![
                    ("/Profiles/0/ProfileId", json!(P1)),
                    ("/Profiles/0/Address/City", json!("Paris")),
                    (
                        "/Errors",
                        json!([{"Code": "ResourceNotFoundException", "Message": "Profile not found",
                                "ProfileId": MISSING}]),
                    ),
                ],
            ),
            CliCase::fails(
                &cli_batch_get(&twenty_one),
                &[
                    "BadRequestException",
                    "'profileIds'",
                    "less than or equal to 20",
                ],
            ),
            CliCase::fails(
                &cli_batch_get(&["not-a-profile-id"]),
                &["BadRequestException", "'profileIds.1'", "[a-f0-9]{32}"],
            ),
        ])
        .await;
    assert_eq!(printed[0]["Profiles"].as_array().map(Vec::len), Some(1));
    handle.shutdown().await;
}

#[tokio::test]
async fn aws_cli_connect_identity_replaces_whole_identity_and_describes() {
    let Some(cli) = AwsCli::find() else { return };
    let handle = seeded().await;
    let user = |command: &str, user: &str| {
        vec![
            "connect".to_owned(),
            command.to_owned(),
            "--user-id".to_owned(),
            user.to_owned(),
            "--instance-id".to_owned(),
            INSTANCE.to_owned(),
        ]
    };
    let update = |identity: &str| {
        let mut args = user("update-user-identity-info", USER);
        args.extend(["--identity-info".to_owned(), identity.to_owned()]);
        args
    };
    aws(cli, &handle)
        .check(vec![
            CliCase::silent(&update(
                "FirstName=Mary,LastName=Major,Email=marym@example.com",
            )),
            CliCase::json(
                &user("describe-user", USER),
                vec![
                    ("/User/Id", json!(USER)),
                    ("/User/Username", json!("mary")),
                    ("/User/IdentityInfo/Email", json!("marym@example.com")),
                ],
            ),
            CliCase::fails(
                &update("FirstName=Mary,LastName=Major,Mobile=555-0100"),
                &["InvalidParameterException", "identityInfo.mobile"],
            ),
            CliCase::fails(
                &user("describe-user", "nobody"),
                &["ResourceNotFoundException"],
            ),
        ])
        .await;
    // Mobile was left out of the accepted update, so it is cleared.
    assert_eq!(
        handle.state()["instances"][INSTANCE]["users"][USER]["IdentityInfo"],
        json!({"FirstName": "Mary", "LastName": "Major", "Email": "marym@example.com"})
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn aws_cli_connect_list_and_search_users() {
    let Some(cli) = AwsCli::find() else { return };
    let handle = seeded().await;
    let search = [
        "connect",
        "search-users",
        "--instance-id",
        INSTANCE,
        "--search-criteria",
        r#"{"StringCondition":{"FieldName":"Username","Value":"mary","ComparisonType":"EXACT"}}"#,
    ];
    let describe = |instance: &str| {
        vec![
            "connect".to_owned(),
            "describe-instance".to_owned(),
            "--instance-id".to_owned(),
            instance.to_owned(),
        ]
    };
    aws(cli, &handle)
        .check(vec![
            CliCase::json(
                &["connect", "list-users", "--instance-id", INSTANCE],
                vec![("/UserSummaryList/0/Username", json!("mary"))],
            ),
            CliCase::json(
                &search,
                vec![
                    ("/Users/0/Id", json!(USER)),
                    (
                        "/Users/0/IdentityInfo",
                        json!({"FirstName": "Mary", "LastName": "Major"}),
                    ),
                ],
            ),
            CliCase::json(
                &describe(INSTANCE),
                vec![
                    ("/Instance/Id", json!(INSTANCE)),
                    ("/Instance/IdentityManagementType", json!("CONNECT_MANAGED")),
                ],
            ),
            CliCase::fails(
                &describe("no-such-instance"),
                &["ResourceNotFoundException"],
            ),
        ])
        .await;
    handle.shutdown().await;
}

// ---- The command line ----

#[test]
fn cli_refuses_bad_arguments_with_exit_2() {
    let dir = Dir::new();
    for args in [
        vec!["emulator", "--quota", "NoSuchOperation=1"],
        vec!["emulator", "--error-rate", "2"],
        vec!["emulator", "--seed", "/nonexistent/seed.json"],
        vec!["emulator", "--batch-error-id", "NOT-HEX"],
        vec!["emulator", "--clock-offset-days", "40000"],
        vec!["emulator", "--account", "12345"],
    ] {
        let output = dir.run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
}

/// The command line's `--quota BatchGetProfile=...` and `--batch-error-id`, through the AWS CLI.
#[tokio::test]
async fn cli_batch_get_profile_quota_and_injected_error() {
    let Some(cli) = AwsCli::find() else { return };
    let dir = Dir::new();
    dir.write("seed.json", seed().to_string());
    let (mut child, url) = emulator_process(
        &dir,
        &[
            "emulator",
            "--seed",
            "seed.json",
            "--quota",
            "BatchGetProfile=0.01:1",
            "--batch-error-id",
            P2,
        ],
    )
    .await;
    let args = cli_batch_get(&[P1, P2]);
    cli.at(&url)
        .check(vec![
            CliCase::json(
                &args,
                vec![
                    ("/Profiles/0/ProfileId", json!(P1)),
                    ("/Errors/0/ProfileId", json!(P2)),
                    ("/Errors/0/Code", json!("InternalServerException")),
                ],
            ),
            // The second call is past the quota.
            CliCase::fails(&args, &["ThrottlingException"]),
        ])
        .await;
    child.kill().await;
}

/// `--clock-offset-days`: a profile past its expiration on the moved clock is gone at start.
#[test]
fn cli_clock_offset_expires_old_profiles_at_start() {
    let dir = Dir::new();
    dir.write("seed.json", aging_seed().to_string());
    let (mut child, url) = emulator_process_sync(
        &dir,
        &[
            "emulator",
            "--seed",
            "seed.json",
            "--clock-offset-days",
            "-1",
            "--account",
            "109876543210",
        ],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (clock, before) = runtime.block_on(async {
        let http = reqwest::Client::new();
        let clock = get_json(&http, format!("{url}/_emulator/clock")).await;
        let state = get_json(&http, format!("{url}/_emulator/state")).await;
        (clock, state)
    });
    child.kill();
    assert_eq!(clock["offset_days"], -1);
    assert_eq!(before["account"], "109876543210");
    assert_eq!(
        before["domains"][DOMAIN]["profiles"]
            .as_object()
            .map(|p| p.len()),
        Some(3)
    );
    let (mut child, url) = emulator_process_sync(
        &dir,
        &[
            "emulator",
            "--seed",
            "seed.json",
            "--clock-offset-days",
            "20",
        ],
    );
    let after = runtime.block_on(get_json(
        &reqwest::Client::new(),
        format!("{url}/_emulator/state"),
    ));
    child.kill();
    let profiles = &after["domains"][DOMAIN]["profiles"];
    assert!(profiles[P1].is_null() && profiles[P2].is_null(), "{after}");
    assert!(!profiles[P3].is_null(), "{after}");
}

#[test]
fn cli_prints_the_endpoint_and_serves_the_seed() {
    let dir = Dir::new();
    dir.write("seed.json", seed().to_string());
    let (mut child, url) = emulator_process_sync(
        &dir,
        &[
            "emulator",
            "--seed",
            "seed.json",
            "--quota",
            "UpdateProfile=10:20",
        ],
    );
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let state: Value = runtime.block_on(async {
        reqwest::get(format!("{url}/_emulator/state"))
            .await
            .expect("answered")
            .json()
            .await
            .expect("json")
    });
    child.kill();
    assert_eq!(state, seed());
}
