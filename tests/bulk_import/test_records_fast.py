"""The importer's fast paths give exactly what the slow ones give: the E.164 phone check is
phonenumbers.is_valid_number, the orjson decoder is json.loads, the orjson record hash is the
json.dumps canonical form's (hashes stored by earlier runs and the sync API stay valid)."""

from __future__ import annotations

import hashlib
import json
import random

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.bulk_import.records import _valid_number, decode_json, fast_normalize_phone, record_hash
from app.errors import InvalidInput


def _slow_hash(data) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _numbers():
    """Every example number phonenumbers has (each type, each region and non-geographic code), each
    with 20 mutations (a digit changed, one added or dropped), and random digits for every code."""
    rng = random.Random(7)
    examples = []
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in range(12):
            if number := phonenumbers.example_number_for_type(region, kind):
                examples.append(number)
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        if number := phonenumbers.example_number_for_non_geo_entity(code):
            examples.append(number)
    for number in examples:
        national = str(number.national_number)
        yield number.country_code, national
        for _ in range(20):
            digits = list(national)
            digits[rng.randrange(len(digits))] = str(rng.randrange(10))
            if rng.random() < 0.2:
                digits.append(str(rng.randrange(10)))
            if rng.random() < 0.2 and len(digits) > 2:
                digits.pop()
            yield number.country_code, "".join(digits)
    for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        for _ in range(60):
            yield code, str(rng.randrange(1, 10)) + "".join(str(rng.randrange(10)) for _ in range(rng.randrange(3, 13)))


def test_the_e164_fast_path_is_phonenumbers_is_valid_number():
    checked = valid = 0
    for code, national in _numbers():
        if national.startswith("0"):
            continue
        expected = phonenumbers.is_valid_number(phonenumbers.PhoneNumber(country_code=code, national_number=int(national)))
        assert _valid_number(code, national) == expected, f"+{code} {national}"
        checked, valid = checked + 1, valid + expected
    assert checked > 40_000 and valid > 10_000  # both outcomes well covered


@pytest.mark.parametrize("raw", ["+12125550123", "+8613800138000", "+447911123456", "+390612345678", "+12125550",
                                 "+999123456789", "+80012345678", "+882345678901", " +14155550123 ", "+1-415-555-0123",
                                 "(415) 555-0123", "+16845551234", "+79123456789", "+77012345678", "+262262123456"])
def test_fast_normalize_phone_is_normalize_phone(raw):
    def outcome(func):
        try:
            return func(raw, "US")
        except InvalidInput as exc:
            return ("invalid", exc.detail)

    from app.accounts.identifiers import normalize_phone

    assert outcome(fast_normalize_phone) == outcome(normalize_phone)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=6))
def test_decoding_and_hashing_are_json_loads_and_the_json_canonical_hash(data):
    text = json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass")
    decoded = decode_json(text)
    assert decoded == json.loads(text) and json.dumps(decoded) == json.dumps(json.loads(text))  # also types: 1 vs 1.0
    assert record_hash(decoded) == _slow_hash(json.loads(text))


@pytest.mark.parametrize("text", [
    b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1e400}', b'{"a": "\\ud800"}', b'\xef\xbb\xbf{"a": 1}',
    b'{"a": 123456789012345678901234567890}', b'{"a": -9223372036854775809}', b'{"a": 1, "a": 2}',
    b'{"a": 1.0, "b": 1e16, "c": -0.0}', b'{"a": "tab\\there \\u00e9 \\u2028 \\\\ \\" \\u0001 \\u007f"}',
])
def test_what_orjson_refuses_or_reads_otherwise_goes_through_json(text):
    assert repr(decode_json(text)) == repr(json.loads(text))

    def outcome(func, data):
        try:
            return func(data)
        except ValueError as exc:  # a lone surrogate cannot be hashed (UTF-8): the same error both ways
            return type(exc)

    assert outcome(record_hash, decode_json(text)) == outcome(_slow_hash, json.loads(text))


@pytest.mark.parametrize("text", [b'{"a": ', b'[1, 2]x', b'\xff\xfe'])
def test_bad_json_fails_with_json_s_own_error(text):
    with pytest.raises(ValueError) as fast:
        decode_json(text)
    with pytest.raises(ValueError) as slow:
        json.loads(text)
    assert str(fast.value) == str(slow.value)


@pytest.mark.filterwarnings("ignore:encountered a bcrypt")  # passlib repairs padding bits, with a warning
@pytest.mark.parametrize("name", ["bcrypt", "md5_crypt", "sha256_crypt", "sha512_crypt"])
def test_a_hash_the_shortcut_accepts_is_one_passlib_accepts(name):
    from passlib import hash as ph

    from app.bulk_import.hashes import _WELL_FORMED, _handler, _parses

    pattern = _WELL_FORMED[name]
    handler = _handler(name)

    @settings(max_examples=300, deadline=None)
    @given(st.from_regex(pattern, fullmatch=True))
    def accepted_by_passlib(value):
        assert _parses(handler, value), value

    accepted_by_passlib()
    # and real hashes take the shortcut (glibc's *-crypt with the default 5000 rounds: no rounds= part)
    made = {"bcrypt": ph.bcrypt.using(rounds=4), "md5_crypt": ph.md5_crypt,
            "sha256_crypt": ph.sha256_crypt.using(rounds=5000), "sha512_crypt": ph.sha512_crypt.using(rounds=5000)}[name]
    for n in range(3):
        assert pattern.fullmatch(made.hash(f"password-{n}"))


@pytest.mark.parametrize("value", ["2024-05-01T10:00:00Z", "2024-05-01 10:00:00Z", "2024-05-01T10:00+01Z", "20240501T10:00:00Z",
                                   "2024-05-01T10:00:00", "2024-05-01T10:00:00+02:00", "2024-13-01T10:00:00Z",
                                   "2024-05-01T1Z:00:00Z", "1714557600", "yesterday", "2024-05-01Z", "2024-05-01T10:00Z"])
def test_the_utc_timestamp_fast_path_is_the_general_parse(value):
    from datetime import UTC, datetime

    from app.bulk_import.records import InvalidRecord, _timestamp

    def general(value):
        if value.strip().isdigit():
            return datetime.fromtimestamp(float(value), UTC).replace(tzinfo=None)
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed

    try:
        expected = general(value)
    except ValueError:
        with pytest.raises(InvalidRecord):
            _timestamp({"t": value}, "t")
        return
    assert _timestamp({"t": value}, "t") == expected
