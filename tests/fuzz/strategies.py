"""Hypothesis strategies for hostile HTTP input: parameter values as raw bytes (any Unicode text
including lone surrogates, encoded as UTF-8 with ``surrogatepass`` so the bytes are invalid UTF-8;
arbitrary bytes; control characters; huge values), repeated parameters, and fragments of invalid
percent-encoding, assembled into query strings and form bodies exactly as a hostile client sends
them."""

from __future__ import annotations

import base64
from urllib.parse import quote_from_bytes

from hypothesis import strategies as st

# Any code point, the surrogates (U+D800-U+DFFF) included: hypothesis leaves those out by default.
_chars = st.one_of(st.characters(exclude_categories=()),
                   st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]))

text_bytes = st.text(_chars, max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass"))
special_bytes = st.sampled_from([b"", b"\x00", b"\t", b'"', b"\\", b"\r\n", b"\xff\xfe", b"\xed\xa0\x80", b"%",
                                 b"https://evil.example/cb", b"javascript:alert(1)", b"openid", b"code", b"S256",
                                 b"none", b"login", b'{"userinfo": {"name": null}}', b"[" * 2000, b"-1", b"9" * 400])
huge_bytes = st.sampled_from([b"x" * 20_000, "é".encode() * 5_000])

value_bytes = st.one_of(text_bytes, st.binary(max_size=40), special_bytes, huge_bytes)

#: Raw (unescaped) pieces that break percent-decoding or the pair syntax.
raw_fragments = st.sampled_from([b"%", b"%z", b"%zz", b"%E9", b"%ED%A0%80", b"%C3%28", b"%00", b"%%", b"&", b"=",
                                 b"&&=", b"+", b";", b"a=%FF%FE", b"=%"])


def pairs(names: list[str]):
    """A list of (name, value) pairs: known names (repeats allowed) and odd ones."""
    name = st.one_of(st.sampled_from(names), text_bytes)
    return st.lists(st.tuples(name, value_bytes), max_size=8)


def _b(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def encode(items, fragments=()) -> bytes:
    """``name=value&…`` with every byte percent-escaped, then the raw fragments appended."""
    parts = [quote_from_bytes(_b(k), safe="").encode() + b"=" + quote_from_bytes(_b(v), safe="").encode()
             for k, v in items]
    return b"&".join([*parts, *fragments])


def query(base: dict, names: list[str]):
    """A query string (bytes): ``base`` (valid values) with parameters dropped, extra and repeated
    parameters of ``names`` with hostile values, and raw fragments."""
    return st.builds(
        lambda dropped, extra, fragments: encode(
            [(k, v) for k, v in base.items() if k not in dropped] + extra, fragments),
        st.sets(st.sampled_from(sorted(base) or [""])),
        pairs(names),
        st.lists(raw_fragments, max_size=3),
    )


def basic_header(valid: tuple[str, str] | None = None):
    """An Authorization header (str, as sent on the wire: latin-1): Basic with arbitrary bytes
    (base64 of bytes that are not UTF-8, or not base64 at all), another scheme, or the valid one."""
    arbitrary = st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode())
    not_base64 = st.binary(max_size=40).map(lambda b: "Basic " + b.decode("latin-1"))
    other = st.binary(max_size=40).map(lambda b: b.decode("latin-1"))
    options = [arbitrary, not_base64, other, st.just("Bearer"), st.just("Basic ")]
    if valid is not None:
        client_id, secret = valid
        options.append(st.just("Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()))
    return st.one_of(*options).filter(lambda h: "\r" not in h and "\n" not in h)
