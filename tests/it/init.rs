//! `profilesync init` (issue 19) on the headers of real export families: the config it
//! writes passes `check`, maps what a person would, and holds no value of the input.

use crate::support::Dir;

/// One export: its file name, target, bytes, and the lines the config must hold.
struct Family {
    name: &'static str,
    target: &'static str,
    file: &'static str,
    csv: &'static str,
    expect: &'static [&'static str],
}

const FAMILIES: &[Family] = &[
    // Salesforce Data Loader: API names, a BOM, CRLF, ISO dates, 18-character ids.
    Family {
        name: "salesforce",
        target: "customer-profiles",
        file: "sf.csv",
        csv: "\u{feff}Id,FirstName,LastName,Email,Phone,MobilePhone,Birthdate,MailingStreet,MailingCity,MailingState,MailingPostalCode,MailingCountry,Title\r\n\
              0035g00000AbCdEAAV,Annabel,Quintero,Annabel.Quintero@Example.com,(206) 555-0147,+1 206 234 0199,1980-07-12,12 Pike Street,Seattle,Washington,98101,United States,Director\r\n\
              0035g00000AbCdFAAV,Bertrand,Okafor,bertrand.okafor@example.org,206-555-0188,,1979-12-31,400 Broad Street,Tacoma,Washington,98402,United States,\r\n",
        expect: &[
            "key = \"Id\"",
            "search_key = \"_email\"\nsearch_column = \"Email\"",
            "FirstName = { from = \"FirstName\", transform = [\"trim\"] }",
            "EmailAddress = { from = \"Email\", transform = [\"trim\", \"lowercase\", \"email\"] }",
            "PhoneNumber = { from = \"Phone\", transform = [\"e164\"] }",
            "MobilePhoneNumber = { from = \"MobilePhone\", transform = [\"e164\"] }",
            "BirthDate = { from = \"Birthdate\" }   # header match; all 2 sampled values are YYYY-MM-DD",
            "\"Address.Address1\" = { from = \"MailingStreet\"",
            "\"Address.PostalCode\" = { from = \"MailingPostalCode\"",
            "phone_region = \"US\"",
            "# \"Attributes.Title\" = \"Title\"",
        ],
    },
    // HubSpot: labels with spaces and slashes, a ProfileId column kept from an earlier sync.
    Family {
        name: "hubspot",
        target: "customer-profiles",
        file: "hubspot.csv",
        csv: "Record ID,First Name,Last Name,Email,Phone Number,City,State/Region,Postal Code,Country/Region,Company Name,Connect Profile ID,Lifecycle Stage\n\
              51234001,Cordelia,Vasquez,cordelia.vasquez@example.com,+44 20 7946 0958,London,Greater London,EC1A 1BB,United Kingdom,Harrow Widgets,0123456789abcdef0123456789abcdef,evangelist\n\
              51234002,Desmond,Achebe,desmond.achebe@example.com,+44 161 496 0000,Manchester,Greater Manchester,M1 1AE,United Kingdom,Northern Gears,fedcba9876543210fedcba9876543210,prospect\n",
        expect: &[
            "key = \"Record ID\"",
            "id = \"Connect Profile ID\"   # holds ProfileIds",
            "LastName = { from = \"Last Name\"",
            "PhoneNumber = { from = \"Phone Number\", transform = [\"e164\"] }",
            "\"Address.State\" = { from = \"State/Region\"",
            "\"Address.Country\" = { from = \"Country/Region\"",
            "BusinessName = { from = \"Company Name\"",
            "# \"Attributes.Lifecycle Stage\" = \"Lifecycle Stage\"",
        ],
    },
    // Dynamics 365, from a European Excel: `;`, day-first dates, UK numbers.
    Family {
        name: "dynamics",
        target: "customer-profiles",
        file: "dynamics.csv",
        csv: "contactid;firstname;lastname;emailaddress1;telephone1;birthdate;address1_city;address1_postalcode\n\
              c0ffee01-0000-4000-8000-000000000001;Eleanor;Whitfield;eleanor.whitfield@example.co.uk;020 7946 0958;31/12/1979;Leeds;LS1 4AP\n\
              c0ffee01-0000-4000-8000-000000000002;Fergus;Lindqvist;fergus.lindqvist@example.co.uk;0161 496 0000;07/02/1985;York;YO1 7HH\n",
        expect: &[
            "delimiter = \";\"",
            "key = \"contactid\"",
            "phone_region = \"GB\"",
            "EmailAddress = { from = \"emailaddress1\"",
            "PhoneNumber = { from = \"telephone1\", transform = [\"e164\"] }",
            "BirthDate = { from = \"birthdate\", transform = [{ date = { from = \"%d/%m/%Y\", to = \"%Y-%m-%d\" } }] }",
            "\"Address.City\" = { from = \"address1_city\"",
        ],
    },
    // BambooHR into Connect users: `Employee #`, a preferred name, work and home e-mails.
    Family {
        name: "bamboohr",
        target: "connect-user",
        file: "bamboo.csv",
        csv: "Employee #,First Name,Last Name,Preferred Name,Work Email,Home Email,Mobile Phone,Hire Date,Job Title\n\
              E1042,Gwendolyn,Abernathy,Gwen,gwendolyn.abernathy@example.com,gwen.home@example.net,(206) 555-0147,03/15/2021,Team Lead\n\
              E1043,Horatio,Nakamura,,horatio.nakamura@example.com,,(206) 555-0188,11/02/2022,Agent\n",
        expect: &[
            "key = \"Employee #\"",
            "search_key = \"Username\"\nsearch_column = \"Work Email\"",
            "FirstName = { from = [\"Preferred Name\", \"First Name\"], transform = [\"trim\", \"nfc\"] }",
            "Email = { from = \"Work Email\", transform = [\"trim\", \"lowercase\", \"email\"] }",
            "SecondaryEmail = { from = \"Home Email\"",
            "Mobile = { from = \"Mobile Phone\", transform = [\"e164\"] }",
            "#   \"Job Title\"",
        ],
    },
    // A Workday report with only its header (no records yet): Workday's underscores.
    Family {
        name: "workday-header-only",
        target: "connect-user",
        file: "workday.csv",
        csv: "Employee_ID,User_ID,Legal_First_Name,Legal_Last_Name,Primary_Work_Email,Primary_Home_Email,Mobile_Phone\n",
        expect: &[
            "key = \"Employee_ID\"   # named like an id; no sampled records to confirm it is unique",
            "id = \"User_ID\"   # holds Connect UserIds",
            "FirstName = { from = \"Legal_First_Name\", transform = [\"trim\", \"nfc\"] }",
            "LastName = { from = \"Legal_Last_Name\"",
            "Email = { from = \"Primary_Work_Email\"",
            "SecondaryEmail = { from = \"Primary_Home_Email\"",
            "Mobile = { from = \"Mobile_Phone\"",
        ],
    },
    // Zoho into Genesys UCS: month-first dates (a day over 12 settles it), tab-delimited.
    Family {
        name: "zoho",
        target: "genesys-ucs",
        file: "zoho.tsv",
        csv: "Customer ID\tFirst Name\tLast Name\tEmail\tMobile\tDate of Birth\tMailing City\n\
              ZC00017\tIsadora\tFontaine\tisadora.fontaine@example.com\t(503) 836-1654\t06/26/1955\tPortland\n\
              ZC00018\tJasper\tOyelaran\tjasper.oyelaran@example.com\t(503) 836-1699\t01/05/1962\tSalem\n",
        expect: &[
            "delimiter = \"\\t\"",
            "id = \"Customer ID\"",
            "EmailAddress = { from = \"Email\"",
            "PhoneNumber = { from = \"Mobile\", transform = [\"e164\"] }",
            "DOB = { from = \"Date of Birth\", transform = [{ date = { from = \"%m/%d/%Y\", to = \"%Y-%m-%d\" } }] }",
            "# MailingCity = \"Mailing City\"",
        ],
    },
    // Zendesk users: dates whose day and month are all 12 or less stay for a person to
    // decide; a column of broken e-mails is vetoed by its values.
    Family {
        name: "zendesk",
        target: "customer-profiles",
        file: "zendesk.csv",
        csv: "id,external_id,name,email,alternate email,birthday\n\
              90210001,X-ALPHA-01,Kestrel Moreau,kestrel.moreau@example.com,not-an-address,01/02/1980\n\
              90210002,X-ALPHA-02,Linnea Sato,linnea.sato@example.com,also-not-one,03/04/1990\n",
        expect: &[
            "key = \"id\"",
            "# BirthDate = { from = \"birthday\", transform = [{ date = { from = \"%m/%d/%Y\", to = \"%Y-%m-%d\" } }] }   # synonym of BirthDate; day/month order is ambiguous",
            "EmailAddress = { from = \"email\"",
            "# \"Attributes.name\" = \"name\"",
        ],
    },
];

