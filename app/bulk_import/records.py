"""Legacy account records: streaming CSV / JSON Lines reader and per-record validation.

One record is one legacy account (the format is in docs/flows/import.md). The reader never holds
more than one record in memory and reports, for each record, the byte offset just after it: an
import run (app.bulk_import.run) commits that offset as its checkpoint, so a resumed run seeks
straight to it.

Validation turns a raw record into a :class:`LegacyRecord` with normalized identifiers, or raises
:class:`InvalidRecord` (the record is not imported; the report names the line). A malformed phone
or email is not fatal: the field is dropped and the problem is reported as a conflict of kind
``malformed_phone`` / ``malformed_email``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import phonenumbers
from phonenumbers import PhoneMetadata

from app import json_input
from app.accounts.identifiers import normalize_email, normalize_phone, normalize_username
from app.accounts.models import PROFILE_CLAIMS, Account
from app.errors import InvalidInput

IDENTIFIER_FIELDS = ("legacy_id", "username", "phone", "phone_verified", "email", "email_verified")
FIELDS = (
    *IDENTIFIER_FIELDS, "password_hash", "password_format", "upstreams", "attributes",
    "created_at", "updated_at", *PROFILE_CLAIMS, "address",
)
_KNOWN_FIELDS = frozenset(FIELDS)
#: Fields holding JSON (a JSON value in JSON Lines, JSON text in a CSV cell).
JSON_FIELDS = ("upstreams", "attributes", "address")
TRUE, FALSE = {"1", "true", "t", "yes", "y"}, {"0", "false", "f", "no", "n", ""}
E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
MAX_LEGACY_ID = 128


class InvalidRecord(Exception):
    """A record that cannot be imported (bad JSON, missing legacy id, bad field…)."""

    def __init__(self, detail: str, legacy_id: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.legacy_id = legacy_id


@dataclass
class Upstream:
    provider: str
    subject: str
    unionid: str | None = None


@dataclass
class LegacyRecord:
    line: int
    legacy_id: str
    record_hash: str
    username: str | None = None
    phone: str | None = None
    phone_verified: bool = False
    email: str | None = None
    email_verified: bool = False
    password_hash: str | None = None
    upstreams: list[Upstream] = field(default_factory=list)
    profile: dict = field(default_factory=dict)
    attributes: dict | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: Problems that drop a field but keep the record: (kind, detail), e.g. ("malformed_phone", …).
    problems: list[tuple[str, str]] = field(default_factory=list)
    #: Fields of the input this importer does not know (ignored, listed in the plan's summary).
    unknown_fields: tuple[str, ...] = ()
    #: The record as sent, without its password (sync API: kept while it waits for a proof).
    source_data: dict | None = None


@dataclass
class RawRecord:
    """One record as read: ``data`` (a dict) or ``error`` (why it could not be read)."""

    line: int
    end_offset: int
    data: dict | None = None
    error: str | None = None
    #: ``data`` holds no float (checked by the reader): the record hash need not look again.
    floatless: bool = False
    #: The reader found the record's shard from its raw line (see ``_leading_legacy_id``): True
    #: another shard's (``data`` left unread), False this shard's, None not known yet.
    other_shard: bool | None = None


# --- reading ---------------------------------------------------------------------------------------
def detect_format(path: str, declared: str | None = None) -> str:
    if declared:
        return declared
    lower = path.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lower.endswith((".csv", ".txt")):
        return "csv"
    raise InvalidInput(f"cannot tell the format of {path}: name it .csv or .jsonl, or pass --format")


def read_records(path: str, fmt: str, *, offset: int = 0, line: int = 0,
                 shard: tuple[int, int] = (0, 1)) -> Iterator[RawRecord]:
    """Stream the records of a file from byte ``offset`` (a checkpoint; 0: the start), ``line``
    being the number of lines before it. Each record carries the offset just after it. With
    ``shard`` (i, n), a JSON Lines record whose legacy id can be read off its raw line is not
    decoded when it is another shard's (``other_shard``)."""
    with open(path, "rb") as f:
        if fmt == "csv":
            yield from _read_csv(f, offset, line)
        else:
            yield from _read_jsonl(f, offset, line, shard)


_LEGACY_ID_PREFIX = b'{"legacy_id":"'


