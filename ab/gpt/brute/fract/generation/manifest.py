"""The generator's manifest: one JSON record per proposed model, appended as JSON lines.

Records: name, spec, spec_hash, code_hash, status ("valid", "invalid" or "duplicate"), reason,
signature, params, flops, file, generator, created. A crash can leave a truncated last line, which loading
drops (that model is simply redone); any other unreadable line is a corrupted manifest.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..util.atomic import append_line, sync_file, write_text

MANIFEST = "manifest.jsonl"
REQUIRED = ("name", "spec", "spec_hash", "status")


class ManifestError(ValueError):
    pass


@dataclass
class Manifest:
    path: Path
    records: dict[str, dict] = field(default_factory=dict)  # by spec hash, last record wins
    dropped_partial_line: bool = False
    # seconds between fsyncs; 0 syncs every record. Records written since the last fsync survive the writer
    # being killed, and an OS crash loses at most these (their models are redone, like a torn last line)
    sync_interval: float = 0.0
    _synced: float = field(default=0.0, repr=False)

    @classmethod
    def load(cls, folder: Path) -> "Manifest":
        path = Path(folder) / MANIFEST
        m = cls(path)
        if not path.exists():
            return m
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:  # no newline at the end: an interrupted append
            lines.pop()
            m.dropped_partial_line = True
        for i, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or any(k not in rec for k in REQUIRED):
                    raise ValueError("missing fields")
            except ValueError as e:
                raise ManifestError(f"manifest {path} is corrupted at line {i} ({e}); "
                                    f"move it aside to start a fresh manifest") from None
            m.records[rec["spec_hash"]] = rec
        if m.dropped_partial_line:  # rewrite without the torn line so later appends stay aligned
            write_text(path, b"".join(l + b"\n" for l in lines).decode())
        return m

    def add(self, record: dict) -> None:
        record = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}
        now = time.monotonic()
        sync = now - self._synced >= self.sync_interval
        append_line(self.path, json.dumps(record, sort_keys=True), sync=sync)
        if sync:
            self._synced = now
        self.records[record["spec_hash"]] = record

    def sync(self) -> None:
        """fsync the records added since the last fsync."""
        sync_file(self.path)
        self._synced = time.monotonic()

    def valid(self) -> list[dict]:
        return [r for r in self.records.values() if r["status"] == "valid"]

    def signatures(self) -> dict[str, str]:
        return {r["signature"]: r["name"] for r in self.valid() if r.get("signature")}