#[test]
fn init_writes_a_config_that_checks_maps_what_a_person_would_and_holds_no_value() {
    for family in FAMILIES {
        let dir = Dir::new();
        dir.write(family.file, family.csv);
        let run = dir.run(&["init", family.target, family.file, "--output", "c.toml"]);
        run.assert_exit(0);
        let config = std::fs::read_to_string(dir.path("c.toml")).unwrap();
        for line in family.expect {
            assert!(
                config.contains(line),
                "{}: {line:?} not in:\n{config}",
                family.name
            );
        }
        // No value of the input is in the config: only column names (the header) are.
        let mut values = csv::ReaderBuilder::new()
            .delimiter(if family.csv.contains('\t') {
                b'\t'
            } else if family.name == "dynamics" {
                b';'
            } else {
                b','
            })
            .from_reader(family.csv.as_bytes());
        for record in values.records() {
            for value in record.unwrap().iter().filter(|v| v.len() >= 3) {
                assert!(
                    !config.to_lowercase().contains(&value.to_lowercase()),
                    "{}: the value {value:?} is in the config:\n{config}",
                    family.name
                );
            }
        }
        let check = dir.run(&["check", "--config", "c.toml", "--ledger", "l.jsonl"]);
        assert_eq!(
            check.code(),
            0,
            "{}: check of the generated config: {}\n{config}",
            family.name,
            check.stderr()
        );
    }
}

