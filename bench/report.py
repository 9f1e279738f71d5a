"""Write ``docs/benchmarks.md`` and ``docs/benchmarks.png`` from ``docs/bench-results.json``.

Why separate: each bench script measures and merges its figures into the results file; this one
only renders, so the document always shows the figures of the last run of every script, with the
machine load noted next to each.

    .venv/bin/python bench/report.py
"""

from __future__ import annotations

import json
from typing import Any

from common import RESULTS, ROOT

DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks.png"


def ok(value: float, target: float, lower_is_better: bool = True) -> str:
    good = value <= target if lower_is_better else value >= target
    return "met" if good else "**not met**"


#: What profiling found and what changed (figures from the quick relay bench, load 3-4; kept here
#: because they are a one-off history, not something a bench run re-measures).
OPTIMIZATIONS = """## What was optimized (profile first: py-spy on the daemon during `bench/relay.py`)

| step | throughput (events/s) | replay 10,000 (ms) | relay p50 / p99 at 50 sessions (ms) |
|---|---|---|---|
| before (Tornado WebSocket client in the bench) | 7,570 | 947 | 2.35 / 30.5 |
| frames batched per loop turn, written by hand (no task + `send()` per frame) | 9,434 | 587 | (load spike) |
| bench client: raw socket reader instead of Tornado's client (measures the daemon, not the client) | 10,379 | 17 | (load spike) |
| `session/update` delivered inline (the ACP SDK made a task + span per notification); hand-formatted timestamps; WAL checkpoints moved off the event loop into a worker thread | 15,503 | 15 | 2.22 / 58 |
| WebSocket sockets get `TCP_NODELAY`: Nagle held the first chunks of every turn behind a delayed ACK (first chunk of a turn: 40 ms → 1 ms) | | | |
| bench clients connect before the turns start (50 handshakes no longer land in the measured stream) | | | quick bench, same minute: before 0.74-1.06 / 21-23, after 0.93-3.18 / 4.8-6.8 |
| WAL checkpoints every 1,000 rows beside live commits, plus every 4,000 rows one right behind that holds commits so the WAL starts over (under a continuous stream it never did: it grew without bound) | 17,500-21,500 | 25-27 | 0.9-1.1 / 11-14 (it was 27-29 with the hold at any moment) |
| the venv on Debian's `/usr/bin/python3` 3.11.2 instead of the pyenv 3.11.7 build `python3` resolved to (same machine, back to back; start → ready 248 → 166 ms) | 25,494 → 30,907 | 18 → 18 | 0.46 / 25.3 → 0.56 / 13.8 (medians of 3 runs) |
| event history kept as plain tuples, which the garbage collector stops tracking, and `gc.freeze()` after start-up and after the ACP SDK import: full collections had scanned every kept event and ~50k start-up objects, 20-85 ms each (logged with `gc.callbacks`), pausing every stream | 41,436 | 20 | 0.47 / 4.6 (runs 4.1-4.9) |
| start over a 193 MiB history (50 sessions of 10,000 events): restored sessions keep 100 events in memory (older ones come from the store, as they already did past the window), and the interrupted-turn check asks the store; SQLite's quick check skipped when the file is exactly as a clean close left it | | | start → `/health`: 1,439 → 240 ms (clean stop), 1,653 → 496 ms (after `kill -9`) |
| bench agent: one pacing thread writes every paced session's chunks (its 50 threads had stamped a chunk, then queued for the interpreter lock); latency taken when the frame reaches the client's socket (kernel receive timestamp), the client's own read time kept beside it | | | same daemon, same hour: socket 1.06 / 14.6, read 1.50 / 18.3 (medians of 4 runs) |
| checkpoints: with them switched off (experiment only) the p99 halved, 7.2 → 3.5 ms (medians of 6 runs, same hour): they were the tail. Now a due checkpoint waits for a pause in the commits (2 ms; at most 100 ms), one that had commits beside it is followed by a catch-up at the next pause so the WAL starts over without a hold, and commits are held only past 8,000 WAL frames, after a sync beside live commits | 17,408 → 19,580 | | 0.72 / 7.56 → 0.83 / 4.42 (medians of 8 runs, alternating builds; p99 runs 5.7-13.0 → 3.1-7.4) |
| WebSocket writes through Tornado's public `write_message`: no hand-made frames, no private stream. The frames of one loop turn still go out in one write per connection, as one message of newline-delimited JSON (cut at 256 Ki characters). The call costs ~4 µs more than a bare `stream.write` (the task it wraps the write in; micro-benchmark over 50 sockets), seen as +0.05 ms at the 50-session p50; replay is faster because the client parses fewer WebSocket frames | 64,116 → 65,946 | 12 → 7.5 | 0.23 / 1.89 → 0.28 / 1.78 (medians of 8 quick runs each, alternating builds, load 0.2-0.8) |
| tried and reverted: commits in a writer thread (group commit with no timer: what arrives during one commit goes into the next) | 15,006 → 16,374 | | 1.55 / 14.4 → 2.68 / 14.2 (6 runs each, alternating): the hand-offs between the thread and the loop (interpreter lock, wake-ups) cost more than the commit they take off the loop |

What remains, and why (measured, not guessed):

- **This machine's speed moves every figure.** The floor (an interpreter importing only asyncio and
  Tornado's server modules, measured in each run) ranged 95-154 ms on earlier days and is 205 ms in
  this run; a plain Python loop of 10^7 additions took 2.5-3.9 s here today. CPU-bound figures
  (start, throughput, the heavy-history start) scale with it; compare a figure with its own run's
  floor, not with another day's.
- **start → ready ≤ 150 ms is out of reach on this machine.** The floor alone is 205 ms in this
  run: no Tornado daemon can answer `/health` before Tornado is imported. Ours adds the rest of its
  imports (its own modules, python-daemon, lockfile, sqlite3, platformdirs, argparse: ~35 ms by
  `-X importtime`), python-daemon's double fork, the database and the bind (~20 ms after the fork,
  strace timeline). Not done: reporting READY before Tornado is imported (the port would accept
  before the server can answer). Estimated and not done: forking the daemon before the command's
  own imports, so that both import at once on the two cores: importing the command's modules alone
  takes 125 ms, the server's alone 260 ms and both 280 ms, so at most ~20-30 ms is to be had, for a
  second process protocol.
- **relay p99 at 50 sessions.** Checkpoints are still the tail, though a smaller one: in one
  A/B late in this stop (3 rounds of 2 runs, alternating) the p99 was 8.0 ms as shipped, 7.5 ms
  with checkpoints every 100 rows instead of 1,000, and 4.7 ms (runs 3.7-10.2) with no checkpoint at
  all (experiment only: the WAL then grows ~25 MB/s). Why they cost so much: every single-event
  commit writes ~10 KB of WAL (a whole 4 KiB page, more when B-tree pages split; measured), 33
  times the event, so 2,500 events/s is 25 MB/s that some checkpoint must fsync, and an fsync
  that overlaps a burst slows the loop's WAL writes. Even with none, this VM today puts the p99
  near 5 ms: the bench's 50 sessions stream in step (each turn starts together and paces 20 ms),
  so the p99 is also the time to take in, commit and send a burst of 50 on this CPU. Single runs
  still reach 10-40 ms when other tenants load this VM's CPU or disk; hence three runs per size,
  and the range. Not done: relaxing publish-after-commit or checkpointing without `fsync` (both
  trade away what issue 5 guarantees), or storing events outside SQLite's pages (an append-only
  log per session would write each event once, a redesign of the store).
- **throughput.** 17,000-21,000 events/s on this machine today (24,000-44,000 on earlier days with a
  faster floor); no change of this stop targeted it.

Kept on purpose: one SQLite transaction per event-loop turn before publishing (durability rule),
events serialized once at append (every client gets the same text). Start-up: the detached `start`
command now leaves with `os._exit` once the daemon reported READY, skipping an interpreter teardown
that measured 0.2-0.3 s under load; the daemon itself was ready in ~20-40 ms after the fork
(DaemonContext.open ~7 ms). Idle RSS needed no change: the ACP SDK (pydantic) was already imported
only when the first agent starts. New sessions: Qwen Code answers `session/new` in 300-400 ms even
when running, so the spare agent also prepares the next session ahead of time.
"""  # noqa: E501 (markdown table rows)


