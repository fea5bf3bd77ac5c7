#!/usr/bin/env python3
"""Writes N synthetic index records as NDJSON to stdout, for `gdprd index import`.

Usage: bench/index_records.py N [SEED]

Deterministic for a given N and SEED. The records are spread evenly over the four kinds
(users, external contacts, dialer contacts, journey customers); each has one name (some with
accents), one email address and one phone number in the national format of region US, so each
record gives three identifiers to the index.
"""

import json
import random
import sys
import unicodedata

FIRST = ["Ana", "José", "Zoë", "Łukasz", "Mia", "Noah", "Chloé", "Björn", "Aiyana", "Omar",
         "Søren", "Inês", "Liam", "Emma", "Mateo", "Ingrid", "Hana", "Kofi", "Élodie", "Yusuf"]
LAST = ["García", "Müller", "Núñez", "Smith", "Dubois", "Kowalski", "Jensen", "Rossi",
        "O'Brien", "Nakamura", "Silva", "Ødegaard", "Haddad", "Novak", "Moreau", "Lund"]


def ascii_fold(text):
    text = text.replace("Ł", "L").replace("ł", "l").replace("Ø", "O").replace("ø", "o")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and c.isalnum())


def record(i, rng):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    subject = {
        "name": f"{first} {last}",
        "emailAddresses": [f"{ascii_fold(first)}.{ascii_fold(last)}.{i}@example.com".lower()],
        "phoneNumbers": [f"({555 + i // 10_000_000}) {i // 10_000 % 1000:03d}-{i % 10_000:04d}"],
    }
    kind = i % 4
    if kind == 0:
        subject["userId"] = f"user-{i}"
    elif kind == 1:
        subject["externalContactId"] = f"contact-{i}"
    elif kind == 2:
        subject["dialerContactId"] = {"id": f"dc-{i}", "contactListId": f"list-{i % 20}"}
    else:
        subject["journeyCustomer"] = {"type": "cookie", "id": f"cookie-{i}"}
    return subject


def main():
    n = int(sys.argv[1])
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    out = sys.stdout
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for i in range(n):
        out.write(dumps(record(i, rng)))
        out.write("\n")


if __name__ == "__main__":
    main()