def _leading_legacy_id(raw: bytes) -> str | None:
    """The legacy id of a JSON Lines record read off the raw line, without decoding it, when that
    is certain: the line starts with ``{"legacy_id":"``, the value has no escape, and no other key
    can be ``legacy_id`` (the name appears once, and there is no ``\\u`` escape that could spell
    it). Then, if the line is valid JSON, its ``legacy_id`` is exactly this; if it is not, the record
    still belongs to this id's shard, for every shard alike."""
    if not raw.startswith(_LEGACY_ID_PREFIX):
        return None
    end = raw.find(b'"', 14)
    if end < 0 or raw.find(b"\\", 14, end) >= 0 or b"\\u" in raw or raw.count(b'"legacy_id"') != 1:
        return None
    try:
        legacy_id = raw[14:end].decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    return legacy_id or None


def _read_jsonl(f, offset: int, line: int, shard: tuple[int, int] = (0, 1)) -> Iterator[RawRecord]:
    index, count = shard
    f.seek(offset)
    for raw in f:
        line += 1
        offset += len(raw)
        own = None
        if count > 1:
            legacy_id = _leading_legacy_id(raw)
            if legacy_id is not None:
                if shard_of(legacy_id, count) != index:
                    yield RawRecord(line, offset, other_shard=True)
                    continue
                own = False
        text = raw.strip()
        if not text:
            continue
        try:
            data, floatless = _decode(text)
        except (ValueError, UnicodeDecodeError) as exc:
            yield RawRecord(line, offset, error=f"not JSON: {exc}", other_shard=own)
            continue
        if not isinstance(data, dict):
            yield RawRecord(line, offset, error="a record is a JSON object", other_shard=own)
            continue
        yield RawRecord(line, offset, data=data, floatless=floatless, other_shard=own)


def _read_csv(f, offset: int, line: int) -> Iterator[RawRecord]:
    header_line = f.readline()
    try:
        header = next(csv.reader([header_line.decode("utf-8-sig")]))
    except (StopIteration, UnicodeDecodeError):
        return
    header = [h.strip() for h in header]
    if "legacy_id" not in header:
        raise InvalidInput("the CSV header has no legacy_id column")
    if offset <= len(header_line):
        offset, line = len(header_line), 1
    f.seek(offset)
    pending, start_line = b"", 0
    for raw in f:
        line += 1
        offset += len(raw)
        if not pending:
            start_line = line
        pending += raw
        if pending.count(b'"') % 2:  # a quoted cell goes on on the next line
            continue
        chunk, pending = pending, b""
        if not chunk.strip():
            continue
        try:
            cells = next(csv.reader([chunk.decode("utf-8")]))
        except (csv.Error, UnicodeDecodeError) as exc:
            yield RawRecord(start_line, offset, error=f"not CSV: {exc}")
            continue
        if len(cells) != len(header):
            yield RawRecord(start_line, offset, error=f"{len(cells)} cells for {len(header)} columns")
            continue
        yield RawRecord(start_line, offset, data={k: v for k, v in zip(header, cells) if v != ""}, floatless=True)
    if pending:
        yield RawRecord(start_line, offset, error="unterminated quoted cell at the end of the file")


def shard_of(legacy_id: str, count: int) -> int:
    """The shard (0..count-1) a legacy id belongs to: stable across runs, machines and Pythons."""
    return zlib.crc32(legacy_id.encode("utf-8")) % count


def decode_json(text: bytes):
    """``json.loads(text)``, the same value, ≈ 3× faster: orjson when it gives what json gives."""
    return _decode(text)[0]


def _decode(text: bytes) -> tuple:
    """(``json.loads(text)``, whether it holds no float). orjson refuses what json accepts (NaN,
    Infinity, a lone surrogate, a BOM, non-UTF-8 bytes) and reads integers beyond 64 bits as
    floats: on a refusal, or a float anywhere in the value, json decodes the text (and words the
    error the reader reports)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text), False
    if _has_float(value):
        return json.loads(text), False
    return value, True


def _has_float(value) -> bool:
    kind = type(value)
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return kind is float
    for item in value:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and _has_float(item)):
            return True
    return False


# --- validation ------------------------------------------------------------------------------------
def record_hash(data: dict, *, floatless: bool = False) -> str:
    """SHA-256 of a record's content: the same record gives the same hash, whatever the key order.

    The canonical text is ``json.dumps(data, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False, default=str)`` in UTF-8 (hashes stored by earlier runs and by the sync API
    stay valid). orjson writes exactly that for str keys, strings, ints up to 64 bits, bools, None,
    lists and dicts; anything else (floats, whose text differs, big ints, lone surrogates, other
    types) goes through json. ``floatless``: the caller knows ``data`` holds no float."""
    if type(data) is dict and (floatless or not _has_float(data)):
        try:
            return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
        except TypeError:  # orjson.JSONEncodeError: an int beyond 64 bits, a surrogate, a non-JSON type
            pass
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_CLAIM_LENGTHS = {c: Account.__table__.c[c].type.length for c in PROFILE_CLAIMS}


def parse_record(raw: RawRecord, *, region: str, normalize_hash) -> LegacyRecord:
    """Validate one raw record. ``normalize_hash(hash, fmt)`` turns a legacy password hash into
    the hub's stored form (raises InvalidInput for an unknown format)."""
    data = raw.data
    legacy_id = data.get("legacy_id")
    if isinstance(legacy_id, int) and not isinstance(legacy_id, bool):
        legacy_id = str(legacy_id)
    if not isinstance(legacy_id, str) or not legacy_id.strip():
        raise InvalidRecord("legacy_id is missing")
    legacy_id = legacy_id.strip()
    if len(legacy_id) > MAX_LEGACY_ID:
        raise InvalidRecord(f"legacy_id is longer than {MAX_LEGACY_ID} characters")
    try:
        return _parse_fields(raw, data, legacy_id, region, normalize_hash)
    except InvalidRecord as exc:
        exc.legacy_id = legacy_id
        raise


