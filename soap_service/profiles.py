"""Profiles (SPEC §10): validation, create / change, erase, opt-outs, CSV import.

A profile is written under its API names (``externalId``, ``email``, ``mobilePhone``,
``pushTokens``, ``language``, ``country``, ``firstName``, ``lastName``, ``attributes``)
from the CLI, the REST API and the CSV import alike, and checked once, here: emails
are lower-cased and must be addresses (``addresses``), numbers become E.164, languages
are BCP 47 tags (``fr``, ``fr-CA``).  No SQL here: ``store.profiles`` owns it.

The CSV import streams: lines are read one at a time with a length limit (a 1 GB line is
refused after reading 64 KiB of it, then skipped), rows go to the database in batches
of :data:`BATCH_ROWS` (one upsert each), and memory stays bounded whatever the file's
size: duplicates of a row written by an earlier batch are found in the database, not in
a set of every id seen.  Rejected rows are written to a CSV file with their line number
and reason.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from soap_service import clock
from soap_service.addresses import is_email_address
from soap_service.errors import NotFound, ValidationFailed
from soap_service.models import Channel, Profile
from soap_service.phone import normalise_phone
from soap_service.render.variants import normalise_language
from soap_service.store import Database
from soap_service.store import profiles as store

log = logging.getLogger(__name__)

# API name -> column
FIELDS = {"email": "email", "mobilePhone": "mobile_phone", "pushTokens": "push_tokens",
          "language": "language", "country": "country", "firstName": "first_name",
          "lastName": "last_name", "attributes": "attributes"}
ATTRIBUTE_PREFIX = "attributes."  # a CSV column "attributes.tier" fills attributes["tier"]
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
__all__ = ["ImportReport", "import_csv", "normalise_language", "put"]
_COUNTRY = re.compile(r"^[A-Za-z]{2,3}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ATTRIBUTES_CHARS = 16 * 1024
MAX_LINE_BYTES = 64 * 1024
BATCH_ROWS = 1000


def check_external_id(external_id: str) -> str:
    value = (external_id or "").strip()
    if not value:
        raise ValidationFailed("externalId is empty")
    if len(value) > 255 or _CONTROL.search(value):
        raise ValidationFailed("externalId must be at most 255 printable characters")
    return value


def _text(name: str, value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed(f"{name} must be a string")
    value = value.strip()
    if len(value) > limit:
        raise ValidationFailed(f"{name} is too long (at most {limit} characters)")
    return value or None


def column_values(data: dict[str, Any], default_country_code: str = "") -> dict[str, Any]:
    """Checked column values for the API-named fields present in ``data`` (a None or
    empty value clears the field)."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValidationFailed(f"unknown profile field(s): {', '.join(unknown)} "
                               f"(known: {', '.join(FIELDS)})")
    out: dict[str, Any] = {}
    for name, value in data.items():
        column = FIELDS[name]
        if name == "pushTokens":
            out[column] = json.dumps(_tokens(value))
        elif name == "attributes":
            out[column] = _attributes(value)
        elif name == "email":
            email = _text(name, value, 320)
            if email is not None and not is_email_address(email):
                raise ValidationFailed("email is not an email address")
            out[column] = email.lower() if email else None
        elif name == "mobilePhone":
            phone = _text(name, value, 64)
            out[column] = normalise_phone(phone, default_country_code) if phone else None
        elif name == "language":
            lang = _text(name, value, 32)
            if lang is not None and not _LANGUAGE.match(lang.replace("_", "-")):
                raise ValidationFailed(f"language {lang!r} is not a language tag (fr, fr-CA)")
            out[column] = normalise_language(lang) if lang else None
        elif name == "country":
            country = _text(name, value, 32)
            if country is not None and not _COUNTRY.match(country):
                raise ValidationFailed(f"country {country!r} is not a country code (FR, CA)")
            out[column] = country.upper() if country else None
        else:
            out[column] = _text(name, value, 255)
    return out


