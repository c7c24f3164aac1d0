"""A pool of simulated labelers working through the real HTTP API, concurrently.

Each labeler is its own user with its own bearer token and HTTP connection, and loops as
a person's client does: lease (`GET /api/v1/tasks/next`), think, heartbeat during a long
think, now and then skip, and submit with an idempotency key. A submit that meets a 5xx or
a broken connection is sent again with the same key (the server stores it once), and now
and then a successful submit is replayed on purpose to check that it gets the same answer.
"""

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from simulation import labelers as decide
from simulation.accounts import Account
from simulation.judges import Judge, true_order
from simulation.labelers import Profile
from simulation.noise import pool_agreement
from simulation.report import Receipt, Tally

SUBMIT_ATTEMPTS = 4
EXPECTED_K = 4  # the task size the report's expected agreement is computed for


@dataclass
class PoolSettings:
    """How many labelers, for how long, on what work, and how they behave."""

    url: str
    labelers: int = 4
    seconds: float | None = None  # stop leasing after this long
    tasks: int | None = None  # stop after this many submissions in all
    kinds: tuple[str, ...] = ()  # empty: whatever kind the queue serves next
    judge: str = "letter:e"
    agreement: float = 0.73  # target pairwise agreement between honest labelers
    think: float = 0.0  # mean seconds before each submit (uniform on 0..2x)
    skip_rate: float = 0.02
    replay_rate: float = 0.02
    careless: float = 0.0  # share of labelers who answer at random
    adversarial: float = 0.0  # share who invert what they perceive
    spread: float = 0.35  # spread of the labelers' noise (log-normal sigma)
    seed: int = 0
    watch: bool = False  # keep polling an empty queue until stopped
    poll: float = 2.0  # seconds between polls of an empty queue
    timeout: float = 60.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Labeler:
    account: Account
    profile: Profile
    client: httpx.AsyncClient
    rng: random.Random
    kinds: list[str | None] = field(default_factory=list)
    served: int = 0