def _parse_fields(raw: RawRecord, data: dict, legacy_id: str, region: str, normalize_hash) -> LegacyRecord:
    try:
        digest = record_hash(data, floatless=raw.floatless)
    except UnicodeEncodeError:  # a \ud800-\udfff escape that pairs with nothing: no text can hold it
        raise InvalidRecord("a field holds a lone UTF-16 surrogate escape: not Unicode text") from None
    record = LegacyRecord(line=raw.line, legacy_id=legacy_id, record_hash=digest)
    record.unknown_fields = tuple(sorted(k for k in data if k not in _KNOWN_FIELDS))
    phone = _text(data, "phone")
    if phone:
        try:
            record.phone = fast_normalize_phone(phone, region)
            record.phone_verified = _bool(data, "phone_verified")
        except InvalidInput as exc:
            record.problems.append(("malformed_phone", f"phone {phone!r}: {exc.detail}"))
    email = _text(data, "email")
    if email:
        try:
            record.email = normalize_email(email)
            record.email_verified = _bool(data, "email_verified")
        except InvalidInput as exc:
            record.problems.append(("malformed_email", f"email {email!r}: {exc.detail}"))
    username = _text(data, "username")
    if username:
        try:
            record.username = normalize_username(username)
        except InvalidInput as exc:
            raise InvalidRecord(f"username {username!r}: {exc.detail}") from None
    record.upstreams = _upstreams(data)
    if not (record.phone or record.email or record.username or record.upstreams):
        raise InvalidRecord("no usable identifier (phone, email, username or upstreams)")

    password_hash = _text(data, "password_hash")
    if password_hash:
        try:
            record.password_hash = normalize_hash(password_hash, _text(data, "password_format"))
        except InvalidInput as exc:
            raise InvalidRecord(f"password_hash: {exc.detail}") from None
        if len(record.password_hash) > 255:
            raise InvalidRecord("password_hash is longer than 255 characters")
    for claim in PROFILE_CLAIMS:
        if data.get(claim) is None:
            continue
        value = _text(data, claim)
        if value:
            if len(value) > _CLAIM_LENGTHS[claim]:
                raise InvalidRecord(f"{claim} is longer than {_CLAIM_LENGTHS[claim]} characters")
            record.profile[claim] = value
    address = _json(data, "address")
    if address is not None:
        if not isinstance(address, dict):
            raise InvalidRecord("address is a JSON object (OIDC Core 5.1.1)")
        record.profile["address"] = address
    attributes = _json(data, "attributes")
    if attributes is not None and not isinstance(attributes, dict):
        raise InvalidRecord("attributes is a JSON object")
    record.attributes = attributes or None
    record.created_at = _timestamp(data, "created_at")
    record.updated_at = _timestamp(data, "updated_at")
    return record


def fast_normalize_phone(raw: str, region: str) -> str:
    """:func:`normalize_phone`, with a fast path for numbers already in E.164 (the common case
    in exports): phonenumbers' own validity rules (``is_valid_number``) on its own metadata, with
    the patterns compiled once per region, without the text parser (≈ 10× faster). The result is
    the same for every input (tests/bulk_import/test_records_fast.py compares them)."""
    text = raw.strip()
    if E164_RE.match(text):
        digits = text[1:]
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                national = digits[size:]
                if national.startswith("0"):  # Italian leading zeros and friends: the full parser
                    break
                if not _valid_number(code, national):
                    raise InvalidInput("not a valid phone number")
                return text
        # unknown country code or a leading zero: let the full parser decide
    return normalize_phone(text, region)