def _tokens(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    items = value.replace("|", " ").split() if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise ValidationFailed("pushTokens must be a list of strings")
    tokens = [t.strip() for t in items if t.strip()]
    if len(tokens) > 20 or any(len(t) > 1024 for t in tokens):
        raise ValidationFailed("pushTokens: at most 20 tokens of at most 1024 characters")
    return tokens


def _attributes(value: Any) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise ValidationFailed("attributes must be an object")
    encoded = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(encoded) > MAX_ATTRIBUTES_CHARS:
        raise ValidationFailed(f"attributes are too large (at most {MAX_ATTRIBUTES_CHARS} "
                               "characters as JSON)")
    return encoded


# ---------------------------------------------------------------- one profile


def require(db: Database, external_id: str) -> Profile:
    profile = store.get_profile(db, external_id)
    if profile is None:
        raise NotFound(f"no profile {external_id!r}")
    return profile


def put(db: Database, external_id: str, data: dict[str, Any],
        default_country_code: str = "") -> tuple[Profile, bool]:
    """Create the profile, or change the fields given; (profile, created)."""
    external_id = check_external_id(external_id)
    values = column_values(data, default_country_code)
    profile, created = store.put_profile(db, external_id, values, clock.utcnow())
    log.info("profile.%s", "created" if created else "updated")
    return profile, created


def set_subscription(db: Database, external_id: str, channel: Channel,
                     subscribed: bool, event_id: int | None = None) -> Profile:
    """Opt the profile in to or out of a channel (an opt-out keeps its first time;
    ``event_id``: the message whose unsubscribe link was used)."""
    at = None if subscribed else clock.utcnow()
    return store.set_unsubscribed(db, check_external_id(external_id), channel, at, event_id)


def delete(db: Database, external_id: str) -> None:
    if not store.delete_profile(db, external_id):
        raise NotFound(f"no profile {external_id!r}")


def erase(db: Database, external_id: str) -> dict[str, int]:
    """The right to erasure: the profile goes, its events keep their statuses and counts
    but lose addresses, ids and data (``store.profiles.erase_profile``)."""
    counts = store.erase_profile(db, external_id)
    log.info("profile.erased events=%s", counts["events"])
    return counts


def find(db: Database, external_id: str | None = None,
         email: str | None = None) -> Profile | None:
    """The profile named by external id, or by email (lower-cased)."""
    if external_id:
        return store.get_profile(db, external_id.strip())
    if email:
        return store.find_by_email(db, email.strip().lower())
    return None


# ---------------------------------------------------------------- CSV import


@dataclass
class ImportReport:
    lines: int = 0  # data lines read (the header and empty lines not counted)
    inserted: int = 0
    updated: int = 0
    rejected: int = 0
    rejects_file: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)  # reason kind -> count
    bytes_read: int = 0  # of the file, for a progress bar (not in the summary)

    def to_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "inserted": self.inserted, "updated": self.updated,
                "rejected": self.rejected, "rejects_file": self.rejects_file,
                "reasons": dict(sorted(self.reasons.items()))}


