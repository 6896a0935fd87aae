"""`tessera import …`: plan (dry run + conflict report), run (resumable, shardable), the jobs and
their progress (``jobs``, ``show``) and the legacy-id → sub mapping export. The file format and the
policies: docs/flows/import.md."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from contextlib import contextmanager

import click
from flask.cli import with_appcontext

from app.bulk_import.conflicts import parse_policies
from app.bulk_import.dry_run import plan_job
from app.bulk_import.jobs import (
    CONFLICTS_LIMIT, COUNTERS, STATUSES, ImportStopped, job_details, job_summary, list_jobs, start_job, write_report,
)
from app.bulk_import.mapping import export_mapping
from app.bulk_import.run import run_job
from app.cli_support import echo_json, fail, json_option, reports_errors
from app.extensions import db

POLICY_HELP = ("kind=policy, repeatable; kinds: same_phone, duplicate_username, shared_email, same_upstream, "
               "malformed_phone, malformed_email, invalid_record; policies: fail | skip | overwrite | link | merge")


class ProgressReporter:
    """A progress bar with rate and ETA on a terminal; a plain log line every few seconds otherwise."""

    def __init__(self, stream=None, interval: float = 5.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval
        self.started = time.monotonic()
        self.last = 0.0
        self.base = self.base_offset = None

    def __call__(self, job, offset: int, total: int) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last < self.interval and offset < total:
            return
        self.last = now
        counters = job.counters or {}
        records = counters.get("read", 0) + counters.get("other_shards", 0)
        if self.base is None:
            self.base, self.base_offset, self.started = records, offset, now
        elapsed = now - self.started
        rate = (records - self.base) / elapsed if elapsed > 0 else 0.0
        rate_bytes = (offset - self.base_offset) / elapsed if elapsed > 0 else 0.0
        eta = (total - offset) / rate_bytes if rate_bytes > 0 else 0.0
        share = offset / total if total else 1.0
        if self.tty:
            width = 30
            bar = "#" * int(share * width) + "-" * (width - int(share * width))
            self.stream.write(f"\r[{bar}] {share:6.1%} {records:,} records {rate:,.0f}/s ETA {eta:5.0f}s ")
            if offset >= total:
                self.stream.write("\n")
        else:
            self.stream.write(f"import job {job.id}: {share:.1%} line {job.checkpoint_line} {records:,} records "
                              f"{rate:,.0f}/s ETA {eta:.0f}s {json.dumps(counters, sort_keys=True)}\n")
        self.stream.flush()


@contextmanager
def bulk_gc():
    """The garbage collector tuned for a long batch job: what the process holds after start-up
    (the app, SQLAlchemy's metadata, phonenumbers' tables: several hundred thousand objects) is
    frozen out of the collector's view, and the young generation is collected every 50,000 new
    objects instead of 700. With the defaults, collections re-walked those objects over and over:
    ≈ 15 % of the importer's CPU (bench/README.md). Objects in reference cycles are still freed,
    a little later; memory stays flat."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _shard(value: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter("use i/n, e.g. 0/4") from None
    if not (count >= 1 and 0 <= index < count):
        raise click.BadParameter("use i/n with 0 <= i < n")
    return index, count


def _common(func):
    func = click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="Default: by the file name.")(func)
    func = click.option("--batch-size", default=2000, show_default=True, type=click.IntRange(1, 50_000))(func)
    func = click.option("--shard", default="0/1", show_default=True, help="Only the records of shard i of n (by legacy id).")(func)
    func = click.option("--policy", "policies", multiple=True, help=POLICY_HELP)(func)
    func = click.option("--tenant", required=True, help="Tenant slug the legacy accounts belong to.")(func)
    func = click.argument("file", type=click.Path(exists=True, dir_okay=False))(func)
    return func


@click.group("import")
def import_group() -> None:
    """Bulk import of a legacy account table (CSV or JSON Lines)."""


