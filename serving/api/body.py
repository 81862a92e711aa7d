"""A scoring request's body read into declarations: its JSON shape checked before any per-item work
(`parse_records`: an object, or a list of at most `max_items` objects of at most `max_fields` keys, no key twice),
text no field may hold refused by name (`invalid_text_errors`), then canonical records read by `Declaration`
(`read_canonical`). A refusal is an HTTPException (413, or 422 with field-level details capped at MAX_ERRORS by
`capped`).
"""
from __future__ import annotations

import json
import re

from fastapi import HTTPException
from pydantic import ValidationError

from features.intake.text import invalid_text
from serving.api.schemas import DECLARATIONS, Declaration
from serving.realtime import call_id

MAX_ERRORS = 20  # validation errors listed in a 422 (error_count says how many there were)
MAX_FIELDS = 200  # keys in one record (or twice a mapping's columns): more is no declaration, and each costs
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


def capped(errors: list[dict]) -> dict:
    """A 422 body: the first MAX_ERRORS errors (location, message, type) and how many there were."""
    keep = ("loc", "msg", "type", "field")
    listed = [{k: list(e[k]) if k == "loc" else e[k] for k in keep if k in e} for e in errors[:MAX_ERRORS]]
    return {"detail": listed, "error_count": len(errors)}


def unprocessable(errors: list[dict]) -> HTTPException:
    return HTTPException(status_code=422, detail=errors)


class _TooMany(Exception):
    pass


class _DuplicateKey(Exception):
    pass


def parse_records(body: bytes, max_items: int, max_fields: int = MAX_FIELDS) -> tuple[list, bool]:
    """The body as (records, sent as a list), its shape checked before any per-item work: JSON, an object or a
    list of 1 to `max_items` objects, each with at most `max_fields` keys. Parsing stops at the first object past
    `max_items` (declarations are flat objects), so 100,000 empty objects cost no more than 101. A key given twice
    in one object is refused: JSON parsers disagree on which value wins, so a proxy and this service could read two
    different declarations from one body."""
    objects = 0

    def count(pairs: list[tuple[str, object]]) -> dict:
        nonlocal objects
        objects += 1
        if objects > max_items:
            raise _TooMany
        obj = dict(pairs)
        if len(obj) < len(pairs):
            seen: set[str] = set()
            raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
        return obj

    try:
        payload = json.loads(body, object_pairs_hook=count)
    except _TooMany:
        raise HTTPException(status_code=413, detail=f"at most {max_items} declarations (JSON objects) per request") \
            from None
    except _DuplicateKey as exc:
        raise unprocessable([{"loc": ["body"], "msg": f"the key {ascii(exc.args[0])} appears twice in one object",
                               "type": "duplicate_key"}]) from None
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested past the parser's depth, huge ints
        msg = str(exc).splitlines()[0][:200] if isinstance(exc, ValueError) else "nested too deeply"
        raise unprocessable([{"loc": ["body"], "msg": f"the body is not JSON: {msg}", "type": "json_invalid"}]) \
            from None
    if isinstance(payload, dict):
        records, as_list = [payload], False
    elif isinstance(payload, list):
        if len(payload) > max_items:
            raise HTTPException(status_code=413, detail=f"at most {max_items} declarations per request")
        if not payload:
            raise unprocessable([{"loc": ["body"], "msg": "empty list", "type": "empty"}])
        records, as_list = payload, True
    else:
        raise unprocessable([{"loc": ["body"], "msg": "a declaration is a JSON object, or a list of them",
                               "type": "not_an_object"}])
    where = (lambda i: ["body", i]) if as_list else (lambda i: ["body"])
    wrong = [{"loc": where(i), "msg": "a declaration is a JSON object", "type": "not_an_object"}
             for i, r in enumerate(records) if not isinstance(r, dict)]
    wrong += [{"loc": where(i), "msg": f"more than {max_fields} fields", "type": "too_many_fields"}
              for i, r in enumerate(records) if isinstance(r, dict) and len(r) > max_fields]
    if wrong:
        raise unprocessable(wrong)
    return records, as_list


def _printable(text: str) -> str:
    """Text safe to echo in an answer: an unpaired surrogate (which UTF-8 cannot encode) as its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def invalid_text_errors(records: list[dict], as_list: bool) -> list[dict]:
    """422 details for keys and string values holding what no text field may hold (features/intake/text.py
    `invalid_text`: NUL, control characters, unpaired surrogates), in either layout. Checked before anything else
    reads the records: a pandas text column cannot hold a surrogate, and an error that echoed one could not be
    encoded."""
    errors = []
    for i, record in enumerate(records):
        where = ["body", i] if as_list else ["body"]
        for key, value in record.items():
            if (why := invalid_text(key)) is not None:
                errors.append({"loc": [*where, _printable(key)], "msg": f"the field name {why}", "type": "invalid_text"})
            elif isinstance(value, str) and (why := invalid_text(value)) is not None:
                errors.append({"loc": [*where, key], "msg": f"the text {why}", "type": "invalid_text"})
    return errors


def read_canonical(records: list[dict], as_list: bool) -> list[Declaration]:
    """The canonical layout's reading of parsed records: text no field may hold refused first, then `Declaration`
    (an HTTPException 422 with field-level details when anything is refused)."""
    if errors := invalid_text_errors(records, as_list):
        raise unprocessable(errors)
    return _canonical_items(records, as_list)


def _canonical_items(records: list[dict], as_list: bool) -> list[Declaration]:
    """Canonical records validated (errors located under 'body', and the record's position in a list)."""
    try:
        if as_list:
            return DECLARATIONS.validate_python(records)
        return [Declaration.model_validate(records[0])]
    except ValidationError as exc:
        raise unprocessable([{**e, "loc": ["body", *e["loc"]]} for e in exc.errors(include_url=False,
                                                                                       include_input=False)]) from None




def request_id_of(given: str | None) -> str:
    """The client's X-Request-ID when it is a plain token, else a new one."""
    return given if given is not None and REQUEST_ID.fullmatch(given) else call_id()