class Pool:
    """Run with `await pool.run()`; `pool.tally` holds what happened."""

    def __init__(self, settings: PoolSettings, accounts: list[Account], judge: Judge) -> None:
        self.settings = settings
        self.accounts = accounts
        self.judge = judge
        self.profiles = decide.make_profiles(
            len(accounts), seed=settings.seed, spread=settings.spread,
            careless=settings.careless, adversarial=settings.adversarial)
        self.noise = decide.pool_noise(settings.agreement, self.profiles)
        self.tally = Tally()
        self._claimed = 0
        self._busy = 0  # labelers holding a lease right now
        self._deadline = (None if settings.seconds is None
                          else time.monotonic() + settings.seconds)
        self._stopped = False
        self._warned: set[str] = set()
        self.on_warning: Callable[[str], None] = lambda message: None

    def expected_agreement(self, k: int = EXPECTED_K) -> float:
        """What the noise model predicts for the honest labelers on K-output tasks."""
        honest = [p.noise for p in self.profiles if p.behaviour == "honest"]
        return pool_agreement(k, [self.noise.sigma(k, s) for s in honest])

    def stop(self) -> None:
        """Lease nothing more; labelers finish the task in hand."""
        self._stopped = True

    async def run(self, *, revoke_tokens: bool = True) -> Tally:
        """Every labeler works until the time, the task budget or the queue runs out;
        then the run's tokens are revoked unless told otherwise (a loop reuses them)."""
        self.tally = Tally()
        workers = []
        for account, profile in zip(self.accounts, self.profiles, strict=True):
            # Idle connections are dropped after 2 s, before the server's keep-alive timeout
            # (uvicorn: 5 s), or a request sent as the server closes one fails to read.
            client = httpx.AsyncClient(
                base_url=self.settings.url, timeout=self.settings.timeout,
                headers={"Authorization": f"Bearer {account.token}"},
                limits=httpx.Limits(max_connections=2, keepalive_expiry=2.0))
            rng = random.Random(f"{self.settings.seed}-{profile.index}")
            # No kinds given: "any task", then compare tasks, which "any task" leaves out (a
            # person sees the Compare tile beside it), so campaigns get judged too.
            kinds: list[str | None] = list(self.settings.kinds) or [None, "compare"]
            rng.shuffle(kinds)
            workers.append(_Labeler(account, profile, client, rng, kinds))
        try:
            await asyncio.gather(*(self._work(w) for w in workers))
        finally:
            self.tally.finished = time.monotonic()
            await asyncio.gather(*(self._close(w, revoke_tokens) for w in workers))
        return self.tally

    async def revoke(self) -> None:
        """Revoke every labeler's token of this run (best effort)."""
        async with httpx.AsyncClient(base_url=self.settings.url, timeout=30) as client:
            for account in self.accounts:
                try:
                    await client.delete(f"/api/v1/tokens/{account.token_id}",
                                        headers={"Authorization": f"Bearer {account.token}"})
                except httpx.HTTPError:
                    pass

    # --- the loop -----------------------------------------------------------------------

    def _over(self) -> bool:
        return self._stopped or (self._deadline is not None and time.monotonic() >= self._deadline)

    def _claim(self) -> bool:
        """Reserve one submission of the task budget (returned by `_release`)."""
        if self.settings.tasks is not None and self._claimed >= self.settings.tasks:
            return False
        self._claimed += 1
        return True

    def _release(self) -> None:
        self._claimed -= 1

    def _keeps_polling(self) -> bool:
        return self.settings.watch or self.settings.seconds is not None

    async def _work(self, w: _Labeler) -> None:
        empty, quiet = 0, 0
        while w.kinds and not self._over() and self._claim():
            kind = w.kinds[w.served % len(w.kinds)]
            w.served += 1
            task = await self._lease(w, kind)
            if task is None:
                self._release()
                empty += 1
                if empty >= len(w.kinds):  # every kind came back empty (or failed)
                    # A task another labeler is submitting is locked, and the queue skips
                    # locked tasks: an empty queue is final only when it is empty twice
                    # with nobody busy in between.
                    quiet = quiet + 1 if not self._busy else 0
                    if not self._keeps_polling() and quiet >= 2:
                        return
                    await self._nap(self.settings.poll * w.rng.uniform(0.5, 1.5)
                                    if self._keeps_polling() else 0.2)
                    empty = 0
                continue
            empty, quiet = 0, 0
            self._busy += 1
            try:
                if not await self._do(w, task):
                    self._release()
            finally:
                self._busy -= 1

    async def _nap(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._over() and time.monotonic() < end:
            await asyncio.sleep(min(0.25, max(0.0, end - time.monotonic())))

    async def _request(self, w: _Labeler, op: str, method: str, url: str,
                       **kw: Any) -> httpx.Response | None:
        """One timed request; a broken connection is counted and answers None."""
        start = time.perf_counter()
        try:
            resp = await w.client.request(method, url, **kw)
        except httpx.HTTPError as exc:
            self.tally.error(op, "connection", f"{type(exc).__name__}: {exc}")
            return None
        self.tally.latency[op].append(time.perf_counter() - start)
        if resp.status_code >= 300:
            self.tally.error(op, resp.status_code, resp.text)
        return resp

    async def _lease(self, w: _Labeler, kind: str | None) -> dict[str, Any] | None:
        params = {"kind": kind} if kind else {}
        resp = await self._request(w, "lease", "GET", "/api/v1/tasks/next", params=params)
        if resp is None or resp.status_code >= 500:
            await asyncio.sleep(0.5)
            return None
        if resp.status_code == 204:
            return None
        if resp.status_code == 422 and kind is not None:
            # This server does not know the kind (e.g. compare before it exists): drop it.
            w.kinds.remove(kind)
            self._warn(f"the server refuses task kind {kind!r}: {resp.text[:200]}")
            return None
        if resp.status_code != 200:
            await asyncio.sleep(0.5)
            return None
        return dict(resp.json())

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.on_warning(message)

    async def _do(self, w: _Labeler, task: dict[str, Any]) -> bool:
        """Think, maybe skip, answer and submit one leased task; True when stored."""
        s, aid = self.settings, task["assignment_id"]
        answer = self._answer(w, task)
        if answer is None or w.rng.random() < s.skip_rate:
            reason = "simulated skip" if answer is not None else f"cannot do {task['kind']}"
            await self._skip(w, aid, reason)
            return False
        think = await self._think(w, aid)
        body = {"assignment_id": aid, "idempotency_key": f"sim-{uuid.uuid4().hex}",
                "seconds_spent": round(think), **answer}
        stored = await self._submit(w, task, body)
        if stored is None:
            return False
        self._record(w, task, body, stored)
        if w.rng.random() < s.replay_rate:  # a double click: the same key, the same answer
            await self._replay(w, task, body, stored)
        return True

    async def _skip(self, w: _Labeler, aid: Any, reason: str) -> None:
        """Skip the leased task, saying why."""
        resp = await self._request(w, "skip", "POST", f"/api/v1/assignments/{aid}/skip",
                                   json={"reason": reason})
        self.tally.skipped += resp is not None and resp.status_code == 200

    async def _think(self, w: _Labeler, aid: Any) -> float:
        """Take a person's time over the task (none without --think); the seconds taken."""
        s = self.settings
        think = w.rng.uniform(0.0, 2.0 * s.think) if s.think > 0 else 0.0
        if think >= 1.0:  # a person's page keeps its lease alive while they work
            await asyncio.sleep(think / 2)
            resp = await self._request(w, "heartbeat", "POST",
                                       f"/api/v1/assignments/{aid}/heartbeat")
            self.tally.heartbeats += resp is not None and resp.status_code == 200
            await asyncio.sleep(think / 2)
        elif think > 0:
            await asyncio.sleep(think)
        return think

    async def _replay(self, w: _Labeler, task: dict[str, Any], body: dict[str, Any],
                      stored: dict[str, Any]) -> None:
        """Submit the same body again; count a replay that does not return the same row."""
        self.tally.replays += 1
        again = await self._submit(w, task, body, op="replay")
        if again is None or again.get("id") != stored.get("id"):
            self.tally.replay_mismatches += 1

    def _answer(self, w: _Labeler, task: dict[str, Any]) -> dict[str, Any] | None:
        kind, p, rng, judge = task["kind"], w.profile, w.rng, self.judge
        if kind == "rank":
            return decide.rank_answer(judge, task, p, self.noise, rng)
        if kind == "compare":
            return decide.compare_answer(judge, task, p, self.noise, rng)
        if kind == "rate":
            return decide.rate_answer(judge, task, p, rng)
        if kind == "demonstrate":
            return decide.demonstrate_answer(judge, task, p, rng)
        if kind == "write_prompt":
            serial = f"{w.account.email.split('@')[0]}-{uuid.uuid4().hex[:10]}"
            return decide.write_prompt_answer(task, p, rng, serial)
        self._warn(f"no simulated answer for task kind {kind!r}: skipping those")
        return None

    async def _submit(self, w: _Labeler, task: dict[str, Any], body: dict[str, Any],
                      op: str = "submit") -> dict[str, Any] | None:
        """POST the submission, again with the same key after a 5xx or a broken
        connection; the stored submission's answer, or None."""
        url = f"/api/v1/tasks/{task['task_id']}/submit"
        for attempt in range(SUBMIT_ATTEMPTS):
            if attempt:
                self.tally.retries += 1
                await asyncio.sleep(0.2 * 2**attempt)
            resp = await self._request(w, op, "POST", url, json=body)
            if resp is None or resp.status_code >= 500:
                continue
            return dict(resp.json()) if resp.status_code == 200 else None
        self.tally.abandoned += 1  # never answered: whether it was stored is unknown
        return None

    def _record(self, w: _Labeler, task: dict[str, Any], body: dict[str, Any],
                stored: dict[str, Any]) -> None:
        kind, tid = task["kind"], task["task_id"]
        self.tally.submitted[kind] += 1
        self.tally.receipts.append(Receipt(kind=kind, id=stored["id"], task_id=tid,
                                           assignment_id=task["assignment_id"],
                                           user_email=w.account.email))
        if kind == "rank":
            self.tally.rankings[tid].append(body["ranking"])
            if w.profile.behaviour == "honest":
                self.tally.honest_rankings[tid].append(body["ranking"])
            if tid not in self.tally.truth:
                prompt = (task.get("prompt") or {}).get("text", "")
                cands = [(c["id"], c["text"]) for c in task["candidates"]]
                self.tally.truth[tid] = true_order(self.judge, prompt, cands)
                self.tally.texts[tid] = (prompt, dict(cands))
        elif kind == "compare":
            self.tally.choices[tid].append(str(body["choice"]))

    async def _close(self, w: _Labeler, revoke: bool) -> None:
        try:  # the run's token is of no further use: revoke it (best effort)
            if revoke:
                await w.client.delete(f"/api/v1/tokens/{w.account.token_id}")
        except httpx.HTTPError:
            pass
        await w.client.aclose()