def render(r: dict[str, Any]) -> str:
    s, rel, ses = r.get("startup", {}), r.get("relay", {}), r.get("sessions", {})
    lines = [
        "# Benchmarks: qwen-daemon vs `qwen serve`",
        "",
        "Written by `make bench` (`bench/*.py`, then `bench/report.py`); raw figures in",
        "`docs/bench-results.json`. Both daemons run the same pinned Qwen Code 0.24.4 against the same",
        "fake OpenAI-compatible server on 127.0.0.1, in the same run. Machine: 2 cores, shared with other",
        "test suites: the load average at measurement is noted per section, and latency tails in",
        "particular move with it. Medians unless said otherwise.",
        "",
        f"The daemon ran on {s.get('interpreter') or rel.get('interpreter') or 'the venv Python'}, the",
        "interpreter `make` picks: the distribution's `/usr/bin/python3` when it is 3.11 or newer. On this",
        "machine it ran the relay ~35% faster and started ~80 ms sooner than a default pyenv build of",
        "3.11.7 (see the table of optimizations).",
        "",
        "![headline figures](benchmarks.png)",
        "",
    ]
    if s:
        lines += [
            f"## Start and idle memory (load {s['load_average']}, {s['runs']} runs)",
            "",
            "| | qwen-daemon | qwen serve | ratio | target | |",
            "|---|---|---|---|---|---|",
            f"| start → ready (ms) | {s['ours_start_ms']:.0f} "
            f"(`start` returns; `/health` {s['ours_health_ms']:.0f}) "
            f"| {s['serve_ready_ms']:.0f} | {s['serve_ready_ms'] / s['ours_health_ms']:.1f}x faster | ≤ 150 "
            f"| {ok(s['ours_start_ms'], 150)} |",
            f"| idle RSS (MiB) | {s['ours_idle_rss_mib']:.1f} | {s['serve_idle_rss_mib']:.0f} "
            f"(with its pre-started agent: {s['serve_idle_tree_rss_mib']:.0f}) "
            f"| {s['serve_idle_rss_mib'] / s['ours_idle_rss_mib']:.1f}x smaller | ≤ 35 "
            f"| {ok(s['ours_idle_rss_mib'], 35)} |",
            "",
        ]
        if "python_tornado_ms" in s:
            lines += [
                f"The floor in the same run: the interpreter alone starts in {s['python_ms']:.0f} ms, and"
                f" an interpreter that only imports asyncio and Tornado's server modules (no daemon code)"
                f" {s['python_tornado_ms']:.0f} ms; `start` adds forking, daemonizing, our modules, the"
                " database and binding to that.",
                "",
            ]
        big = s.get("big_database")
        if big:
            lines += [
                f"Over a heavy user's history ({big['db_mib']:.0f} MiB: 50 sessions of 10,000 events), "
                f"`/health` answers {big['clean_ms']:.0f} ms after `start` when the daemon was stopped"
                f" cleanly, {big['unclean_ms']:.0f} ms after a `kill -9` (SQLite's quick check then reads"
                " every page). Before restored sessions kept only their last 100 events in memory and"
                " the check was skipped after a clean stop: 1,439 and 1,653 ms (on a day when the"
                " floor above was 95-154 ms).",
                "",
            ]
    if ses:
        o, q = ses["ours"], ses["serve"]
        lines += [
            f"## New session, real Qwen Code (load {ses['load_average']})",
            "",
            "| | qwen-daemon (ms) | qwen serve (ms) | ratio | target | |",
            "|---|---|---|---|---|---|",
            f"| cold workspace (agent boots) | {o['cold_ms']:.0f} | {q['cold_ms']:.0f} "
            f"| {q['cold_ms'] / o['cold_ms']:.1f}x | | |",
            f"| warm workspace (agent up) | {o['warm_ms']:.0f} | {q['warm_ms']:.0f} "
            f"| {q['warm_ms'] / o['warm_ms']:.1f}x | ≤ 100 | {ok(o['warm_ms'], 100)} |",
            f"| warm spare (last session there closed) | {o['spare_ms']:.0f} | n/a | | ≤ 100 "
            f"| {ok(o['spare_ms'], 100)} |",
            "",
            "Ours is warm because the workspace's agent prepared the next ACP session ahead of time",
            "(`spare_agents` on, the default); without that, Qwen Code's own `session/new` on a running",
            "agent measured 370-430 ms here. Each warm case comes a second after the previous session.",
            "",
            "Memory, daemon plus every agent process, sessions in one workspace (MiB):",
            "",
            "| sessions | qwen-daemon | qwen serve | ratio |",
            "|---|---|---|---|",
        ]
        for n, mine in ses["ours_memory_mib"].items():
            theirs = ses["serve_memory_mib"][n]
            lines.append(f"| {n} | {mine:.0f} | {theirs:.0f} | {theirs / mine:.2f}x |")
        lines.append("")
    if rel:
        pace = rel["pace"]
        lines += [
            f"## Relay, throughput, replay (bench agent; load {rel['load_average']})",
            "",
            f"Agent write → WebSocket receipt; each session streams {pace['chunks_per_session']} chunks,",
            f"one every {pace['interval_ms']} ms; medians of {rel['latency']['1'].get('runs', 1)} runs each,",
            "with the range of the runs' p99. Receipt is when the frame reached the client's socket (the",
            "kernel's receive timestamp): the daemon's cost, which the targets are about. The bench client",
            "serves all the connections in one process on the same two cores, so the time it got round to",
            "reading a frame (last column) adds its own queueing. `qwen serve` is not in this table: it",
            "needs Qwen Code as its agent, so its relay cannot be isolated from the LLM path the same way.",
            "",
            "| sessions | p50 (ms) | p99 (ms) | p99 range (ms) | events per run | target "
            "| read by the client: p50 / p99 (ms) |",
            "|---|---|---|---|---|---|---|",
        ]
        for n, v in rel["latency"].items():
            target = ""
            if n == "50":
                met = v["p50_ms"] <= 1 and v["p99_ms"] <= 5
                target = "p50 ≤ 1, p99 ≤ 5: " + ("met" if met else "**not met**")
            low, high = v.get("p99_range", [v["p99_ms"], v["p99_ms"]])
            p50, p99 = f"{v['p50_ms']:.2f}", f"{v['p99_ms']:.2f}"
            read = f"{v['read_p50_ms']:.2f} / {v['read_p99_ms']:.2f}" if "read_p50_ms" in v else ""
            cells = [n, p50, p99, f"{low:.2f}-{high:.2f}", v["events"], target, read]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        if "checkpoints" in rel:
            lines += ["", f"WAL checkpoints the daemon ran during this script: {rel['checkpoints']}."]
        low, high = rel.get("throughput_range", [0, 0])
        spread = f"(median of 5 runs, {low:,.0f}-{high:,.0f}) " if high else ""
        lines += [
            "",
            f"- aggregate throughput, 10 sessions bursting: **{rel['throughput_eps']:,.0f} events/s** "
            f"{spread}(target ≥ 20,000: {ok(rel['throughput_eps'], 20000, lower_is_better=False)})",
            f"- replay of {rel['replay_events']:,} events over a WebSocket: **{rel['replay_ms']:.0f} ms** "
            f"(target ≤ 200: {ok(rel['replay_ms'], 200)})",
            "",
        ]
    lines.append(OPTIMIZATIONS)
    return "\n".join(lines)


