"""Data file writers: JSONL and Parquet, fed batch by batch, each hashing what it wrote.

Rows are plain dicts built from training.records classes. Parquet needs a fixed schema,
so each kind has one here; dict fields whose keys vary per row (a ranking's `ratings`,
keyed by candidate id) are Arrow JSON columns, which `datasets` decodes back to dicts.
"""

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

_ID = pa.int64()
_CANDIDATE = pa.struct([("id", _ID), ("text", pa.string()), ("model", pa.string()),
                        ("model_version_id", _ID)])
_IDS = [("prompt_id", _ID), ("ranking_id", _ID), ("labeler_id", _ID)]

PARQUET_SCHEMAS: dict[str, pa.Schema] = {
    "sft": pa.schema([("prompt", pa.string()), ("completion", pa.string()), ("prompt_id", _ID),
                      ("demonstration_id", _ID), ("labeler_id", _ID)]),
    "sft-chat": pa.schema([
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("prompt_id", _ID), ("demonstration_id", _ID), ("labeler_id", _ID),
    ]),
    "comparisons": pa.schema([("prompt", pa.string()), ("chosen", pa.string()),
                              ("rejected", pa.string()), *_IDS]),
    "grouped": pa.schema([("prompt", pa.string()), ("responses", pa.list_(pa.string())),
                          ("ranking", pa.list_(pa.list_(_ID))), *_IDS]),
    "rankings": pa.schema([
        ("ranking_id", _ID), ("prompt_id", _ID), ("prompt", pa.string()),
        ("candidates", pa.list_(_CANDIDATE)), ("groups", pa.list_(pa.list_(_ID))),
        ("display_order", pa.list_(_ID)), ("ratings", pa.json_()), ("labeler_id", _ID),
        ("seconds_spent", pa.float64()), ("created_at", pa.string()),
    ]),
    "ratings": pa.schema([
        ("rating_id", _ID), ("prompt_id", _ID), ("prompt", pa.string()), ("candidate_id", _ID),
        ("text", pa.string()), ("likert", _ID), ("model_version", pa.string()),
        ("flags", pa.list_(pa.string())), ("comment", pa.string()), ("labeler_id", _ID),
        ("created_at", pa.string()),
    ]),
    "prompts": pa.schema([("prompt_id", _ID), ("text", pa.string()), ("split", pa.string()),
                          ("category", pa.string()), ("end_user_id", pa.string())]),
}
_JSON_FIELDS = {"rankings": ("ratings",)}
# One encoder for every row: json.dumps with options builds a new encoder per call.
_encode = json.JSONEncoder(ensure_ascii=False).encode


class EncodableRows(Protocol):
    """A batch that can write itself as JSON lines faster than dict by dict."""

    def __len__(self) -> int: ...

    def rows(self) -> list[dict[str, Any]]: ...

    def jsonl(self) -> str: ...


Rows = list[dict[str, Any]] | EncodableRows


class Writer(Protocol):
    name: str

    def write(self, rows: Rows) -> None: ...

    def close(self) -> tuple[int, str, int]: ...


class JsonlWriter:
    """One JSON object per line, UTF-8; hashes the bytes as they are written."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._hash = hashlib.sha256()
        self._rows = 0
        self._bytes = 0

    def write(self, rows: Rows) -> None:
        """Append a batch of rows."""
        if not len(rows):
            return
        if isinstance(rows, list):
            data = ("\n".join([_encode(r) for r in rows]) + "\n").encode()
        else:
            data = rows.jsonl().encode()
        self._file.write(data)
        self._hash.update(data)
        self._rows += len(rows)
        self._bytes += len(data)

    def close(self) -> tuple[int, str, int]:
        """Flush to disk; returns (rows, sha256, bytes)."""
        self._file.flush()
        _fsync(self._file)
        self._file.close()
        return self._rows, self._hash.hexdigest(), self._bytes


class ParquetFileWriter:
    """Parquet with one row group per batch, so memory stays at one batch."""

    def __init__(self, path: Path, schema_key: str) -> None:
        self.name = path.name
        self._path = path
        self._schema = PARQUET_SCHEMAS[schema_key]
        self._json_fields = _JSON_FIELDS.get(schema_key, ())
        self._writer = pq.ParquetWriter(path, self._schema, compression="zstd")
        self._rows = 0

    def write(self, rows: Rows) -> None:
        """Append a batch of rows as one row group."""
        if not len(rows):
            return
        if not isinstance(rows, list):
            rows = rows.rows()
        for field in self._json_fields:
            rows = [{**r, field: _encode(r[field])} for r in rows]
        self._writer.write_table(pa.Table.from_pylist(rows, schema=self._schema))
        self._rows += len(rows)

    def close(self) -> tuple[int, str, int]:
        """Finish the footer; returns (rows, sha256, bytes)."""
        self._writer.close()
        return self._rows, sha256_of(self._path), self._path.stat().st_size


def open_writer(fmt: str, directory: Path, kind: str, chat: bool) -> Writer:
    """A writer for `kind` in `fmt`, creating `<kind>.<fmt>` in directory."""
    if fmt == "parquet":
        return ParquetFileWriter(directory / f"{kind}.parquet", "sft-chat" if chat else kind)
    return JsonlWriter(directory / f"{kind}.jsonl")


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a small JSON document durably (manifest.json)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False, sort_keys=True)
        f.write("\n")
        f.flush()
        _fsync(f)


def _fsync(f: Any) -> None:
    import os

    os.fsync(f.fileno())
