"""The first loop a user meets: from an empty data directory, `rlhf-studio demo`, the web app
with its workers (`rlhf-studio up`, the embedded default unless --database-url/--redis-url),
the simulated labelers doing the demo's work (73 % agreement, a hidden rule the demo's
outputs carry signal for), then rounds on the shipped preset with no `config` overrides.

Targets (issue "The first loop that learns"): round 1's RM validation accuracy within 5
points of the labelers' measured ceiling; the policy's win rate over SFT by the hidden rule
≥ 0.80 with the lower CI bound above 0.65, judged by the simulated labelers through the
round's campaign (`--evaluate`, promote if_better); from an empty data dir to the completed
campaign in ≤ 10 minutes on an idle 2-core machine. Each stage's seconds and the load are
printed, and with --rounds 3 the loop table and the rounds the watch flagged.

    .venv/bin/python bench/bench_first_loop.py [--rounds 1] [--judge letter:e] [--labelers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CLI = [sys.executable, "-m", "app.cli"]
AGREEMENT = 0.73  # the simulated labelers' (simulate loop's default)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seconds(job: dict) -> float | None:
    if not job.get("started_at") or not job.get("finished_at"):
        return None
    start = datetime.fromisoformat(job["started_at"])
    return (datetime.fromisoformat(job["finished_at"]) - start).total_seconds()


def run(args: argparse.Namespace) -> dict:
    """One first loop from an empty data dir; the figures."""
    data = Path(tempfile.mkdtemp(prefix="rlhf-first-loop-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLHF_")}
    env.update(RLHF_DATA_DIR=str(data), RLHF_ENV="development", RLHF_TRAIN_THREADS="1",
               TOKENIZERS_PARALLELISM="false", RLHF_DATABASE_URL=args.database_url,
               RLHF_REDIS_URL=args.redis_url)
    figures: dict = {"data_dir": str(data), "load_before": os.getloadavg(),
                     "labelers": args.labelers}
    t0 = time.monotonic()
    for step in (["db", "upgrade"], ["demo"]):
        subprocess.run(CLI + step, cwd=REPO, env=env, check=True, capture_output=True)
    figures["demo_s"] = time.monotonic() - t0
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    up = subprocess.Popen(CLI + ["up", "--port", str(port), "--no-access-log"], cwd=REPO,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=2).json()["broker"]["ok"]:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(0.2)
        figures["up_s"] = time.monotonic() - t0 - figures["demo_s"]
        report = data / "loop.json"
        cmd = CLI + ["simulate", "loop", "--url", url, "--rounds", str(args.rounds),
                     "--labelers", str(args.labelers), "--judge", args.judge,
                     "--eval-prompts", str(args.evaluate or 60), "--evaluate", str(args.evaluate),
                     "--report", str(report), "--quiet"]
        if args.evaluate:
            cmd.append("--if-better")
        if args.config:
            cmd += ["--config", args.config]
        started = time.monotonic()
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        figures["loop_s"] = time.monotonic() - started
        figures["total_s"] = time.monotonic() - t0
        if done.returncode != 0:
            raise SystemExit(f"simulate loop failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        figures["rounds"] = json.loads(report.read_text())["rounds"]
        with httpx.Client(base_url=url, timeout=30) as http:
            token = _researcher_token(env)
            jobs = http.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"},
                            params={"limit": 200}).json()
        figures["stages"] = [{"round_id": j["round_id"], "kind": j["kind"], "state": j["state"],
                              "seconds": _seconds(j)} for j in sorted(jobs, key=lambda j: j["id"])]
    finally:
        up.terminate()
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
    figures["load_after"] = os.getloadavg()
    return figures


def _researcher_token(env: dict) -> str:
    done = subprocess.run(CLI + ["tokens", "create", "--email", "researcher@example.com"],
                          cwd=REPO, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip().split()[-1]


def _f(x: float | None, digits: int = 3) -> str:
    return "  n/a" if x is None else f"{x:.{digits}f}"


def _win(w: dict | None) -> str:
    if not w or w.get("win_rate") is None:
        return "n/a"
    lo, hi = w["ci95"]
    return f"{w['win_rate']:.2f} [{lo:.2f},{hi:.2f}] {w['n']}"


def show(figures: dict) -> None:
    """Stage seconds, the loop table and the targets."""
    print(f"data dir {figures['data_dir']}; load {figures['load_before']} -> "
          f"{figures['load_after']}")
    print(f"demo (migrate + seed) {figures['demo_s']:.1f} s; web + workers up "
          f"{figures['up_s']:.1f} s; simulated labelers + rounds {figures['loop_s']:.1f} s")
    for stage in figures["stages"]:
        secs = stage["seconds"]
        print(f"  round {stage['round_id']} {stage['kind']:<9} {stage['state']:<10} "
              f"{secs if secs is None else round(secs, 1)} s")
    print("round  RM val  ceiling  RM/hidden  hidden win vs SFT  people vs SFT       "
          "people vs prev      RM on pairs  KL train/test  decision   watch")
    for row in figures["rounds"]:
        ceiling = row.get("server_agreement") or row.get("agreement")
        on_pairs = row.get("rm_on_pairs") or {}  # the RM on people's pairs: vs prev, vs SFT
        print(f"{row['round']:>5}  {_f(row.get('rm_val_accuracy'))}   "
              f"{_f(ceiling)}    {_f((row.get('rm') or {}).get('vs_hidden'))}      "
              f"{_win(row.get('win_vs_sft')):<18} {_win(row.get('campaign_vs_sft')):<19} "
              f"{_win(row.get('campaign_vs_previous')):<19} "
              f"{_f(on_pairs.get('vs_previous'), 2):>4} {_f(on_pairs.get('vs_sft'), 2):>4}   "
              f"{_f(row.get('kl'), 1):>5} / {_f(row.get('test_kl'), 1):<5}  "
              f"{(row.get('decision') or {}).get('action', 'n/a'):<10} "
              f"{', '.join(row.get('watch') or []) or '-'}")
    for row in figures["rounds"]:
        for warning in row.get("warnings") or []:
            print(f"round {row['round']}: {warning}")
    first = figures["rounds"][0]
    win = first.get("campaign_vs_sft") or first.get("win_vs_sft") or {}
    ceiling = first.get("server_agreement") or first.get("agreement") or 0
    print(f"round 1: RM on held-out rankings {_f(first.get('rm_val_accuracy'))} (job), "
          f"{_f((first.get('rm') or {}).get('vs_labels'))} on the next round's rankings; "
          f"labelers' agreement {_f(ceiling)} over all rankings; labelers vs the hidden rule "
          f"{_f(first.get('labelers_vs_hidden'))}")
    gap = ceiling - (first.get("rm_val_accuracy") or 0) if ceiling else float("nan")
    won = (win.get("win_rate") or 0) >= 0.8 and (win.get("ci95") or [0])[0] > 0.65
    print(f"targets: RM within 5 points of the ceiling: {gap:.3f} "
          f"({'met' if gap <= 0.05 else 'NOT met' if gap == gap else 'n/a'}); "
          f"win ≥ 0.80 with CI low > 0.65: "
          f"{win.get('win_rate') or 0:.3f}, {(win.get('ci95') or [0])[0]:.3f} "
          f"({'met' if won else 'NOT met'});"
          f" ≤ 600 s: {figures['total_s']:.0f} s "
          f"({'met' if figures['total_s'] <= 600 else 'NOT met'})")

    ceiling = people_ceiling(figures.get("labelers", 4), (first.get("win_vs_sft") or {}),
                             win.get("n") or 0)
    if ceiling:
        print(ceiling)


def people_ceiling(labelers: int, hidden: dict, n: int) -> str:
    """What the simulated judges let people's win rate read: they pick the rule's choice on
    a share a of compare tasks, so a policy the rule prefers on h of the prompts reads as
    a·h + (1 − a)(1 − h) in expectation, and the target (≥ 0.80, lower bound > 0.65) is met
    with a binomial chance over n judgments."""
    from scipy.stats import binom

    from app.evaluation.stats import wilson_cc
    from simulation.labelers import judge_accuracy, make_profiles, pool_noise

    h = hidden.get("win_rate")
    if h is None or not n:
        return ""
    profiles = make_profiles(labelers)
    a = judge_accuracy(profiles, pool_noise(AGREEMENT, profiles))
    expected = a * h + (1 - a) * (1 - h)
    met = sum(binom.pmf(k, n, expected) for k in range(n + 1)
              if k / n >= 0.8 and wilson_cc(k / n, n)[0] > 0.65)
    return (f"the simulated judges pick the rule's choice on {a:.3f} of pairs: people's win "
            f"reads {a:.3f} at most, {expected:.3f} for this policy (hidden win {h:.2f}), and "
            f"the win target is met by chance {met:.2f} over {n} judgments")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--labelers", type=int, default=4)
    parser.add_argument("--judge", default="letter:e")
    parser.add_argument("--evaluate", type=int, default=60, help="test prompts per round's "
                        "campaign, promoted if_better (0: no campaign, promote always)")
    parser.add_argument("--config", default="", help="per-stage overrides (none by default)")
    parser.add_argument("--database-url", default="", help="empty: the embedded SQLite file")
    parser.add_argument("--redis-url", default="", help="empty: the embedded transport")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = run(args)
    show(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