class _Rejects:
    """The rejected rows' file, created on the first reject."""

    def __init__(self, path: Path, report: ImportReport) -> None:
        self.path, self.report = path, report
        self._file: io.TextIOWrapper | None = None
        self._writer: Any = None

    def add(self, line_no: int, kind: str, reason: str, raw: str) -> None:
        if self._file is None:
            self._file = self.path.open("w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["line", "reason", "content"])
            self.report.rejects_file = str(self.path)
        self._writer.writerow([line_no, reason, raw[:200]])
        self.report.rejected += 1
        self.report.reasons[kind] = self.report.reasons.get(kind, 0) + 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _lines(stream: BinaryIO, max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the line end) for each line; None for a line longer
    than ``max_bytes`` (read past in chunks, never held whole).  A leading UTF-8 BOM is
    dropped; CRLF and LF both end a line."""
    number = 0
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        number += 1
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(1024 * 1024)
            yield number, None
            continue
        yield number, line.rstrip(b"\r\n")


def _header(fields: list[str]) -> tuple[list[str], list[str]]:
    """The header's columns and the names of the attributes it fills; refuses a file
    without ``externalId`` or with a column it does not know."""
    names = [f.strip() for f in fields]
    wrong = [n for n in names if n != "externalId" and n not in FIELDS
             and not (n.startswith(ATTRIBUTE_PREFIX) and len(n) > len(ATTRIBUTE_PREFIX))]
    if wrong or "externalId" not in names or "attributes" in names:
        raise ValidationFailed(
            f"bad CSV header: unknown column(s) {', '.join(wrong) or '(none)'}"
            f"{'' if 'externalId' in names else ', no externalId column'}; the columns are "
            f"externalId, {', '.join(n for n in FIELDS if n != 'attributes')} and "
            f"{ATTRIBUTE_PREFIX}NAME")
    if len(set(names)) != len(names):
        raise ValidationFailed("bad CSV header: a column appears twice")
    return names, [n[len(ATTRIBUTE_PREFIX):] for n in names if n.startswith(ATTRIBUTE_PREFIX)]


def _row_data(names: list[str], cells: list[str]) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    attributes: dict[str, str] | None = None
    external_id = ""
    for name, cell in zip(names, cells, strict=True):
        if name == "externalId":
            external_id = cell
        elif name in FIELDS:
            data[name] = cell
        else:  # attributes.NAME (the header was checked)
            if attributes is None:
                attributes = {}
            if cell.strip():
                attributes[name[len(ATTRIBUTE_PREFIX):]] = cell.strip()
    if attributes is not None:
        data["attributes"] = attributes
    return external_id, data


def import_csv(db: Database, path: Path, *, rejects_path: Path | None = None,
               default_country_code: str = "", batch_rows: int = BATCH_ROWS,
               max_line_bytes: int = MAX_LINE_BYTES,
               progress: Callable[[ImportReport], None] | None = None) -> ImportReport:
    """Import profiles from a CSV file (a header line, then one profile per line); a row
    that names an existing profile changes the columns the file has.  See the module
    docstring for memory and rejects; ``progress`` is called after each batch."""
    report = ImportReport()
    rejects = _Rejects(rejects_path or path.with_name(path.name + ".rejects.csv"), report)
    stamp = clock.utcnow()
    try:
        with path.open("rb") as stream:
            lines = _lines(stream, max_line_bytes)
            names, columns = _first_line(lines)
            batch: dict[str, tuple[int, str, dict[str, Any]]] = {}
            for number, raw in lines:
                if raw is not None and not raw.strip():
                    continue  # an empty line
                report.lines += 1
                row = _parse_line(number, raw, names, rejects, default_country_code,
                                  max_line_bytes)
                if row is None:
                    continue
                external_id = row["external_id"]
                if external_id in batch:
                    rejects.add(number, "duplicate", "duplicate externalId (first on line "
                                f"{batch[external_id][0]})", (raw or b"").decode("utf-8",
                                                                                  "replace"))
                    continue
                batch[external_id] = (number, (raw or b"").decode("utf-8", "replace"), row)
                if len(batch) >= batch_rows:
                    _flush(db, batch, columns, stamp, report, rejects)
                    if progress:
                        report.bytes_read = stream.tell()
                        progress(report)
            _flush(db, batch, columns, stamp, report, rejects)
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from exc
    finally:
        rejects.close()
    log.info("profile.imported inserted=%s updated=%s rejected=%s", report.inserted,
             report.updated, report.rejected)
    return report


def _first_line(lines: Iterator[tuple[int, bytes | None]]) -> tuple[list[str], list[str]]:
    for _number, raw in lines:
        if raw is None:
            raise ValidationFailed("bad CSV header: the first line is too long")
        if not raw.strip():
            continue
        try:
            fields = next(csv.reader([raw.decode("utf-8")], strict=True))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ValidationFailed(f"bad CSV header: {exc}") from exc
        names, _attrs = _header(fields)
        columns = sorted({FIELDS[n] for n in names if n in FIELDS}
                         | ({"attributes"} if _attrs else set()))
        return names, columns
    raise ValidationFailed("the file is empty (a header line is needed)")


def _parse_line(number: int, raw: bytes | None, names: list[str], rejects: _Rejects,
                default_country_code: str, max_line_bytes: int) -> dict[str, Any] | None:
    """The row's column values, or None when rejected."""
    if raw is None:
        rejects.add(number, "too_long", f"line longer than {max_line_bytes} bytes (refused)",
                    "")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        rejects.add(number, "encoding", "not UTF-8", raw.decode("utf-8", "replace"))
        return None
    try:
        cells = next(csv.reader([text], strict=True))
    except csv.Error as exc:
        rejects.add(number, "syntax", f"not a CSV row: {exc}", text)
        return None
    if len(cells) != len(names):
        rejects.add(number, "columns", f"expected {len(names)} fields, found {len(cells)}",
                    text)
        return None
    external_id, data = _row_data(names, cells)
    try:
        values = column_values(data, default_country_code)
        values["external_id"] = check_external_id(external_id)
    except ValidationFailed as exc:
        kind = exc.message.split(" ", 1)[0] if exc.message else "invalid"
        rejects.add(number, kind, exc.message, text)
        return None
    return values


def _flush(db: Database, batch: dict[str, tuple[int, str, dict[str, Any]]],
           columns: list[str], stamp: Any, report: ImportReport, rejects: _Rejects) -> None:
    if not batch:
        return
    items = list(batch.values())
    inserted, updated, duplicates = store.import_rows(db, [row for _, _, row in items],
                                                      columns, stamp)
    report.inserted += inserted
    report.updated += updated
    for index in duplicates:
        number, raw, _row = items[index]
        rejects.add(number, "duplicate", "duplicate externalId (an earlier line)", raw)
    batch.clear()
