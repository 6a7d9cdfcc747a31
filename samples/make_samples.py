#!/usr/bin/env python3
"""Generate profilesync's bundled sample data: CRM exports and a matching emulator seed.

Run from anywhere with Python 3.8+ (standard library only); the output goes next to this
script and is byte-for-byte the same on every run (one ``random.Random(20261129)`` drives
everything, and nothing depends on hash order, the clock or the locale):

    python3 samples/make_samples.py

Files written (see samples/README.md for the list of deliberately invalid records):

``customers.csv``
    300 CRM customers, messy the way real exports are: UTF-8 BOM, CRLF line ends, names in
    NFD, phones in several formats, stray spaces and capitals in e-mails, blank cells, quoted
    notes with commas, doubled quotes and embedded newlines, and 8 invalid records.
``customers.jsonl``
    The same 300 records as nested JSON Lines; blanks become ``null`` or ``""``; the record
    with a missing CSV column becomes a truncated, unparseable line.
``agents.csv``
    40 contact-center agents (Amazon Connect users), 3 of them invalid.
``genesys.csv``
    60 Genesys UCS customers, with ";"-separated e-mail lists; 1 invalid customer_id.
``seed.json``
    Initial emulator state (the ``--seed`` shape in shared/product.md) for all three targets.
    Each seeded record is built from the *canonical* value of the record, that is what the
    configs in config/ map the messy cell to (trimmed lowercase e-mail, E.164 phone, ISO
    date, NFC names), so about two thirds of the records plan as ``unchanged``; the rest
    differ in one or two fields so that ``plan`` has a diff to show.

How a record is made: ``make_*`` draws a canonical record, ``*_cells`` renders it messily,
``seed_*`` renders the target's stored state. Invalid records get their defect applied to
the rendered cells only, so their seed entry (if any) still holds the canonical values, and a
test can check that an invalid record left the target untouched.
"""

import csv
import io
import json
import random
import unicodedata
import uuid
from datetime import date, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent
RNG = random.Random(20261129)

DOMAIN = "ExampleDomainName"
INSTANCE_ID = "11111111-2222-3333-4444-555555555555"
GENESYS_TENANT = 1
SOURCE_ATTRIBUTE = "crm-nightly"  # the constant config/customer-profiles.toml writes

# ---------------------------------------------------------------------------------------------
# Vocabulary (all fictional)
# ---------------------------------------------------------------------------------------------

# (first name, gender); accented names are written here in NFC and decomposed on output.
FIRST_NAMES = [
    ("James", "M"), ("Mary", "F"), ("Robert", "M"), ("Patricia", "F"), ("John", "M"),
    ("Jennifer", "F"), ("Michael", "M"), ("Linda", "F"), ("David", "M"), ("Elizabeth", "F"),
    ("William", "M"), ("Barbara", "F"), ("Richard", "M"), ("Susan", "F"), ("Joseph", "M"),
    ("Jessica", "F"), ("Thomas", "M"), ("Sarah", "F"), ("Daniel", "M"), ("Karen", "F"),
    ("Matthew", "M"), ("Nancy", "F"), ("Anthony", "M"), ("Lisa", "F"), ("Mark", "M"),
    ("Emily", "F"), ("Kevin", "M"), ("Ashley", "F"), ("Brian", "M"), ("Michelle", "F"),
    ("Wei", "M"), ("Mei", "F"), ("Hiroshi", "M"), ("Yuki", "F"), ("Arjun", "M"),
    ("Priya", "F"), ("Kwame", "M"), ("Amara", "F"), ("Omar", "M"), ("Fatima", "F"),
    ("Ana", "F"), ("Carlos", "M"), ("Maria", "F"), ("Luis", "M"), ("Grace", "F"),
    ("José", "M"), ("Zoë", "F"), ("Renée", "F"), ("François", "M"), ("Chloé", "F"),
    ("André", "M"), ("Inés", "F"), ("Noël", "M"), ("Björn", "M"), ("Léa", "F"),
    ("Héctor", "M"), ("Raúl", "M"), ("Sofía", "F"), ("Lucía", "F"), ("Jürgen", "M"),
    ("Anaïs", "F"), ("Mónica", "F"), ("Ramón", "M"), ("Céline", "F"), ("Hélène", "F"),
]

LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson",
    "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White", "Harris",
    "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott",
    "Hill", "Green", "Adams", "Baker", "Nelson", "Carter", "Mitchell", "Roberts", "Turner",
    "Phillips", "Campbell", "Parker", "Evans", "Chen", "Wang", "Kim", "Park", "Nakamura",
    "Tanaka", "Patel", "Shah", "Okafor", "Mensah", "Haddad", "O'Brien", "McAllister",
    "García", "López", "Peña", "Núñez", "Gómez", "Müller", "Côté", "Lefèvre", "Brontë",
    "Jiménez", "Martínez", "Hernández", "Ibáñez", "Schröder", "Nguyễn", "Trần", "Da Silva",
]

NICKNAMES = {"Robert": "Bob", "William": "Bill", "Elizabeth": "Liz", "Jennifer": "Jen",
             "Michael": "Mike", "Patricia": "Pat", "Daniel": "Dan", "Joseph": "Joe",
             "Matthew": "Matt", "Anthony": "Tony", "Richard": "Rick", "Thomas": "Tom"}

# area code -> [(city, state, ZIP prefix)]; area codes and exchanges are valid NANP numbers.
CITIES = {
    "206": [("Seattle", "WA", "981")],
    "425": [("Bellevue", "WA", "980"), ("Redmond", "WA", "980"), ("Kirkland", "WA", "980")],
    "312": [("Chicago", "IL", "606")],
    "617": [("Boston", "MA", "021"), ("Cambridge", "MA", "021")],
    "415": [("San Francisco", "CA", "941")],
    "646": [("New York", "NY", "100")],
    "303": [("Denver", "CO", "802")],
    "512": [("Austin", "TX", "787")],
    "503": [("Portland", "OR", "972")],
    "404": [("Atlanta", "GA", "303")],
}
AREA_CODES = list(CITIES)

STREETS = ["Pine St", "Maple Ave", "Oak Dr", "Cedar Ln", "Lakeview Blvd", "2nd Ave",
           "Elm St", "Harbor Way", "Sunset Rd", "Washington St", "Main St", "Park Pl",
           "Willow Ct", "Ridge Rd", "Madison Ave", "Juniper Way", "Broadway", "Hillside Ter"]

EMAIL_DOMAINS = ["example.com", "example.net", "example.org"]
TIERS = ["Bronze", "Silver", "Gold", "Platinum"]
TIER_WEIGHTS = [45, 30, 17, 8]
TIER_POINTS = {"Bronze": (0, 2499), "Silver": (2500, 9999), "Gold": (10000, 24999),
               "Platinum": (25000, 90000)}
TAGS = ["vip", "newsletter", "sms-opt-in", "churn-risk", "paperless"]

PLAIN_NOTES = [
    "Prefers email contact",
    "Called about billing, resolved",
    "Do not call before 9am",
    "Spanish speaker, prefers agent who speaks Spanish",
    "Moved from Portland, updated address",
    "Asked to be removed from SMS, kept email",
    "Loyalty points adjusted, see ticket 48213",
    "VIP: route to priority queue",
]
# Notes that need quoting: commas, a doubled quote and an embedded newline.
MESSY_NOTES = [
    'Prefers email, not phone.\nSays "call after 5pm" only if urgent',
    'Complained about late delivery, refund issued.\nAgent note: "very patient", offer Gold upgrade',
    'Two accounts merged, old ID C9-4417.\nCustomer says "keep the Seattle address", confirmed',
]

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def nfd(text):
    return unicodedata.normalize("NFD", text)


def ascii_fold(text):
    """'Nguyễn' -> 'Nguyen': drop combining marks, keep letters for e-mail local parts."""
    return "".join(c for c in nfd(text) if not unicodedata.combining(c) and c.isalnum())


def weighted(rng, items, weights):
    return rng.choices(items, weights=weights, k=1)[0]


