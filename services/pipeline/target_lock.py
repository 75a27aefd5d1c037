"""One run per target, taken atomically: the target lock and the script that takes it.

The lock is a STRING ``<prefix>:target_lock:<sha256(path)[:16]>`` holding the run id of the run that
owns the target.  Taking it is one Lua script (``_ACQUIRE_LUA``) that reads the current holder's
state and installs the new run in the same atomic step, so of any number of requests released
together exactly one wins, whatever the lock held:

* **free** (no key): taken;
* **a finished run** (its status says ``state: completed``): taken over;
* **a stale claim**: the holder was never recorded (its run index has no version: no
  ``RunRequested`` was ever appended) *and* its claim marker has expired.  That is a requester that
  died (or failed) between taking the lock and appending its first event; the append follows the
  lock within milliseconds, so a claim older than :data:`CLAIM_WINDOW_MS` (2 minutes) can only be
  an abandoned one.  The claim marker ``{<lock key>}:claim`` is set with the lock, with that TTL;
* **anything else** is active and the request is refused: a recorded run that has not finished
  (whether or not a process still drives it: an orphaned run is ended with ``airfix cancel``, not
  by starting another one on the same tree), or a claim younger than the window.

The script gets every key it touches in KEYS: the lock, its claim marker, the status hash, and the
run index of the holder the caller saw (read just before with GET).  If the holder changed in
between, the script changes nothing and answers ``MOVED``; the caller reads the new holder and tries
again.  Hash slots: the lock and its claim marker share a slot (the marker's hash tag is the lock
key); the status hash and the holder's run index (``{pN}``) live in other slots.  That is atomic on
a single Redis server (with or without replicas).  On Redis Cluster a script may only touch one
slot, so there the caller reads the seen holder's two facts (finished? recorded?) first and hands
them to the script, which touches only the lock and its marker.  Both facts only ever turn true
(a run does not un-finish, a version does not shrink) and the script still refuses (``MOVED``)
if the holder changed, so the one race left is the one the claim window already accepts: a holder
recorded in that instant after more than the window without a record counts as abandoned.
"""

from __future__ import annotations

import json

import redis

from airfix.events.errors import AirfixError
from airfix.events.keys import Keys
from airfix.events.storage.backend import is_cluster
from airfix.events.storage.store import as_str

#: How long a fresh claim protects a lock whose run has not been recorded yet (ms).
CLAIM_WINDOW_MS = 120_000
_MAX_TRIES = 20

_ACQUIRE_LUA = """
-- KEYS[1] lock   KEYS[2] its claim marker   KEYS[3] status hash   KEYS[4] seen holder's run index
-- ARGV[1] the holder the caller saw ('' = none)   ARGV[2] the run to install   ARGV[3] claim window ms
-- On a cluster KEYS[3] and KEYS[4] are absent and ARGV[4] / ARGV[5] say ('1') whether the seen
-- holder was finished / recorded when the caller looked.
local holder = redis.call('GET', KEYS[1]) or ''
if holder ~= ARGV[1] then return {'MOVED', holder} end
if holder == ARGV[2] then return {'SAME', holder} end
if holder ~= '' then
  local done = ARGV[4] == '1'
  local raw = KEYS[3] and redis.call('HGET', KEYS[3], holder)
  if raw then
    local ok, st = pcall(cjson.decode, raw)
    done = ok and type(st) == 'table' and st['state'] == 'completed'
  end
  if not done then
    local recorded = ARGV[5] == '1' and 1 or 0
    if KEYS[4] then recorded = tonumber(redis.call('HGET', KEYS[4], 'version') or '0') or 0 end
    if recorded > 0 then return {'ACTIVE', holder, 'recorded'} end
    local left = redis.call('PTTL', KEYS[2])
    if left > 0 then return {'ACTIVE', holder, tostring(left)} end
  end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return {'OK', holder}
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def claim_key(lock: str) -> str:
    """The claim marker of ``lock``, in the lock's hash slot."""
    return f"{{{lock}}}:claim"


class TargetBusy(AirfixError):
    """Another run holds the target."""

    def __init__(self, holder: str, target: str, lock: str, detail: str) -> None:
        self.holder = holder
        super().__init__(
            f"run {holder} is still active on {target}{detail}; wait for it or cancel it "
            f"(airfix cancel {holder}) (lock key {lock})"
        )


def acquire(
    client: redis.Redis,
    keys: Keys,
    lock: str,
    run_id: str,
    *,
    target: str,
    claim_window_ms: int | None = None,
) -> str:
    """Make ``run_id`` the holder of ``lock``, atomically; returns the previous holder ("" when the
    lock was free, ``run_id`` itself when it already held it).  Raises :class:`TargetBusy`."""
    window = CLAIM_WINDOW_MS if claim_window_ms is None else claim_window_ms
    script = client.register_script(_ACQUIRE_LUA)
    seen = as_str(client.get(lock) or b"")
    for _ in range(_MAX_TRIES):
        index = keys.run_index(seen or run_id)
        if is_cluster(client):
            done, recorded = _holder_facts(client, keys, seen)
            reply = script(
                keys=[lock, claim_key(lock)], args=[seen, run_id, window, done, recorded]
            )
        else:
            reply = script(
                keys=[lock, claim_key(lock), keys.status, index], args=[seen, run_id, window]
            )
        answer, holder = as_str(reply[0]), as_str(reply[1])
        if answer in ("OK", "SAME"):
            return holder
        if answer == "ACTIVE":
            why = as_str(reply[2])
            detail = (
                ""
                if why == "recorded"
                else (
                    f" (being requested: it has no event yet, and its claim expires in {int(why) / 1000:.0f}s)"
                )
            )
            raise TargetBusy(holder, target, lock, detail)
        seen = holder  # MOVED: someone else changed the lock between our GET and the script
    raise AirfixError(f"the target lock {lock} kept changing hands ({_MAX_TRIES} tries); try again")


def _holder_facts(client: redis.Redis, keys: Keys, holder: str) -> tuple[str, str]:
    """Whether ``holder`` has finished (its status says ``completed``) and whether it is recorded
    (its run index has a version), as the acquire script's ``'1'``/``'0'`` arguments."""
    if not holder:
        return "0", "0"
    raw = client.hget(keys.status, holder)
    try:
        status = json.loads(raw) if raw else None
    except ValueError:  # what the script's pcall(cjson.decode) treats as not finished
        status = None
    done = isinstance(status, dict) and status.get("state") == "completed"
    recorded = int(as_str(client.hget(keys.run_index(holder), "version") or b"0") or 0) > 0
    return ("1" if done else "0"), ("1" if recorded else "0")


def release(client: redis.Redis, lock: str, run_id: str) -> bool:
    """Delete ``lock`` (and its claim) if ``run_id`` still holds it; True when it did."""
    return bool(client.register_script(_RELEASE_LUA)(keys=[lock, claim_key(lock)], args=[run_id]))
