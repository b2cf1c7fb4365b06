"""Native release files: locating split files in a benchmark folder, loading JSON with one-line errors, and
typed field access that turns malformed records into RecordError (counted by the caller): object ids must fit the
int32 columns, texts are capped at MAX_TEXT characters, and a sample id seen before is a duplicate record."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from ross3d.errors import InputError
from ross3d.prep.qa.report import QaReport, RecordError
from ross3d.prep.qa.schema import Sample

MAX_TEXT = 10_000  # characters of one question, answer or description (the benchmarks' longest are ~1,000)
INT32 = (-(2 ** 31), 2 ** 31 - 1)
INT32_FIELDS = ("object_id", "object_ids")  # stored in int32 columns (question ids are not: SQA3D's exceed 2**31)


def find_file(root: Path, name: str, subdirs: Iterable[str] = ()) -> Path | None:
    """`root/name`, else `root/<subdir>/name` for the folder layouts as downloaded; None when absent."""
    for folder in (root, *(root / s for s in subdirs)):
        if (folder / name).is_file():
            return folder / name
    return None


def load_json(path: Path) -> object:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    except RecursionError:
        raise InputError(path, "JSON nested too deeply") from None


def load_list(path: Path, key: str | None = None) -> list:
    """A JSON array, or the array under `key` of a JSON object (SQA3D's {"questions": [...]})."""
    data = load_json(path)
    if key is not None:
        if not isinstance(data, dict) or key not in data:
            raise InputError(path, f"expected a JSON object with a '{key}' list")
        data = data[key]
    if not isinstance(data, list):
        raise InputError(path, "expected a JSON array of records")
    return data


def get(record: object, name: str, kind: type | tuple[type, ...]) -> object:
    """record[name], checked to be of `kind` (bool never passes as int)."""
    if not isinstance(record, dict):
        raise RecordError("record is not a JSON object")
    if name not in record or record[name] is None:
        raise RecordError(f"missing field '{name}'")
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise RecordError(f"field '{name}' has the wrong type")
    _check_value(name, value)
    return value


def _check_value(name: str, value: object) -> None:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise RecordError(f"field '{name}' is longer than {MAX_TEXT} characters")
    if name in INT32_FIELDS and isinstance(value, int) and not INT32[0] <= value <= INT32[1]:
        raise RecordError(f"field '{name}' is out of the int32 range")


def get_int(record: object, name: str) -> int:
    """An integer field that may be written as a string ("3" in ScanRefer)."""
    value = get(record, name, (int, str))
    try:
        number = int(value)
    except ValueError:
        raise RecordError(f"field '{name}' is not an integer") from None
    _check_value(name, number)
    return number


def get_list(record: object, name: str, item: type, allow_empty: bool = True) -> list:
    value = get(record, name, list)
    if any(isinstance(v, bool) or not isinstance(v, item) for v in value):
        raise RecordError(f"field '{name}' holds a wrong-typed item")
    for v in value:
        _check_value(name, v)
    if not value and not allow_empty:
        raise RecordError(f"field '{name}' is empty")
    return value


def record_id(record: object, id_field: str | None, index: int) -> object:
    """The id a problem report names: the record's own id field if readable, else its position."""
    if id_field and isinstance(record, dict) and isinstance(record.get(id_field), (str, int)):
        return record[id_field]
    return f"#{index}"


def convert_records(records: list, source: str, report: QaReport, id_field: str | None,
                    make: Callable[[int, object], list[Sample]]) -> list[Sample]:
    """make(index, record) for every record; a RecordError is counted in the report against `source`."""
    out: list[Sample] = []
    for index, record in enumerate(records):
        try:
            made = make(index, record)
            ids = [s.sample_id for s in made if isinstance(s, Sample)]  # (ScanRefer makes rows keyed by index)
            if any(i in report.sample_ids for i in ids):
                raise RecordError("duplicate question id")
        except RecordError as err:
            report.add_problem(source, str(err), record_id(record, id_field, index))
            continue
        report.sample_ids.update(ids)
        out.extend(made)
    return out


def capitalize(text: str) -> str:
    """The original's `description.capitalize()`: first character upper-cased, the REST LOWER-CASED."""
    return text.capitalize()