def new_phone(rng, area=None):
    """Ten digits: a real area code and a plausible exchange (not N11, not 555)."""
    area = area or rng.choice(AREA_CODES)
    while True:
        exchange = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
        if exchange[1:] != "11" and exchange not in ("555", "950", "958", "959", "976"):
            break
    return f"{area}{exchange}{rng.randint(0, 9999):04d}"


def e164(digits):
    return "+1" + digits


def render_phone(rng, digits):
    """One of the formats real CRM exports mix."""
    a, e, s = digits[:3], digits[3:6], digits[6:]
    return weighted(rng, [
        f"({a}) {e}-{s}", f"{a}-{e}-{s}", f"+1 {a}.{e}.{s}", digits, f"1-{a}-{e}-{s}",
        f"{a}.{e}.{s}",
    ], [30, 25, 15, 15, 8, 7])


def render_name(rng, name, nfd_share=0.7):
    """Accented names come out decomposed most of the time; some get a stray space."""
    if name != ascii_fold(name) and rng.random() < nfd_share:
        name = nfd(name)
    r = rng.random()
    if r < 0.03:
        return " " + name
    if r < 0.06:
        return name + " "
    return name


def render_email(rng, email):
    """Stray spaces and capitals, as typed into a CRM; canonical form is trim + lowercase."""
    local, domain = email.split("@")
    r = rng.random()
    if r < 0.20:
        local = ".".join(p.capitalize() for p in local.split("."))
    elif r < 0.25:
        local = local.upper()
    if rng.random() < 0.12:
        domain = domain.split(".")[0].capitalize() + "." + domain.split(".")[1].upper()
    text = f"{local}@{domain}"
    r = rng.random()
    if r < 0.08:
        text = f" {text} "
    elif r < 0.12:
        text = text + " "
    elif r < 0.15:
        text = "  " + text
    return text


def render_date(d):
    return d.strftime("%m/%d/%Y")


def random_date(rng, start, end):
    return start + timedelta(days=rng.randint(0, (end - start).days))


def unique_email(rng, first, last, used, domains=EMAIL_DOMAINS):
    f, l = ascii_fold(first).lower(), ascii_fold(last).lower()
    base = weighted(rng, [f"{f}.{l}", f"{f[0]}{l}", f"{f}{l}", f"{f}_{l}"], [50, 25, 15, 10])
    domain = rng.choice(domains)
    email = f"{base}@{domain}"
    while email in used:
        email = f"{base}{rng.randint(2, 99)}@{domain}"
    used.add(email)
    return email