# (region code) → (country code, general desc check, type desc checks, leading digits pattern), where a
# check is (possible lengths or None, compiled national number pattern).
_REGION_RULES: dict[str, tuple | None] = {}
_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
          "fixed_line")


def _desc_check(desc):
    if desc is None or not desc.national_number_pattern:
        return None  # never matches
    return (frozenset(desc.possible_length) or None, re.compile(desc.national_number_pattern))


def _region_rules(region: str, metadata) -> tuple | None:
    rules = _REGION_RULES.get(region, False)
    if rules is False:
        if metadata is None:
            rules = None
        else:
            types = [_desc_check(getattr(metadata, name)) for name in _TYPES]
            if not metadata.same_mobile_and_fixed_line_pattern:  # else mobile is never tried
                types.append(_desc_check(metadata.mobile))
            rules = (metadata.country_code, _desc_check(metadata.general_desc), tuple(t for t in types if t),
                     re.compile(metadata.leading_digits) if metadata.leading_digits is not None else None)
        _REGION_RULES[region] = rules
    return rules


def _matches(check, national: str) -> bool:
    return check is not None and (check[0] is None or len(national) in check[0]) and check[1].fullmatch(national) is not None


def _valid_type(rules, national: str) -> bool:
    """phonenumbers' ``_number_type_helper(...) != UNKNOWN``."""
    if not _matches(rules[1], national):
        return False
    for check in rules[2]:
        if _matches(check, national):
            return True
    return False


def _valid_number(code: int, national: str) -> bool:
    """phonenumbers.is_valid_number for +<code><national> (national: digits, no leading zero)."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
    region = None
    if len(regions) == 1:
        region = regions[0]
    else:  # phonenumbers' _region_code_for_number_from_list
        for candidate in regions:
            rules = _region_rules(candidate, PhoneMetadata.metadata_for_region(candidate.upper(), None))
            if rules is None:
                continue
            if rules[3] is not None:
                if rules[3].match(national):
                    region = candidate
                    break
            elif _valid_type(rules, national):
                return rules[0] == code  # what is_valid_number_for_region then finds for this region
    if region is None:
        return False
    if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
        rules = _region_rules(f"+{code}", PhoneMetadata.metadata_for_nongeo_region(code, None))
    else:
        rules = _region_rules(region, PhoneMetadata.metadata_for_region(region.upper(), None))
    if rules is None or (region != phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY and rules[0] != code):
        return False
    return _valid_type(rules, national)


def _text(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidRecord(f"{key} is text")
    return value.strip() or None


def _bool(data: dict, key: str) -> bool:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise InvalidRecord(f"{key} is true or false, not {value!r}")


def _json(data: dict, key: str):
    value = data.get(key)
    if isinstance(value, str):
        try:
            return json_input.loads(value)  # a JSON text nested thousands deep is refused, not a crash
        except ValueError as exc:
            raise InvalidRecord(f"{key} is not JSON: {exc}") from None
    return value


def _upstreams(data: dict) -> list[Upstream]:
    value = _json(data, "upstreams")
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRecord("upstreams is a JSON list of {provider, subject, unionid}")
    upstreams = []
    for item in value:
        if not isinstance(item, dict) or not item.get("provider") or not item.get("subject"):
            raise InvalidRecord("every upstream has a provider and a subject")
        provider, subject = str(item["provider"]).strip(), str(item["subject"]).strip()
        unionid = str(item["unionid"]).strip() if item.get("unionid") else None
        if len(provider) > 64 or len(subject) > 255 or (unionid and len(unionid) > 255):
            raise InvalidRecord("an upstream provider is at most 64 characters, a subject or unionid 255")
        upstreams.append(Upstream(provider, subject, unionid))
    return upstreams


def iso_time(value: datetime | None) -> str | None:
    """A stored time (naive UTC) as the sync API writes it: ISO 8601 with ``Z``."""
    return value.isoformat() + "Z" if value else None


def _timestamp(data: dict, key: str) -> datetime | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if type(value) is str and len(value) == 20 and value[19] == "Z":
        # The common export form, 2024-05-01T10:00:00Z: the naive time before the Z is the UTC time
        # (what the general path below gives, ≈ 3× faster); anything else takes that path.
        try:
            parsed = datetime.fromisoformat(value[:19])
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            return parsed
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
            return datetime.fromtimestamp(float(value), UTC).replace(tzinfo=None)
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise InvalidRecord(f"{key} is an ISO 8601 time or seconds since 1970, not {value!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed
