"""Markdown report of the queue benchmarks against the targets of issue "Queue core", section 6.

    python bench/report.py                     # runs the full bench (a few minutes), then reports
    python bench/report.py --quick             # smoke run (< 60 s): numbers not for comparing
    python bench/report.py --json FILE         # report an existing --benchmark-json file
    python bench/report.py --save FILE         # keep the json of the run

pytest's output goes to stderr; the Markdown table goes to stdout. Every rate is messages per
second at the median call time (``extra_info["msgs_per_s"]`` of bench/test_bench_queue.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CASES = [
    ("send_1", "send 1 (send)"),
    ("send_10", "send 10 (send_batch)"),
    ("send_100", "send 100 (one txn)"),
    ("receive_delete_1", "receive+delete 1"),
    ("receive_delete_10", "receive+delete 10"),
    ("cycle", "full cycle (send, receive, delete 1)"),
]
DURABILITIES = ("fsync", "os")

# Targets of the issue.
BATCH_MIN = 0.8  # send 100 and receive+delete 10: millpond c >= 0.8x raw, both modes
SINGLE_MAX = 1.2  # durable single send: time per send <= 1.2x one durable LMDB commit
THREADS_MIN = 4.0  # 8 threads >= 4x one thread, durable single sends


def run_bench(json_path: str, quick: bool, extra: list[str]) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        os.path.join(HERE, "test_bench_queue.py"),
        "-q",
        "-p",
        "no:cacheprovider",
        f"--benchmark-json={json_path}",
        "--benchmark-columns=median,iqr,rounds",
        "--benchmark-sort=name",
    ]
    if quick:
        cmd.append("--bench-quick")
    cmd += extra
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr, stderr=sys.stderr, check=False)
    if done.returncode != 0:
        sys.exit(f"benchmark run failed (exit {done.returncode})")


def load(json_path: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Index the results by (case, durability, size, impl, threads).

    A case's slices (``extra_info["rep"]``, run interleaved with the other impls of the group)
    are pooled: the rate is taken at the median of all their round times together.
    """
    with open(json_path) as f:
        data = json.load(f)
    pooled: dict[tuple[Any, ...], list[float]] = {}
    per_call: dict[tuple[Any, ...], int] = {}
    per_commit: dict[tuple[Any, ...], list[float]] = {}
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if "msgs_per_s" not in info:
            continue  # a run with --benchmark-disable
        key = (info["case"], info["durability"], info["body_size"], info["impl"], info["threads"])
        # "data" holds every round's time; without it, fall back to the slice's median.
        pooled.setdefault(key, []).extend(bench["stats"].get("data") or [bench["stats"]["median"]])
        per_call[key] = info["msgs_per_call"]
        if "msgs_per_commit" in info:
            per_commit.setdefault(key, []).append(info["msgs_per_commit"])
    out = {}
    for key, times in pooled.items():
        median = statistics.median(times)
        out[key] = {
            "rate": per_call[key] / median,
            "us": median * 1e6 / per_call[key],
            "rounds": len(times),
            "per_commit": statistics.mean(per_commit[key]) if key in per_commit else None,
        }
    return out


def fmt_rate(r: dict[str, Any] | None) -> str:
    return "–" if r is None else f"{r['rate']:,.0f}"


def fmt_ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}x"


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    return None if a is None or b is None else a["rate"] / b["rate"]


def mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**NOT met**")


def report(results: dict[tuple[Any, ...], dict[str, Any]], meta: str) -> str:
    sizes = sorted({k[2] for k in results})
    lines = [f"## millpond queue benchmarks ({meta})", ""]
    lines += [
        "Messages per second at the median call (higher is better). Ratios: millpond / raw "
        "py-lmdb model in the same run.",
        "",
        "| case | durability | body | millpond c msgs/s | py twin msgs/s | raw baseline msgs/s "
        "| ratio c/raw | ratio py/raw |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case, label in CASES:
        for durability in DURABILITIES:
            for size in sizes:
                c, py, raw = (
                    results.get((case, durability, size, impl, 1)) for impl in ("c", "py", "raw")
                )
                if c is None and py is None and raw is None:
                    continue
                lines.append(
                    f"| {label} | {durability} | {size} B | {fmt_rate(c)} | {fmt_rate(py)} "
                    f"| {fmt_rate(raw)} | {fmt_ratio(ratio(c, raw))} "
                    f"| {fmt_ratio(ratio(py, raw))} |"
                )

    lines += [
        "",
        "### Durable single sends from 8 threads vs 1 thread (fsync)",
        "",
        "| body | impl | 1 thread msgs/s | 8 threads msgs/s | ratio 8/1 "
        "| msgs per commit, 8 threads |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    thread_ratios: dict[tuple[int, str], float | None] = {}
    for size in sizes:
        for impl in ("c", "py", "raw"):
            one = results.get(("threads", "fsync", size, impl, 1))
            eight = results.get(("threads", "fsync", size, impl, 8))
            if one is None and eight is None:
                continue
            thread_ratios[(size, impl)] = ratio(eight, one)
            per_commit = (
                "–"
                if eight is None or eight["per_commit"] is None
                else (f"{eight['per_commit']:.1f}")
            )
            lines.append(
                f"| {size} B | {impl} | {fmt_rate(one)} | {fmt_rate(eight)} "
                f"| {fmt_ratio(thread_ratios[(size, impl)])} | {per_commit} |"
            )

    lines += [
        "",
        "### Durable single send vs one durable LMDB commit of one put (fsync)",
        "",
        "| body | one commit µs | raw model send µs | c send µs | py send µs "
        "| raw model / commit | c / commit | py / commit |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    single: dict[int, float | None] = {}
    for size in sizes:
        floor = results.get(("send_1", "fsync", size, "raw-commit", 1))
        raw, c, py = (
            results.get(("send_1", "fsync", size, impl, 1)) for impl in ("raw", "c", "py")
        )

        def us(r: dict[str, Any] | None) -> str:
            return "–" if r is None else f"{r['us']:.0f}"

        def per(r: dict[str, Any] | None, floor: dict[str, Any] | None = floor) -> float | None:
            return None if r is None or floor is None else r["us"] / floor["us"]

        single[size] = per(c)
        lines.append(
            f"| {size} B | {us(floor)} | {us(raw)} | {us(c)} | {us(py)} "
            f"| {fmt_ratio(per(raw))} | {fmt_ratio(per(c))} | {fmt_ratio(per(py))} |"
        )

    # -- targets (millpond c core) ----------------------------------------------------------
    def batch_target(case: str) -> tuple[bool | None, str]:
        got = []
        for durability in DURABILITIES:
            for size in sizes:
                r = ratio(
                    results.get((case, durability, size, "c", 1)),
                    results.get((case, durability, size, "raw", 1)),
                )
                if r is not None:
                    got.append((r, f"{durability}/{size} B {r:.2f}x"))
        if not got:
            return None, "no data"
        return all(r >= BATCH_MIN for r, _ in got), ", ".join(text for _, text in got)

    def all_of(values: dict[Any, float | None], ok: Any) -> bool | None:
        known = [v for v in values.values() if v is not None]
        return None if not known else all(ok(v) for v in known)

    send_ok, send_text = batch_target("send_100")
    recv_ok, recv_text = batch_target("receive_delete_10")
    single_ok = all_of(single, lambda v: v <= SINGLE_MAX)
    c_threads = {k: v for k, v in thread_ratios.items() if k[1] == "c"}
    threads_ok = all_of(c_threads, lambda v: v >= THREADS_MIN)
    lines += [
        "",
        "### Targets (millpond c core)",
        "",
        "| target | result | measured |",
        "|---|---|---|",
        f"| batched send (100) >= {BATCH_MIN}x raw, both modes | {mark(send_ok)} | {send_text} |",
        f"| receive+delete (10) >= {BATCH_MIN}x raw, both modes | {mark(recv_ok)} | {recv_text} |",
        f"| durable single send <= {SINGLE_MAX}x one durable LMDB commit | {mark(single_ok)} | "
        + ", ".join(f"{s} B {v:.2f}x" for s, v in single.items() if v is not None)
        + " |",
        f"| 8 threads >= {THREADS_MIN:g}x one thread (fsync) | {mark(threads_ok)} | "
        + ", ".join(f"{s} B {v:.2f}x" for (s, _), v in c_threads.items() if v is not None)
        + " |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="report this --benchmark-json file instead of running")
    parser.add_argument("--save", help="where to keep the json of the run")
    parser.add_argument("--quick", action="store_true", help="smoke run (few rounds)")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args()
    if args.json:
        path = args.json
    else:
        path = args.save or os.path.join(tempfile.mkdtemp(prefix="millpond-bench-"), "queue.json")
        run_bench(path, args.quick, args.pytest_args)
        print(f"json: {path}", file=sys.stderr)
    with open(path) as f:
        machine = json.load(f).get("machine_info", {})
    meta = ", ".join(
        x
        for x in (
            machine.get("node"),
            f"{machine.get('cpu', {}).get('count', '?')} cpus",
            f"python {machine.get('python_version', '?')}",
            "QUICK smoke run" if (args.quick and not args.json) else None,
        )
        if x
    )
    print(report(load(path), meta))


if __name__ == "__main__":
    main()