def write_csv(path, header, rows, *, bom=False, crlf=False):
    """Write rows with minimal quoting; return the 1-based line where each record starts."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(header)
    starts, line = [], 1 + buf.getvalue().count("\n")
    for row in rows:
        before = len(buf.getvalue())
        writer.writerow(row)
        starts.append(line)
        line += buf.getvalue()[before:].count("\n")
    data = buf.getvalue().encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return starts


def write_text(path, text):
    path.write_bytes(text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# customers.csv / customers.jsonl / Customer Profiles seed
# ---------------------------------------------------------------------------------------------

CUSTOMER_COLUMNS = ["crm_id", "connect_profile_id", "first_name", "last_name", "email", "phone",
                    "mobile", "dob", "gender", "street", "city", "state", "postal_code",
                    "country", "loyalty_tier", "points", "notes"]
N_CUSTOMERS = 300

LONG_FIRST_NAME = (
    "Customer called three times about the duplicate charge on her March "
    "statement, agent pasted the case summary into the name field by mistake, refund "
    "approved by supervisor, follow up by email within five business days, do not "
    "transfer to collections, see case 48213 and 48290 for the history"
)

# record number -> (defect, what is wrong); spread over the file, one problem each.
CUSTOMER_DEFECTS = {
    17: ("bad_phone", 'phone "555-01" cannot be a phone number'),
    46: ("bad_date", 'dob "02/30/1985" is not a date (February 30)'),
    83: ("bad_email", "email has no @"),
    121: ("bad_profile_id", "connect_profile_id is uppercase with dashes, not 32 lowercase hex"),
    158: ("missing_column", "one field fewer (the mobile cell is missing, so later cells shift left)"),
    199: ("long_first_name", f"first_name is {len(LONG_FIRST_NAME)} characters "
                               "(UpdateProfile allows 255)"),
    236: ("bad_gender", 'gender "X" maps to nothing in the Gender enum (MALE|FEMALE|UNSPECIFIED)'),
    274: ("empty_crm_id", "crm_id (the [source] key) is empty"),
}
MESSY_NOTE_RECORDS = [9, 102, 187]  # notes with commas, a doubled quote and an embedded newline



def make_customer(rng, n, used_emails):
    first, gender = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    area = rng.choice(AREA_CODES)
    city, state, zip_prefix = rng.choice(CITIES[area])
    tier = weighted(rng, TIERS, TIER_WEIGHTS) if rng.random() > 0.05 else None
    points = None
    if rng.random() > 0.04:
        lo, hi = TIER_POINTS[tier or "Bronze"]
        points = rng.randint(lo, hi)
    unit = f" Apt {rng.randint(1, 40)}{rng.choice('ABCD')}" if rng.random() < 0.25 else ""
    postal = f"{zip_prefix}{rng.randint(1, 99):02d}"
    if rng.random() < 0.15:
        postal += f"-{rng.randint(1, 9999):04d}"
    if n in MESSY_NOTE_RECORDS:
        notes = MESSY_NOTES[MESSY_NOTE_RECORDS.index(n)]
    elif rng.random() < 0.15:
        notes = rng.choice(PLAIN_NOTES)
    else:
        notes = None
    return {
        "crm_id": f"C{n:04d}",
        "profile_id": f"{rng.getrandbits(128):032x}",
        "first": first,
        "last": last,
        "email": unique_email(rng, first, last, used_emails),
        "phone": new_phone(rng, area if rng.random() < 0.8 else None),
        "mobile": new_phone(rng) if rng.random() < 0.7 else None,
        "dob": random_date(rng, date(1940, 1, 1), date(2004, 12, 31)) if rng.random() > 0.08 else None,
        "gender": gender if rng.random() > 0.15 else None,
        "street": f"{rng.randint(1, 9999)} {rng.choice(STREETS)}{unit}",
        "city": city,
        "state": state,
        "postal_code": postal,
        "country": "US",
        "tier": tier,
        "points": points,
        "notes": notes,
        "tags": sorted(rng.sample(TAGS, k=weighted(rng, [0, 1, 2], [40, 40, 20])), key=TAGS.index),
    }


def customer_cells(rng, c):
    """The CRM's rendering of a canonical customer: one string per CSV column."""
    street = c["street"]
    if rng.random() < 0.06:
        street = street.replace(" ", "  ", 1)
    notes = c["notes"] or ""
    if notes and rng.random() < 0.2:
        notes += " "
    return {
        "crm_id": c["crm_id"],
        "connect_profile_id": c["profile_id"],
        "first_name": render_name(rng, c["first"]),
        "last_name": render_name(rng, c["last"]),
        "email": render_email(rng, c["email"]),
        "phone": render_phone(rng, c["phone"]),
        "mobile": render_phone(rng, c["mobile"]) if c["mobile"] else "",
        "dob": render_date(c["dob"]) if c["dob"] else "",
        "gender": c["gender"] or "",
        "street": street,
        "city": c["city"],
        "state": c["state"].lower() if rng.random() < 0.05 else c["state"],
        "postal_code": c["postal_code"],
        "country": weighted(rng, ["US", "USA", "United States", "us"], [82, 10, 5, 3]),
        "loyalty_tier": c["tier"] or "",
        "points": "" if c["points"] is None else str(c["points"]),
        "notes": notes,
    }


def apply_customer_defect(cells, defect, c):
    if defect == "bad_phone":
        cells["phone"] = "555-01"
    elif defect == "bad_date":
        cells["dob"] = "02/30/1985"
    elif defect == "bad_email":
        cells["email"] = c["email"].replace("@", ".")
    elif defect == "bad_profile_id":
        h = c["profile_id"].upper()
        cells["connect_profile_id"] = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    elif defect == "long_first_name":
        cells["first_name"] = LONG_FIRST_NAME
    elif defect == "bad_gender":
        cells["gender"] = "X"
    elif defect == "empty_crm_id":
        cells["crm_id"] = ""
    # "missing_column" is applied when the row is written.


