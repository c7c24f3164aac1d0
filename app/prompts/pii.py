"""Personally identifiable information: find it and replace it with typed placeholders.

Patterns run in order (most specific first) so a URL's credentials are not also counted as
an email, and a card number is not also a phone number. Numbers are checked where a
checksum exists (Luhn for cards, mod-97 for IBAN) to keep false positives down.
"""

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable

PII_KINDS = ("url_credentials", "email", "iban", "card", "ssn", "ip", "phone")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group(0))
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _iban(match: re.Match[str]) -> bool:
    raw = re.sub(r"\s", "", match.group(0)).upper()
    moved = raw[4:] + raw[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return 15 <= len(raw) <= 34 and int(number) % 97 == 1


def _ip(match: re.Match[str]) -> bool:
    try:
        ipaddress.ip_address(match.group(0))
    except ValueError:
        return False
    return True


def _phone(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group(0))
    # A leading + is a strong signal; bare numbers need the length of a full number, so
    # dates, years and prices are left alone.
    return 9 <= len(digits) <= 15 or (match.group(0).startswith("+") and len(digits) >= 7)


Check = Callable[[re.Match[str]], bool]
_PATTERNS: dict[str, tuple[re.Pattern[str], Check | None, str]] = {
    "url_credentials": (
        re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@]+:[^\s/@]+@[^\s]+"), None,
        "[URL_WITH_CREDENTIALS]"),
    "email": (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-zA-Z]{2,}\b"), None, "[EMAIL]"),
    "iban": (re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), _iban, "[IBAN]"),
    "card": (re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card, "[CARD]"),
    "ssn": (re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"), None, "[SSN]"),
    "ip": (re.compile(
        r"(?<![\w.:])(?:(?:\d{1,3}\.){3}\d{1,3}|(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{0,4}"
        r"(?::[0-9a-fA-F]{1,4})*)(?![\w.:])"), _ip, "[IP]"),
    "phone": (re.compile(
        r"(?<![\w+])\+?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\w)"),
        _phone, "[PHONE]"),
}
PLACEHOLDERS = {kind: placeholder for kind, (_, _, placeholder) in _PATTERNS.items()}


def scrub(text: str, kinds: Iterable[str] = PII_KINDS) -> tuple[str, dict[str, int]]:
    """The text with each PII match replaced by its placeholder, and counts per kind."""
    counts: Counter[str] = Counter()
    wanted = set(kinds)
    for kind, (pattern, check, placeholder) in _PATTERNS.items():
        if kind not in wanted:
            continue

        def _replace(match: re.Match[str], kind: str = kind, check: Check | None = check,
                     placeholder: str = placeholder) -> str:
            if check is not None and not check(match):
                return match.group(0)
            counts[kind] += 1
            return placeholder

        text = pattern.sub(_replace, text)
    return text, dict(counts)


def find(text: str, kinds: Iterable[str] = PII_KINDS) -> dict[str, int]:
    """Counts of PII per kind in a text (what `scrub` would replace)."""
    return scrub(text, kinds)[1]
