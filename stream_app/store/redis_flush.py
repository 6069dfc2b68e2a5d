"""The Redis side of the state store: key layout, the atomic claim and checkpoint writes (states,
the source offset they reflect, and partition ownership in one step), and the back-off after
failed writes.

Layout per (table, partition), all keys under one hash tag so that everything a claim or a
checkpoint touches shares a Redis Cluster slot (one script call, one node)::

    {<prefix>:<table>:<partition>}:s   hash  entity key -> encoded state
    {<prefix>:<table>:<partition>}:m   hash  offset -> last source offset the states reflect
                                             owner  -> token of the worker that may write
                                             claims -> how many times the partition was claimed
    {<prefix>:<table>:<partition>}:p   hash  a large checkpoint's chunks until its last one
                                             (entity key -> state, '' = delete)

Why the claim count and the offset check: with replicas (Redis Cluster, Sentinel) a failover can
lose the last writes a master acknowledged. Redis may then hold an older checkpoint than the one
its owner last wrote (the offset check refuses to write changes on top of it: the owner rewrites
the partition whole), or an older claim than the newest one (a lower claim count tells a lost
claim from a newer owner). Argument: docs/state-store.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """Redis key names of one table partition."""

    prefix: str
    table: str
    partition: int

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}:{self.table}:{self.partition}}}"

    @property
    def states(self) -> str:
        return f"{self.tag}:s"

    @property
    def meta(self) -> str:
        return f"{self.tag}:m"

    @property
    def pending(self) -> str:
        return f"{self.tag}:p"

    def all(self) -> list[str]:
        """The KEYS of both scripts, in their order."""
        return [self.states, self.meta, self.pending]


# The claim an assignment makes, atomically with reading the checkpoint's offset: from now on a
# previous owner's late writes are refused (its claim count is lower), and its unfinished large
# checkpoint, if any, is void.
#   KEYS: states hash, meta hash, pending hash      ARGV: owner token
# Returns {offset or nil, this claim's number}.
CLAIM_SCRIPT = """
local claim = redis.call('HINCRBY', KEYS[2], 'claims', 1)
redis.call('HSET', KEYS[2], 'owner', ARGV[1])
redis.call('DEL', KEYS[3])
return {redis.call('HGET', KEYS[2], 'offset'), claim}
"""

# One checkpoint chunk of one partition, atomically (a script rather than MULTI/EXEC so the checks
# and the writes are one step):
#   KEYS: states hash, meta hash, pending hash
#   ARGV: owner token, mode, offset ('' = leave), expected offset ('*' = unchecked, '' = none),
#         our claim number, nsets, k1, v1, ..., then keys to delete
#   mode 'f': first chunk of a full rewrite: drop the states and the offset, own the partition,
#             unless a claim at least as recent as ours belongs to another worker
#   mode 'c': like 'f', but a new claim that takes the partition over from anyone: the claim an
#             assignment could not make because Redis was unreachable then
#   mode 'n': write the states (the last chunk also the offset)
#   mode 'S', 's': the first / a further chunk of a large incremental checkpoint, kept aside
#   mode 'm': its last chunk: the chunks kept aside, this one and the offset, in one step
#   'n', 'S', 's', 'm' need the partition ours at the expected offset.
# Returns {status, claim number}: 0 ok, 1 no owner record (Redis lost the partition), 2 another
# owner (fenced), 3 another owner with an older claim (Redis lost ours), 4 ours at another offset
# than expected (Redis lost checkpoints, or holds one we did not write).
FLUSH_SCRIPT = """
local owner = redis.call('HGET', KEYS[2], 'owner')
local claims = tonumber(redis.call('HGET', KEYS[2], 'claims') or '0')
local mode = ARGV[2]
local claim = tonumber(ARGV[5])
if mode == 'c' then
  claim = claims + 1
elseif owner and owner ~= ARGV[1] then
  if claims >= claim then return {2, claim} end
  if mode ~= 'f' then return {3, claim} end
elseif not owner and mode ~= 'f' then
  return {1, claim}
elseif mode ~= 'f' and ARGV[4] ~= '*' then
  local offset = redis.call('HGET', KEYS[2], 'offset') or ''
  if offset ~= ARGV[4] then return {4, claim} end
end
if mode == 'f' or mode == 'c' then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('HDEL', KEYS[2], 'offset')
  redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'claims', math.max(claims, claim))
elseif mode == 'S' or mode == 'n' then
  redis.call('DEL', KEYS[3])  -- what an interrupted large checkpoint kept aside is void
elseif mode == 'm' then
  local kept = redis.call('HGETALL', KEYS[3])
  for j = 1, #kept, 2 do
    if kept[j + 1] == '' then
      redis.call('HDEL', KEYS[1], kept[j])
    else
      redis.call('HSET', KEYS[1], kept[j], kept[j + 1])
    end
  end
  redis.call('DEL', KEYS[3])
end
local aside = mode == 'S' or mode == 's'
local nsets = tonumber(ARGV[6])
local i = 7
for _ = 1, nsets do
  redis.call('HSET', aside and KEYS[3] or KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  if aside then
    redis.call('HSET', KEYS[3], ARGV[i], '')
  else
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
  i = i + 1
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[2], 'offset', ARGV[3])
end
return {0, claim}
"""

FLUSH_OK, FLUSH_WIPED, FLUSH_FENCED = 0, 1, 2
# Script answers the backend turns into FLUSH_WIPED for the checkpoint (rewrite the partition whole
# from memory): Redis went back in time under a live owner (a failover lost acknowledged writes).
FLUSH_CLAIM_LOST, FLUSH_STALE = 3, 4


def script_args(
    token: str, mode: str, offset: int | None, expected: int | None | str, claim: int, sets: list, deletes: list
) -> list:
    """ARGV of FLUSH_SCRIPT; ``expected`` None = no offset, "*" = unchecked."""
    want = "*" if expected == "*" else "" if expected is None else str(expected)
    args: list = [token, mode, "" if offset is None else str(offset), want, str(claim), str(len(sets))]
    for k, v in sets:
        args.append(k)
        args.append(v)
    args.extend(deletes)
    return args


def flush_backoff(failures: int, interval: float, cap: float) -> float:
    """Seconds until the next write after ``failures`` consecutive failed ones.

    Doubles from the interval up to ``cap``: an unreachable Redis is retried promptly at first,
    then gently (no reconnect storm, no log flood), and a Redis that comes back is written within
    ``cap`` seconds.
    """
    if failures <= 0:
        return interval
    return min(cap, interval * 2.0 ** min(failures, 30))