def customer_json(rng, cells, c):
    """customers.jsonl shape; a blank cell becomes null or "" (both appear)."""

    def v(column):
        text = cells[column]
        if text != "":
            return text
        return None if rng.random() < 0.5 else ""

    points = cells["points"]
    return {
        "crm_id": cells["crm_id"],
        "connect_profile_id": cells["connect_profile_id"],
        "name": {"first": v("first_name"), "last": v("last_name")},
        "email": v("email"),
        "phones": {"home": v("phone"), "mobile": v("mobile")},
        "dob": v("dob"),
        "gender": v("gender"),
        "address": {"street": v("street"), "city": v("city"), "state": v("state"),
                    "postal_code": v("postal_code"), "country": v("country")},
        "loyalty": {"tier": v("loyalty_tier"), "points": int(points) if points else None},
        "notes": v("notes"),
        "tags": c["tags"],
    }


def seed_profile(c):
    """What the profile looks like once config/customer-profiles.toml has written it."""
    p = {"AccountNumber": c["crm_id"], "FirstName": c["first"], "LastName": c["last"],
         "EmailAddress": c["email"], "PhoneNumber": e164(c["phone"])}
    if c["mobile"]:
        p["MobilePhoneNumber"] = e164(c["mobile"])
    if c["dob"]:
        p["BirthDate"] = c["dob"].isoformat()
    if c["gender"]:
        p["Gender"] = {"M": "MALE", "F": "FEMALE"}[c["gender"]]
    p["Address"] = {"Address1": c["street"], "City": c["city"], "State": c["state"],
                    "PostalCode": c["postal_code"], "Country": c["country"]}
    attrs = {}
    if c["tier"]:
        attrs["LoyaltyTier"] = c["tier"]
    if c["points"] is not None:
        attrs["LoyaltyPoints"] = str(c["points"])
    attrs["Source"] = SOURCE_ATTRIBUTE
    p["Attributes"] = attrs
    if c["notes"]:
        p["AdditionalInformation"] = c["notes"]
    return p


def drift_profile(rng, p, c, used_emails):
    """Make a seeded profile older than the CRM in one or two fields; return their names."""
    changes = []
    choices = ["email", "city", "points", "phone", "mobile", "last", "tier", "street",
               "first_nfd", "birth"]
    for kind in rng.sample(choices, k=weighted(rng, [1, 2], [65, 35])):
        if kind == "email":
            p["EmailAddress"] = unique_email(rng, c["first"], c["last"], used_emails)
            changes.append("EmailAddress")
        elif kind == "city":
            area = rng.choice([a for a in AREA_CODES if CITIES[a][0][1] != c["state"]])
            city, state, zip_prefix = rng.choice(CITIES[area])
            p["Address"].update(City=city, State=state,
                                PostalCode=f"{zip_prefix}{rng.randint(1, 99):02d}")
            changes.append("Address.City")
        elif kind == "points" and c["points"]:
            p["Attributes"]["LoyaltyPoints"] = str(max(0, c["points"] - rng.randint(50, 2000)))
            changes.append("Attributes.LoyaltyPoints")
        elif kind == "phone":
            p["PhoneNumber"] = e164(new_phone(rng))
            changes.append("PhoneNumber")
        elif kind == "mobile" and c["mobile"]:
            del p["MobilePhoneNumber"]
            changes.append("MobilePhoneNumber")
        elif kind == "last":
            p["LastName"] = rng.choice([n for n in LAST_NAMES if n != c["last"]])
            changes.append("LastName")
        elif kind == "tier" and c["tier"] and c["tier"] != "Bronze":
            p["Attributes"]["LoyaltyTier"] = TIERS[TIERS.index(c["tier"]) - 1]
            changes.append("Attributes.LoyaltyTier")
        elif kind == "street":
            p["Address"]["Address1"] = f"{rng.randint(1, 9999)} {rng.choice(STREETS)}"
            changes.append("Address.Address1")
        elif kind == "first_nfd" and c["first"] != ascii_fold(c["first"]):
            p["FirstName"] = nfd(c["first"])  # written by an older import that did not normalise
            changes.append("FirstName")
        elif kind == "birth" and c["dob"]:
            del p["BirthDate"]
            changes.append("BirthDate")
    return changes