#[test]
fn init_refuses_utf16_an_existing_output_and_an_unknown_target() {
    let dir = Dir::new();
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in "Id,Name\n1,Ana\n".encode_utf16() {
        utf16.extend(unit.to_le_bytes());
    }
    dir.write("u16.csv", utf16);
    let run = dir.run(&["init", "customer-profiles", "u16.csv"]);
    run.assert_exit(2)
        .assert_says("UTF-16")
        .assert_says("CSV UTF-8");

    dir.write("ok.csv", "Id,First Name\nC1,Ana\n");
    dir.write("c.toml", "mine");
    let run = dir.run(&["init", "customer-profiles", "ok.csv", "--output", "c.toml"]);
    run.assert_exit(2).assert_says("cannot create c.toml");
    assert_eq!(std::fs::read_to_string(dir.path("c.toml")).unwrap(), "mine");

    let run = dir.run(&["init", "salesforce", "ok.csv"]);
    run.assert_exit(2)
        .assert_says("expected one of customer-profiles");
    // Without --output the config goes to standard output.
    let run = dir.run(&["init", "genesys-ucs", "ok.csv"]);
    run.assert_exit(0);
    assert!(run.stdout().contains("kind = \"genesys-ucs\""));
}

/// JSON Lines (a Segment or CDP export): the objects' dotted paths stand for the header.
#[test]
fn init_reads_json_lines_by_their_dotted_paths() {
    let dir = Dir::new();
    dir.write(
        "people.jsonl",
        "{\"userId\":\"SEG-0001\",\"traits\":{\"firstName\":\"Marisol\",\"email\":\"Marisol.Quaid@Example.com\",\"phone\":\"+1 206 555 0147\",\"address\":{\"city\":\"Spokane\"}}}\n\
         {\"userId\":\"SEG-0002\",\"traits\":{\"firstName\":\"Nikolai\",\"email\":\"nikolai.brandt@example.com\",\"phone\":\"+1 206 555 0188\",\"address\":{\"city\":\"Olympia\"}}}\n",
    );
    dir.run(&[
        "init",
        "customer-profiles",
        "people.jsonl",
        "--output",
        "c.toml",
    ])
    .assert_exit(0);
    let config = std::fs::read_to_string(dir.path("c.toml")).unwrap();
    for line in [
        "key = \"userId\"",
        "FirstName = { from = \"traits.firstName\"",
        "EmailAddress = { from = \"traits.email\"",
        "PhoneNumber = { from = \"traits.phone\"",
        "\"Address.City\" = { from = \"traits.address.city\"",
    ] {
        assert!(config.contains(line), "{line:?} not in:\n{config}");
    }
    for value in ["SEG-0001", "Marisol", "Spokane", "555 0147", "Nikolai"] {
        assert!(!config.contains(value), "{value} is in the config");
    }
    let check = dir.run(&["check", "--config", "c.toml", "--ledger", "l.jsonl"]);
    assert_eq!(check.code(), 0, "{}\n{config}", check.stderr());
}
