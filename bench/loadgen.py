"""Load generation and server-side measurement.

* ``closed_loop``: ``concurrency`` threads run operations back to back (peak throughput).
* ``open_loop``: operations start on a fixed schedule (``rate`` per second) whatever the server
  does; latency is measured from the *scheduled* start, so a stalled server shows up in the
  percentiles instead of silently slowing the driver down (no coordinated omission).

Server cost is read from /proc: utime+stime of the gunicorn worker process(es) (CPU time, not
wall time) over the measured window, and the worker's VmHWM (peak RSS).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: seconds an open-loop run waits after its window for operations still queued in the driver
GRACE = 5.0


# --- /proc ------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the comm field: state(0) ppid(1) ... utime(11) stime(12)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(entry))
    return kids


def total_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


# --- results ----------------------------------------------------------------------------------
@dataclass
class RunResult:
    ops: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list = field(default_factory=list)  # seconds, measured ops only
    server_cpu: float = 0.0  # seconds of CPU of the worker(s) in the window
    db_cpu: float | None = None  # seconds of CPU of the PostgreSQL backend(s) in the window
    first_error: str | None = None
    offered_rate: float | None = None
    late_starts: int = 0  # open loop: scheduled ops never started (server too slow for the rate)

    def percentile(self, p: float) -> float | None:
        if not self.latencies:
            return None
        data = sorted(self.latencies)
        k = min(len(data) - 1, max(0, int(round(p / 100.0 * len(data) + 0.5)) - 1))
        return data[k]

    def summary(self) -> dict:
        p50, p99 = self.percentile(50), self.percentile(99)
        return {
            "ops": self.ops,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "throughput": round(self.ops / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(p50 * 1000, 2) if p50 is not None else None,
            "p99_ms": round(p99 * 1000, 2) if p99 is not None else None,
            "server_cpu_s": round(self.server_cpu, 3),
            "ops_per_cpu_s": round(self.ops / self.server_cpu, 1) if self.server_cpu > 0 else None,
            "server_cpu_util": round(self.server_cpu / self.seconds, 3) if self.seconds else None,
            "db_cpu_ms_per_op": round(self.db_cpu * 1000 / self.ops, 3) if self.db_cpu is not None and self.ops else None,
            "offered_rate": round(self.offered_rate, 1) if self.offered_rate else None,
            "late_starts": self.late_starts,
            "first_error": self.first_error,
        }


class Meter:
    """Snapshots the CPU of the server worker(s) and, optionally, of their database backends."""

    def __init__(self, worker_pids, db_pids=None):
        self.worker_pids, self.db_pids = worker_pids, db_pids

    def snapshot(self):
        workers = self.worker_pids()
        dbs = self.db_pids() if self.db_pids else None
        return (time.monotonic(), total_cpu(workers), {p: _safe_cpu(p) for p in dbs} if dbs is not None else None)

    @staticmethod
    def delta(before, after):
        wall = after[0] - before[0]
        cpu = after[1] - before[1]
        db = None
        if before[2] is not None and after[2] is not None:
            # backends that lived through the whole window (a pooled connection normally does)
            db = sum(after[2][p] - before[2].get(p, 0.0) for p in after[2])
        return wall, cpu, db


def _safe_cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


# --- drivers ----------------------------------------------------------------------------------
def closed_loop(workers: list, meter: Meter, warmup: float, duration: float) -> RunResult:
    """``workers``: one callable per thread; each call performs one operation (raises on failure)."""
    result = RunResult()
    lock = threading.Lock()
    window = {"start": None, "end": None}
    stop = threading.Event()

    def run(op):
        lat, errs, first = [], 0, None
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                op()
                ok = True
            except Exception as exc:  # noqa: BLE001 - counted and reported
                ok = False
                if first is None:
                    first = f"{type(exc).__name__}: {exc}"[:300]
            t1 = time.monotonic()
            start, end = window["start"], window["end"]
            if start is not None and t0 >= start and (end is None or t1 <= end):
                if ok:
                    lat.append(t1 - t0)
                else:
                    errs += 1
            elif not ok:
                time.sleep(0.01)  # do not spin on a broken warm-up
        with lock:
            result.latencies.extend(lat)
            result.errors += errs
            if first and result.first_error is None:
                result.first_error = first

    threads = [threading.Thread(target=run, args=(op,), daemon=True) for op in workers]
    for t in threads:
        t.start()
    time.sleep(warmup)
    before = meter.snapshot()
    window["start"] = before[0]
    time.sleep(duration)
    after = meter.snapshot()
    window["end"] = after[0]
    stop.set()
    for t in threads:
        t.join(timeout=60)
    result.seconds, result.server_cpu, result.db_cpu = Meter.delta(before, after)
    result.ops = len(result.latencies)
    return result


def open_loop(workers: list, meter: Meter, rate: float, warmup: float, duration: float) -> RunResult:
    """Start operations at ``rate`` per second (evenly spaced) on a pool of ``len(workers)`` threads."""
    result = RunResult(offered_rate=rate)
    lock = threading.Lock()
    todo: queue.Queue = queue.Queue()
    measured_from = {"t": None}
    interval = 1.0 / rate

    def run(op):
        lat, errs, first = [], 0, None
        while True:
            scheduled = todo.get()
            if scheduled is None:
                break
            now = time.monotonic()
            if scheduled > now:
                time.sleep(scheduled - now)
            try:
                op()
                ok = True
            except Exception as exc:  # noqa: BLE001
                ok = False
                if first is None:
                    first = f"{type(exc).__name__}: {exc}"[:300]
            done = time.monotonic()
            start = measured_from["t"]
            if start is not None and scheduled >= start and scheduled < start + duration:
                if ok:
                    lat.append(done - scheduled)
                else:
                    errs += 1
        with lock:
            result.latencies.extend(lat)
            result.errors += errs
            if first and result.first_error is None:
                result.first_error = first

    threads = [threading.Thread(target=run, args=(op,), daemon=True) for op in workers]
    for t in threads:
        t.start()
    t0 = time.monotonic() + 0.05
    measure_start = t0 + warmup
    end = measure_start + duration
    k = 0
    before = None
    while True:
        scheduled = t0 + k * interval
        if scheduled >= end:
            break
        if before is None and scheduled >= measure_start:
            before = meter.snapshot()
            measured_from["t"] = measure_start
        # hand the slot to the pool a little ahead of time; the worker waits for its instant
        lead = scheduled - time.monotonic() - 0.002
        if lead > 0:
            time.sleep(lead)
        todo.put(scheduled)
        k += 1
    # wait until the measured window is over, then give the backlog a grace period; operations
    # still not started after it count with their waiting time so far (a lower bound), so an
    # overloaded server shows up in the p99 without making the run last forever
    remaining = end - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    grace_end = time.monotonic() + GRACE
    while not todo.empty() and time.monotonic() < grace_end:
        time.sleep(0.05)
    late = []
    while True:
        try:
            late.append(todo.get_nowait())
        except queue.Empty:
            break
    now = time.monotonic()
    with lock:
        result.latencies.extend(now - s for s in late if s is not None and s >= measure_start)
        result.late_starts = len(late)
    for _ in threads:
        todo.put(None)
    for t in threads:
        t.join(timeout=120)
    after = meter.snapshot()
    result.seconds, result.server_cpu, result.db_cpu = Meter.delta(before, after)
    # the window closes when the last measured op was *scheduled*; throughput is over the window
    result.seconds = duration
    result.ops = len(result.latencies)
    return result
