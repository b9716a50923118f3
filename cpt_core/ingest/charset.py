"""Charset detection for fetched pages and internal text files.

Decoding follows the order browsers use:

1. a byte-order mark;
2. valid UTF-8: non-ASCII bytes that form valid UTF-8 are practically never another encoding (EUC-KR,
   Shift_JIS or GBK byte pairs are invalid UTF-8, Latin-1 text almost always is), so such a page is read as
   UTF-8 whatever it declares; this is the common "server says ISO-8859-1 by default" mislabelling;
3. otherwise the charset of the HTTP ``Content-Type``, then the one in a ``<meta>`` tag (prescan of the
   first 4 KB), each accepted only if the bytes decode strictly *and* the text is not mojibake:
   charset_normalizer's ``mess_ratio`` is near 0 for real text and far above 0.2 when, say, EUC-KR bytes
   are read as windows-1252;
4. detection with charset_normalizer;
5. UTF-8 with replacement characters, recorded as ``utf_8/replace``, so no page is lost without a trace.

Labels are mapped as the WHATWG encoding standard does (``iso-8859-1``/``ascii`` mean windows-1252,
``euc-kr`` means windows-949, ``gb2312`` means GB18030): real pages labelled so use the superset's bytes.
"""

from __future__ import annotations

import codecs
import re

MESS_THRESHOLD = 0.2  # charset_normalizer's own default ceiling for "this decoding is plausible"
META_PRESCAN_BYTES = 4096
_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# WHATWG: labels that real pages use for a superset encoding; keys are Python's canonical codec names
_WHATWG_SUPERSETS = {
    codecs.lookup(label).name: superset
    for label, superset in {
        "iso-8859-1": "cp1252",
        "ascii": "cp1252",
        "euc-kr": "cp949",
        "gb2312": "gb18030",
        "gbk": "gb18030",
    }.items()
}
# labels Python's codecs do not know
_EXTRA_LABELS = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "x-windows-949": "cp949",
    "windows-874": "cp874",
}


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    try:
        name = codecs.lookup(_EXTRA_LABELS.get(label, label)).name
    except LookupError:
        return None
    return _WHATWG_SUPERSETS.get(name, name).replace("-", "_")


def header_charset(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type header value, if any."""
    match = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", content_type or "", re.IGNORECASE)
    return match.group(1) if match else None


def meta_charset(body: bytes) -> str | None:
    """The charset of a ``<meta charset>`` or ``<meta http-equiv content="...; charset=">`` tag near the top."""
    match = _META_CHARSET.search(body[:META_PRESCAN_BYTES])
    return match.group(1).decode("ascii", "replace") if match else None


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """``(text, codec used)``: BOM, valid UTF-8, declared charsets that decode cleanly, then detection."""
    from charset_normalizer import from_bytes
    from charset_normalizer.md import mess_ratio

    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body.decode(codec, errors="replace"), codec
    if body.isascii():
        return body.decode("ascii"), "ascii"
    try:
        # non-ASCII bytes that form valid UTF-8 are practically never another encoding (EUC-KR, Shift_JIS and
        # GBK byte pairs are invalid UTF-8): a page declaring otherwise is mislabelled
        return body.decode("utf-8"), "utf_8"
    except UnicodeDecodeError:
        pass
    for label in (header_charset(content_type), meta_charset(body)):
        codec = _codec(label)
        if codec is None:
            continue
        try:
            text = body.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        if mess_ratio(text, MESS_THRESHOLD) < MESS_THRESHOLD:
            return text, codec
    best = from_bytes(body).best()
    if best is not None and best.encoding:
        codec = _codec(best.encoding) or best.encoding
        try:
            return body.decode(codec), codec
        except (UnicodeDecodeError, LookupError):
            return str(best), best.encoding
    return body.decode("utf-8", errors="replace"), "utf_8/replace"