def plot(r: dict[str, Any]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return False
    s, ses = r.get("startup"), r.get("sessions")
    if not s or not ses:
        return False
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    panels = [
        ("start → ready (ms)", s["ours_health_ms"], s["serve_ready_ms"]),
        ("idle daemon RSS (MiB)", s["ours_idle_rss_mib"], s["serve_idle_rss_mib"]),
    ]
    for ax, (title, ours, theirs) in zip(axes[:2], panels, strict=True):
        bars = ax.bar(["qwen-daemon", "qwen serve"], [ours, theirs], color=["#2a7", "#c64"])
        ax.bar_label(bars, fmt="%.0f")
        ax.set_title(title)
    counts = list(ses["ours_memory_mib"])
    x = range(len(counts))
    ax = axes[2]
    ax.bar(
        [i - 0.2 for i in x],
        [ses["ours_memory_mib"][c] for c in counts],
        0.4,
        label="qwen-daemon",
        color="#2a7",
    )
    ax.bar(
        [i + 0.2 for i in x],
        [ses["serve_memory_mib"][c] for c in counts],
        0.4,
        label="qwen serve",
        color="#c64",
    )
    ax.set_xticks(list(x), [f"{c} sessions" for c in counts])
    ax.set_title("daemon + agents RSS, one workspace (MiB)")
    ax.legend()
    ax = axes[3]
    kinds = ["cold_ms", "warm_ms"]
    ax.bar(
        [i - 0.2 for i in range(2)], [ses["ours"][k] for k in kinds], 0.4, label="qwen-daemon", color="#2a7"
    )
    ax.bar(
        [i + 0.2 for i in range(2)], [ses["serve"][k] for k in kinds], 0.4, label="qwen serve", color="#c64"
    )
    ax.set_xticks([0, 1], ["cold workspace", "warm workspace"])
    ax.set_yscale("log")
    ax.set_title("new session ready (ms, log scale)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)
    return True


def main() -> None:
    results = json.loads(RESULTS.read_text())
    DOC.write_text(render(results) + "\n")
    plotted = plot(results)
    print(f"wrote {DOC}" + (f" and {PLOT}" if plotted else ""))


if __name__ == "__main__":
    main()
