"""Synthetic legacy account exports for the importer's tests and benchmark.

    python bench/import_gen.py OUT.jsonl --records 1000000 [--duplicates 0.02] [--conflicts 0.01]
                               [--hash-formats bcrypt,md5_crypt,sha512_crypt,pbkdf2_sha256,salted_md5,md5]
                               [--seed 7]

``--duplicates``: share of records that repeat an earlier record's verified phone (the same
person in a second legacy account: the importer links them). ``--conflicts``: share of records
with a conflict of another kind, spread evenly over: duplicate username, shared email, same
upstream subject, unverified shared phone, malformed phone, malformed email, invalid record.
Password hashes are real hashes of ``password-<n>`` (a small pool per format, computed once), so
logins with imported accounts can be tried. The output format follows the file name (.csv / .jsonl).
Streams: memory does not grow with ``--records``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys

CSV_COLUMNS = ("legacy_id", "username", "phone", "phone_verified", "email", "email_verified", "password_hash",
               "password_format", "upstreams", "name", "nickname", "given_name", "family_name", "locale", "gender",
               "birthdate", "created_at", "updated_at", "attributes")
CONFLICT_KINDS = ("duplicate_username", "shared_email", "same_upstream", "unverified_phone", "malformed_phone",
                  "malformed_email", "invalid_record")
POOL_SIZE = 4


def hash_pool(formats: list[str]) -> list[tuple[str, str]]:
    """(format, hash of password-<n>) for each format: real hashes, a few of each."""
    import hashlib

    from passlib import hash as ph

    pool = []
    for fmt in formats:
        for n in range(POOL_SIZE):
            password = f"password-{n}"
            if fmt == "bcrypt":
                value = ph.bcrypt.using(rounds=4).hash(password)
            elif fmt == "md5_crypt":
                value = ph.md5_crypt.hash(password)
            elif fmt == "sha512_crypt":
                value = ph.sha512_crypt.using(rounds=5000).hash(password)
            elif fmt == "pbkdf2_sha256":
                value = ph.pbkdf2_sha256.using(rounds=1000).hash(password)
            elif fmt == "argon2":
                value = ph.argon2.using(memory_cost=1024, time_cost=1).hash(password)
            elif fmt == "salted_md5":
                salt = f"s{n:03d}"
                value, fmt_name = f"{salt}${hashlib.md5((salt + password).encode()).hexdigest()}", "salted_md5:{salt}{password}"
                pool.append((fmt_name, value))
                continue
            elif fmt == "md5":
                value = hashlib.md5(password.encode()).hexdigest()
            else:
                raise SystemExit(f"unknown hash format {fmt}")
            pool.append((fmt, value))
    return pool


def records(count: int, *, duplicates: float = 0.0, conflicts: float = 0.0, hash_formats=("bcrypt",), seed: int = 7):
    """The records, one dict at a time (legacy ids u0000001…; phones +1 415 2xx xxxx)."""
    rng = random.Random(seed)
    pool = hash_pool(list(hash_formats)) if hash_formats else []
    for i in range(1, count + 1):
        phone = f"+1{212 + (i // 8_000_000)}{2000000 + i % 8_000_000:07d}"
        record = {
            "legacy_id": f"u{i:07d}", "username": f"user{i}", "phone": phone, "phone_verified": True,
            "email": f"user{i}@example.com", "email_verified": rng.random() < 0.8,
            "name": f"User {i}", "nickname": f"u{i}", "locale": rng.choice(("en-US", "zh-CN", "fr-FR")),
            "created_at": f"20{10 + i % 14:02d}-0{1 + i % 9}-1{i % 10}T08:00:00Z",
            "updated_at": "2024-05-01T10:00:00Z",
        }
        if pool:
            fmt, value = pool[i % len(pool)]
            record["password_hash"], record["password_format"] = value, fmt
        if i % 5 == 0:
            record["upstreams"] = [{"provider": "wechat", "subject": f"o{i:09d}", "unionid": f"un{i:09d}"}]
        if i % 3 == 0:
            record["attributes"] = {"vip_level": i % 5, "points": i % 1000}
        roll = rng.random()
        if i > 10 and roll < duplicates:
            other = rng.randrange(1, i)
            record["phone"] = f"+1{212 + (other // 8_000_000)}{2000000 + other % 8_000_000:07d}"
            record.pop("username")
            record["email"] = f"second{i}@example.com"
        elif i > 10 and roll < duplicates + conflicts:
            kind = CONFLICT_KINDS[i % len(CONFLICT_KINDS)]
            other = rng.randrange(1, i)
            if kind == "duplicate_username":
                record["username"] = f"user{other}"
            elif kind == "shared_email":
                record["email"] = f"user{other}@example.com"
            elif kind == "same_upstream":
                record["upstreams"] = [{"provider": "wechat", "subject": f"o{(other // 5 * 5 or 5):09d}"}]
            elif kind == "unverified_phone":
                record["phone"] = f"+1{212 + (other // 8_000_000)}{2000000 + other % 8_000_000:07d}"
                record["phone_verified"] = False
            elif kind == "malformed_phone":
                record["phone"] = "+1-555-not-a-phone"
            elif kind == "malformed_email":
                record["email"] = "user-at-nowhere"
            elif kind == "invalid_record":
                record["updated_at"] = "yesterday"
        yield record


def write(path: str, rows) -> int:
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        if path.endswith(".csv"):
            writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                row = {k: json.dumps(v) if isinstance(v, (list, dict)) else ("true" if v is True else "false" if v is False else v)
                       for k, v in row.items()}
                writer.writerow(row)
                count += 1
        else:
            for row in rows:
                out.write(json.dumps(row, separators=(",", ":")) + "\n")
                count += 1
    return count


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--duplicates", type=float, default=0.02)
    parser.add_argument("--conflicts", type=float, default=0.01)
    parser.add_argument("--hash-formats", default="bcrypt,md5_crypt,sha512_crypt,pbkdf2_sha256,salted_md5,md5")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    formats = [f for f in args.hash_formats.split(",") if f]
    count = write(args.output, records(args.records, duplicates=args.duplicates, conflicts=args.conflicts,
                                       hash_formats=formats, seed=args.seed))
    print(f"{count:,} records written to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