@import_group.command("plan")
@_common
@click.option("--report-dir", default="import-report", show_default=True, help="Where conflicts.csv/.json and summary.json go.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@with_appcontext
@reports_errors
def import_plan(file, tenant, policies, shard, batch_size, fmt, report_dir, as_json) -> None:
    """Dry run: validate every record and report every conflict; nothing is imported."""
    job = start_job(file, tenant, mode="plan", policies=parse_policies(policies), shard=_shard(shard))
    with bulk_gc():
        summary = plan_job(job, report_dir, batch_size=batch_size, fmt=fmt, progress=ProgressReporter())
    if as_json:
        echo_json(summary)
        return
    click.echo(f"plan (job {summary['job']}): {summary['records']:,} records, {summary['conflicts']:,} conflicts")
    for what, count in summary["would"].items():
        click.echo(f"  would {what.replace('_', ' ')}: {count:,}")
    for kind, count in sorted(summary["conflicts_by_kind"].items()):
        click.echo(f"  {kind} ({summary['policies'][kind]}): {count:,}")
    if summary["run_would_stop_at"]:
        stop = summary["run_would_stop_at"]
        click.echo(f"  a run would stop at line {stop['line']} ({stop['kind']}: policy fail)")
    click.echo(f"report: {os.path.join(report_dir, 'conflicts.csv')}, conflicts.json, summary.json")


@import_group.command("run")
@_common
@click.option("--report-dir", help="Also write the job's conflict report and summary there.")
@click.option("--json", "as_json", is_flag=True, help="Print the job summary as JSON.")
@with_appcontext
@reports_errors
def import_run(file, tenant, policies, shard, batch_size, fmt, report_dir, as_json) -> None:
    """Import the file. Re-running it changes nothing; after a crash it resumes at its checkpoint."""
    job = start_job(file, tenant, mode="run", policies=parse_policies(policies), shard=_shard(shard))
    if job.checkpoint_offset:
        click.echo(f"resuming import job {job.id} at line {job.checkpoint_line + 1}", err=True)
    job_id = job.id
    try:
        with bulk_gc():
            job = run_job(job, batch_size=batch_size, fmt=fmt, progress=ProgressReporter())
    except ImportStopped as stop:
        job = db.session.get(type(job), job_id)
        if report_dir:
            write_report(job, report_dir)
        fail(f"import job {job_id} stopped: {stop}")
    if report_dir:
        write_report(job, report_dir)
    summary = job_summary(job)
    if as_json:
        echo_json(summary)
    else:
        counters = summary["counters"]
        click.echo(f"import job {job.id} {job.status}: " + ", ".join(
            f"{name} {counters.get(name, 0):,}" for name in COUNTERS))


def _counters_line(counters: dict) -> str:
    return ", ".join(f"{name} {counters.get(name, 0):,}" for name in COUNTERS if counters.get(name))


@import_group.command("jobs")
@click.option("--tenant", help="Only the jobs of this tenant (slug).")
@click.option("--status", type=click.Choice(STATUSES))
@json_option
@with_appcontext
@reports_errors
def import_jobs(tenant, status, as_json) -> None:
    """The 200 newest import jobs (plans and runs): one line each, or JSON."""
    rows = list_jobs(tenant=tenant, status=status)
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"job {r['job']}: {r['tenant']}  {r['mode']} {r['status']}  shard {r['shard']}  "
                   f"line {r['checkpoint']['line']:,}  started {r['started_at']:%Y-%m-%d %H:%M}  "
                   f"{os.path.basename(r['file'])}  {_counters_line(r['counters'])}")


@import_group.command("show")
@click.argument("job_id", type=int)
@click.option("--conflicts", "conflicts", type=click.IntRange(0, CONFLICTS_LIMIT), default=100, show_default=True,
              help="How many of its conflicts to show, in file order.")
@json_option
@with_appcontext
@reports_errors
def import_show(job_id, conflicts, as_json) -> None:
    """An import job's progress: status, times, counters, checkpoint, its conflicts."""
    data = job_details(job_id, conflicts=conflicts)
    if as_json:
        echo_json(data)
        return
    for key in ("job", "tenant", "mode", "status", "file", "sha256", "shard", "started_at", "updated_at",
                "finished_at", "last_error"):
        click.echo(f"{key}: {'' if data[key] is None else data[key]}")
    click.echo(f"checkpoint: line {data['checkpoint']['line']:,} (byte {data['checkpoint']['offset']:,})")
    click.echo(f"counters: {_counters_line(data['counters']) or '(none)'}")
    for kind, policy in sorted(data["policies"].items()):
        click.echo(f"policy {kind}: {policy}")
    for row in data["conflicts_by_kind"]:
        click.echo(f"conflicts {row['kind']} ({row['policy']}): {row['count']:,}")
    for c in data["conflicts"]:
        click.echo(f"  line {c['line']}  {c['legacy_id'] or '-'}  {c['kind']} ({c['policy']})  {c['detail']}")
    if len(data["conflicts"]) < data["conflicts_recorded"]:
        click.echo(f"  … {data['conflicts_recorded'] - len(data['conflicts']):,} more (--conflicts N)")


@import_group.command("mapping")
@click.option("--tenant", required=True)
@click.option("--client", "client_id", required=True, help="The client whose subs to export.")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), help="CSV file (default: standard output).")
@with_appcontext
@reports_errors
def import_mapping(tenant, client_id, output) -> None:
    """Export legacy_id,sub,status: the sub this client sees for each legacy account (after merges)."""
    if output:
        with open(output, "w", newline="", encoding="utf-8") as out:
            count = export_mapping(tenant, client_id, out)
        click.echo(f"{count:,} legacy ids written to {output}", err=True)
    else:
        export_mapping(tenant, client_id, sys.stdout)
