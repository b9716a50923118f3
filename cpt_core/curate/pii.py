"""Personal data redaction: e-mail addresses, phone numbers, Korean resident registration numbers, card
numbers and IP addresses become typed placeholders (``<EMAIL>``, ``<PHONE>``, ``<RRN>``, ``<CARD>``,
``<IP>``), counted per type.

Applied by the quality step to the documents it keeps (``curate.quality.pii``), so the counts sit in that
step's summary as ``pii_<type>``. The e-mail and IPv4 patterns and the IP validator are datatrove's
(``PIIFormatter``); datatrove replaces with fake addresses and does not count, so the substitution is ours.

Detectors run in this order, each on the text the previous left, so a longer kind claims its digits first:
e-mail, RRN, card, IP, phone.

- **RRN** (주민등록번호): ``YYMMDD-GNNNNNN`` with a real month and day and a gender/century digit 1-8; the
  hyphen is required (13 bare digits are far more often something else).
- **Card**: 13-19 digits, optionally grouped by spaces or hyphens, redacted only when the Luhn checksum
  holds: a 16-digit order number that fails it stays.
- **IP**: IPv4 dotted quads with every part <= 255, and IPv6 forms that ``ipaddress`` accepts. A dotted quad
  preceded by "v" or "version" is a version string and stays ("version 1.2.3.4"); a bare ``1.2.3.4`` cannot
  be told from an address and is redacted. Longer dotted runs (``1.2.3.4.5``) and three-part versions never
  match. ``public_only`` keeps private, loopback and documentation addresses, as datatrove does by default.
- **Phone**: Korean mobile (010/011/016-019) and area-code numbers with separators, the same after +82, other
  numbers after a ``+`` country code (8-15 digits in all), and North American ``(555) 123-4567`` /
  ``555-123-4567``. Dates (``2024-01-15``, ``2024.01.15``) have no leading 0 or + and do not match.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from datatrove.pipeline.formatters.pii import PIIFormatter, public_ip_validator
from pydantic import BaseModel, ConfigDict, Field

PLACEHOLDERS = {"email": "<EMAIL>", "rrn": "<RRN>", "card": "<CARD>", "ip": "<IP>", "phone": "<PHONE>"}

_DATATROVE = PIIFormatter()
EMAIL = _DATATROVE.emails_replacer.regex
IPV4 = re.compile(
    r"(?<![\w.])(?<!version )(?<!v)" + _DATATROVE.ip_replacer.regex.pattern + r"(?![\w]|\.\d)", re.IGNORECASE
)
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
RRN = re.compile(r"(?<![\d-])\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])-[1-8]\d{6}(?![\d-])")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_SEP = r"[-. ]"
PHONE = re.compile(
    r"(?<![\w+])(?:"
    rf"\+82{_SEP}?(?:\(0\)|0)?(?:1[016-9]|2|[3-6][1-5]|70){_SEP}?\d{{3,4}}{_SEP}?\d{{4}}"  # +82
    rf"|01[016-9]{_SEP}?\d{{3,4}}{_SEP}?\d{{4}}"  # Korean mobile
    rf"|0(?:2|[3-6][1-5]|70){_SEP}\d{{3,4}}{_SEP}\d{{4}}"  # Korean area codes, separators required
    rf"|\+\d{{1,3}}{_SEP}?(?:\(\d{{1,4}}\){_SEP}?)?\d{{1,4}}(?:{_SEP}?\d{{2,4}}){{1,4}}"  # other countries
    rf"|\(\d{{3}}\) ?\d{{3}}-\d{{4}}|\d{{3}}-\d{{3}}-\d{{4}}"  # North American
    r")(?!\w)"
)


class PIIConfig(BaseModel):
    """Which kinds of personal data the quality step redacts in the documents it keeps."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    email: bool = True
    phone: bool = True
    rrn: bool = Field(True, description="Korean resident registration numbers (YYMMDD-GNNNNNN)")
    card: bool = Field(True, description="payment card numbers passing the Luhn check")
    ip: bool = True
    ip_public_only: bool = Field(False, description="keep private, loopback and reserved addresses")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_card(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _is_ipv6(match: str) -> bool:
    if sum(c.isalnum() for c in match) < 3:
        return False
    try:
        return isinstance(ipaddress.ip_address(match), ipaddress.IPv6Address)
    except ValueError:
        return False


def _digits_in_range(match: str) -> bool:
    return 8 <= sum(c.isdigit() for c in match) <= 15


def _detectors(cfg: PIIConfig) -> list[tuple[str, re.Pattern, object]]:
    """(type, pattern, validator or None) in the order they run."""
    ip_ok = (lambda m: public_ip_validator(m, public_only=True)) if cfg.ip_public_only else None
    ipv6_ok = (lambda m: _is_ipv6(m) and public_ip_validator(m)) if cfg.ip_public_only else _is_ipv6
    found = [
        ("email", EMAIL, None, cfg.email),
        ("rrn", RRN, None, cfg.rrn),
        ("card", CARD, _is_card, cfg.card),
        ("ip", IPV4, ip_ok, cfg.ip),
        ("ip", IPV6, ipv6_ok, cfg.ip),
        ("phone", PHONE, _digits_in_range, cfg.phone),
    ]
    return [(kind, pattern, check) for kind, pattern, check, on in found if on]


def redact(text: str, cfg: PIIConfig | None = None) -> tuple[str, Counter[str]]:
    """``text`` with each personal datum replaced by its type's placeholder, and the counts per type."""
    cfg = cfg or PIIConfig()
    counts: Counter[str] = Counter()
    for kind, pattern, check in _detectors(cfg):

        def replace(match: re.Match, kind=kind, check=check) -> str:
            if check is not None and not check(match.group(0)):
                return match.group(0)
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        text = pattern.sub(replace, text)
    return text, counts