def build_customers(rng):
    used_emails = set()
    customers, csv_rows, json_lines = [], [], []
    for n in range(1, N_CUSTOMERS + 1):
        c = make_customer(rng, n, used_emails)
        cells = customer_cells(rng, c)
        defect = CUSTOMER_DEFECTS.get(n, (None,))[0]
        apply_customer_defect(cells, defect, c)
        row = [cells[col] for col in CUSTOMER_COLUMNS]
        obj = customer_json(rng, cells, c)
        if defect == "missing_column":
            row.pop(CUSTOMER_COLUMNS.index("mobile"))
            line = json.dumps({"crm_id": c["crm_id"], "connect_profile_id": c["profile_id"],
                               "name": {}}, ensure_ascii=False)
            line = line[: line.index('"name": {') + len('"name": {')]  # truncated mid-object
        else:
            line = json.dumps(obj, ensure_ascii=False)
        customers.append((c, defect))
        csv_rows.append(row)
        json_lines.append(line)

    starts = write_csv(OUT / "customers.csv", CUSTOMER_COLUMNS, csv_rows, bom=True, crlf=True)
    write_text(OUT / "customers.jsonl", "\n".join(json_lines) + "\n")

    # Seed: ~85% of the valid records, plus every invalid one whose ProfileId is well formed
    # (so a test can assert that invalid records left their profile untouched).
    profiles, drifted = {}, 0
    for c, defect in customers:
        if defect == "bad_profile_id":
            continue
        if defect is None and rng.random() >= 0.85:
            continue
        p = seed_profile(c)
        if rng.random() < 0.2:
            p["Attributes"]["PreferredChannel"] = rng.choice(["voice", "chat", "email"])
        if c["notes"] is None and rng.random() < 0.1:
            p["AdditionalInformation"] = "Imported from legacy IVR"  # CSV blank + keep: unchanged
        if defect is None and rng.random() < 0.34 and drift_profile(rng, p, c, used_emails):
            drifted += 1
        profiles[c["profile_id"]] = p
    return starts, profiles, drifted


# ---------------------------------------------------------------------------------------------
# agents.csv / Connect users seed
# ---------------------------------------------------------------------------------------------

AGENT_COLUMNS = ["user_id", "username", "first_name", "last_name", "email", "secondary_email",
                 "mobile"]
N_AGENTS = 40
AGENT_EMAIL_CHANGE = 29  # the seed holds an older Email: the allow_email_change guard fires
LONG_LAST_NAME = ("Montgomery-Fairweather " * 14)[:301]
AGENT_DEFECTS = {
    7: ("bad_mobile", 'mobile "ext. 4417" is not a phone number'),
    22: ("bad_secondary_email", 'secondary_email domain has no dot ("@examplenet")'),
    35: ("long_last_name", f"last_name is {len(LONG_LAST_NAME)} characters (Connect allows "
                           "256 with its own identity management, 300 in the model)"),
}


def make_agent(rng, n, used_usernames, used_emails):
    first, _ = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    username = (ascii_fold(first)[0] + ascii_fold(last)).lower()
    while username in used_usernames:
        username = f"{username}{rng.randint(2, 9)}"
    used_usernames.add(username)
    work = f"{ascii_fold(first).lower()}.{ascii_fold(last).lower()}@example.com"
    while work in used_emails:
        work = work.replace("@", f"{rng.randint(2, 9)}@")
    used_emails.add(work)
    return {
        "user_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "username": username,
        "first": first,
        "last": last,
        "email": work,
        "secondary": unique_email(rng, first, last, used_emails, ["example.net", "example.org"])
        if rng.random() < 0.8 else None,
        "mobile": new_phone(rng) if rng.random() < 0.85 else None,
    }


