"""Reading an import file in batches: the job's records from its checkpoint, those of its shard,
validated. Each item is a ``LegacyRecord`` or ``(RawRecord, InvalidRecord)``; a batch also
carries the checkpoint after it. A batch is what a run plans and commits at once
(app.bulk_import.run) and what a dry run looks up at once (app.bulk_import.dry_run)."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.bulk_import.hashes import normalize_legacy_hash
from app.bulk_import.models import ImportJob
from app.bulk_import.records import InvalidRecord, LegacyRecord, RawRecord, parse_record, read_records, shard_of


@dataclass
class Batch:
    items: list = field(default_factory=list)  # LegacyRecord | (RawRecord, InvalidRecord)
    legacy_ids: set = field(default_factory=set)
    end_offset: int = 0
    end_line: int = 0
    other_shards: int = 0


@dataclass
class Stub:
    """A record's place (line, legacy id) where no ``LegacyRecord`` stands for it — an invalid
    record, or a dry run's duplicate: the side of a conflict a report names."""

    line: int
    legacy_id: str | None


def read_batches(job: ImportJob, path: str, fmt: str, batch_size: int, region: str):
    """The job's records from its checkpoint, validated, in batches (a legacy id at most once per
    batch: a repeated one starts the next batch, so it sees the first one's mapping)."""
    batch = Batch(end_offset=job.checkpoint_offset, end_line=job.checkpoint_line)
    shard = (job.shard_index, job.shard_count)
    for raw in read_records(path, fmt, offset=job.checkpoint_offset, line=job.checkpoint_line, shard=shard):
        if job.shard_count > 1 and (raw.other_shard or (raw.other_shard is None
                                                         and _shard_of_raw(raw, job.shard_count) != job.shard_index)):
            batch.other_shards += 1  # another shard's: not even validated here
        else:
            item = _validate(raw, region)
            legacy_id = item.legacy_id if isinstance(item, LegacyRecord) else item[1].legacy_id
            if legacy_id and legacy_id in batch.legacy_ids:
                yield batch
                batch = Batch(end_offset=batch.end_offset, end_line=batch.end_line)
            batch.items.append(item)
            if legacy_id:
                batch.legacy_ids.add(legacy_id)
        batch.end_offset, batch.end_line = raw.end_offset, raw.line
        if len(batch.items) >= batch_size or batch.other_shards >= batch_size * 4:
            yield batch
            batch = Batch(end_offset=batch.end_offset, end_line=batch.end_line)
    if batch.items or batch.other_shards or batch.end_offset != job.checkpoint_offset:
        yield batch


def _shard_of_raw(raw: RawRecord, count: int) -> int:
    """The shard of a record as read: by its legacy id (as validation will read it), else by line."""
    legacy_id = (raw.data or {}).get("legacy_id")
    if isinstance(legacy_id, int) and not isinstance(legacy_id, bool):
        legacy_id = str(legacy_id)
    if isinstance(legacy_id, str) and legacy_id.strip():
        return shard_of(legacy_id.strip(), count)
    return raw.line % count


def _validate(raw: RawRecord, region: str):
    if raw.error:
        return raw, InvalidRecord(raw.error)
    try:
        return parse_record(raw, region=region, normalize_hash=normalize_legacy_hash)
    except InvalidRecord as exc:
        return raw, exc
