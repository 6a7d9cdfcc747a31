#!/usr/bin/env python3
"""Generate a synthetic CRM export for the `check` benchmark.

Usage: gen_crm.py ROWS OUT.csv

Deterministic (fixed seed): 20 columns, the shapes of a real export (mixed-case e-mails with
stray spaces, US phones in several formats, MM/DD/YYYY dates, blank cells). Every row is
valid for bench/check-plain.toml and bench/check-phones.toml.
"""

import random
import sys

COLUMNS = [
    "crm_id", "profile_id", "first_name", "middle_name", "last_name", "email",
    "personal_email", "business_email", "phone", "mobile", "dob", "street", "city", "state",
    "postal_code", "country", "company", "account", "tier", "points",
]
FIRST = ["Ana", "Robert", "Maria", "James", "Léa", "Chen", "Fatima", "Oliver", "Sofia", "Noah"]
LAST = ["Lopez", "Moore", "Parker", "Robinson", "Nguyen", "Okafor", "Schmidt", "Rossi", "Kim"]
CITIES = [("Seattle", "WA", "206"), ("Chicago", "IL", "312"), ("Boston", "MA", "617"),
          ("Denver", "CO", "303"), ("Austin", "TX", "512"), ("New York", "NY", "646")]
PHONE_FORMATS = ["({a}) {e}-{n}", "{a}-{e}-{n}", "+1 {a}.{e}.{n}", "{a}{e}{n}"]


def main():
    rows, out = int(sys.argv[1]), sys.argv[2]
    rng = random.Random(20261129)
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(COLUMNS) + "\n")
        for i in range(1, rows + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            city, state, area = rng.choice(CITIES)
            user = f"{first[0]}{last}{i}".replace("é", "e")
            phone = rng.choice(PHONE_FORMATS).format(
                a=area, e=rng.randint(234, 899), n=f"{rng.randint(0, 9999):04d}")
            mobile = rng.choice(PHONE_FORMATS).format(
                a=area, e=rng.randint(234, 899), n=f"{rng.randint(0, 9999):04d}")
            row = [
                f"C{i:08d}",
                f"{rng.getrandbits(128):032x}",
                first,
                "" if i % 3 else "J",
                last,
                f" {user}@Example.COM ",
                f"{user.lower()}@example.net" if i % 4 else "",
                f"{user}@Corp.Example.org",
                phone,
                mobile if i % 5 else "",
                f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(1940, 2005)}",
                f"{rng.randint(1, 9999)} Harbor Way",
                city,
                state,
                f"{rng.randint(10000, 99999)}",
                "US",
                "Example Corp" if i % 7 else "",
                f"A{i:09d}",
                rng.choice(["Gold", "Silver", "Bronze", ""]),
                str(rng.randint(0, 50000)),
            ]
            f.write(",".join(row) + "\n")


if __name__ == "__main__":
    main()