def build_agents(rng):
    used_usernames, used_emails = set(), set()
    agents, rows = [], []
    for n in range(1, N_AGENTS + 1):
        a = make_agent(rng, n, used_usernames, used_emails)
        cells = {
            "user_id": a["user_id"],
            "username": a["username"],
            "first_name": render_name(rng, a["first"], nfd_share=0.6),
            "last_name": render_name(rng, a["last"], nfd_share=0.6),
            "email": render_email(rng, a["email"]) if rng.random() < 0.3 else a["email"],
            "secondary_email": render_email(rng, a["secondary"]) if a["secondary"] else "",
            "mobile": render_phone(rng, a["mobile"]) if a["mobile"] else "",
        }
        defect = AGENT_DEFECTS.get(n, (None,))[0]
        if defect == "bad_mobile":
            cells["mobile"] = "ext. 4417"
        elif defect == "bad_secondary_email":
            local = ascii_fold(a["first"]).lower()[0] + ascii_fold(a["last"]).lower()
            cells["secondary_email"] = f"{local}@examplenet"
        elif defect == "long_last_name":
            cells["last_name"] = LONG_LAST_NAME
        agents.append((n, a))
        rows.append([cells[c] for c in AGENT_COLUMNS])
    starts = write_csv(OUT / "agents.csv", AGENT_COLUMNS, rows)

    users, drifted = {}, 0
    for n, a in agents:
        info = {"FirstName": a["first"], "LastName": a["last"], "Email": a["email"]}
        if a["secondary"]:
            info["SecondaryEmail"] = a["secondary"]
        if a["mobile"]:
            info["Mobile"] = e164(a["mobile"])
        if n == AGENT_EMAIL_CHANGE:
            # Name changed after marriage: a new work address, which the guard must stop.
            old_last = "Ito" if a["last"] != "Ito" else "Sato"
            info["LastName"] = old_last
            info["Email"] = f"{ascii_fold(a['first']).lower()}.{old_last.lower()}@example.com"
            drifted += 1
        elif n not in AGENT_DEFECTS and rng.random() < 0.33:
            kind = rng.choice(["mobile", "secondary", "first", "last"])
            if kind == "mobile" or (kind == "secondary" and not a["secondary"]):
                info["Mobile"] = e164(new_phone(rng))
            elif kind == "secondary":
                info.pop("SecondaryEmail")
            elif kind == "first":
                info["FirstName"] = NICKNAMES.get(a["first"], a["first"][:3])
            else:
                info["LastName"] = rng.choice([x for x in LAST_NAMES if x != a["last"]])
            drifted += 1
        users[a["user_id"]] = {"Id": a["user_id"], "Username": a["username"],
                               "IdentityInfo": info}
    return starts, users, drifted


# ---------------------------------------------------------------------------------------------
# genesys.csv / Genesys UCS seed
# ---------------------------------------------------------------------------------------------

GENESYS_COLUMNS = ["customer_id", "first_name", "last_name", "emails", "phone", "dob", "vip"]
N_GENESYS = 60
GENESYS_DEFECTS = {
    41: ("long_customer_id", "customer_id is 20 characters (UCS limits it to 16)"),
}
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def genesys_id(rng):
    """UCS-style id, e.g. 00027a52JCGY000M: 16 characters."""
    return ("0002" + "".join(rng.choice("0123456789abcdef") for _ in range(4))
            + "".join(rng.choice(UPPER) for _ in range(4)) + "000" + rng.choice(UPPER + "0123456789"))


def build_genesys(rng):
    used_emails = set()
    customers, rows = [], []
    for n in range(1, N_GENESYS + 1):
        first, _ = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        k = weighted(rng, [0, 1, 2, 3], [4, 55, 33, 8])
        emails = [unique_email(rng, first, last, used_emails) for _ in range(k)]
        phones = [new_phone(rng) for _ in range(weighted(rng, [1, 2], [90, 10]))]
        c = {
            "customer_id": genesys_id(rng),
            "first": first,
            "last": last,
            "emails": emails,
            "phones": phones,
            "dob": random_date(rng, date(1935, 1, 1), date(2005, 12, 31)) if rng.random() > 0.1 else None,
            "vip": weighted(rng, ["Y", "N"], [20, 80]),
        }
        sep = weighted(rng, [";", "; "], [60, 40])
        cells = {
            "customer_id": c["customer_id"],
            "first_name": render_name(rng, first),
            "last_name": render_name(rng, last),
            "emails": sep.join(render_email(rng, e).strip() if rng.random() < 0.7
                               else render_email(rng, e) for e in emails),
            "phone": "; ".join(render_phone(rng, p) for p in phones),
            "dob": render_date(c["dob"]) if c["dob"] else "",
            "vip": c["vip"].lower() if rng.random() < 0.08 else c["vip"],
        }
        defect = GENESYS_DEFECTS.get(n, (None,))[0]
        if defect == "long_customer_id":
            cells["customer_id"] = c["customer_id"] + "7Q2X"
        customers.append((c, defect))
        rows.append([cells[col] for col in GENESYS_COLUMNS])
    starts = write_csv(OUT / "genesys.csv", GENESYS_COLUMNS, rows)

    valid = [c for c, defect in customers if defect is None]
    seeded = set(rng.sample(range(len(valid)), k=50))
    profiles, drifted = {}, 0
    for i, c in enumerate(valid):
        if i not in seeded:
            continue
        p = {"customer_id": c["customer_id"], "FirstName": c["first"], "LastName": c["last"]}
        if c["emails"]:
            p["EmailAddress"] = list(c["emails"])
        p["PhoneNumber"] = [e164(x) for x in c["phones"]]
        if c["dob"]:
            p["DOB"] = c["dob"].isoformat()
        p["VIP"] = c["vip"]
        p["Segment"] = weighted(rng, ["retail", "business", "premium"], [60, 25, 15])
        if rng.random() < 0.3:
            p["PreferredLanguage"] = rng.choice(["en", "es", "fr"])
        if rng.random() < 0.33:
            kind = rng.choice(["email", "phone", "vip", "last"])
            if kind == "email" and c["emails"]:
                old = unique_email(rng, c["first"], c["last"], used_emails)
                p["EmailAddress"] = [old] + p["EmailAddress"][1:]
            elif kind == "phone":
                p["PhoneNumber"] = [e164(new_phone(rng))]
            elif kind in ("vip", "email"):
                p["VIP"] = "N" if c["vip"] == "Y" else "Y"
            else:
                p["LastName"] = rng.choice([x for x in LAST_NAMES if x != c["last"]])
            drifted += 1
        profiles[c["customer_id"]] = p
    return starts, profiles, drifted


# ---------------------------------------------------------------------------------------------


def main():
    rng = RNG
    cust_starts, cust_profiles, cust_drift = build_customers(rng)
    agent_starts, users, agent_drift = build_agents(rng)
    gen_starts, gen_profiles, gen_drift = build_genesys(rng)

    seed = {
        "domains": {DOMAIN: {"profiles": cust_profiles}},
        "instances": {INSTANCE_ID: {"users": users}},
        "genesys": {"tenant_id": GENESYS_TENANT, "profiles": gen_profiles},
    }
    write_text(OUT / "seed.json", json.dumps(seed, ensure_ascii=False, indent=2) + "\n")

    print(f"customers: {N_CUSTOMERS} records, {len(cust_profiles)} seeded, {cust_drift} differ")
    for n, (_, what) in sorted(CUSTOMER_DEFECTS.items()):
        print(f"  invalid record {n:3d}  csv line {cust_starts[n - 1]:3d}  jsonl line {n:3d}  {what}")
    print(f"agents: {N_AGENTS} records, {len(users)} seeded, {agent_drift} differ "
          f"(record {AGENT_EMAIL_CHANGE} changes Email)")
    for n, (_, what) in sorted(AGENT_DEFECTS.items()):
        print(f"  invalid record {n:3d}  line {agent_starts[n - 1]:3d}  {what}")
    print(f"genesys: {N_GENESYS} records, {len(gen_profiles)} seeded, {gen_drift} differ")
    for n, (_, what) in sorted(GENESYS_DEFECTS.items()):
        print(f"  invalid record {n:3d}  line {gen_starts[n - 1]:3d}  {what}")


if __name__ == "__main__":
    main()
