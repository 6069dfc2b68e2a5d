"""The Redis side of the state store: key layout, the atomic checkpoint write (states, the source
offset they reflect, and partition ownership in one step), and the back-off after failed writes.

Layout per (table, partition), all keys under one hash tag so that a checkpoint's keys share a
Redis Cluster slot::

    {<prefix>:<table>:<partition>}:s   hash  entity key -> encoded state
    {<prefix>:<table>:<partition>}:m   hash  offset -> last source offset the states reflect
                                             owner  -> token of the worker that may write

Consistency argument and recovery: docs/state-store.md.
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


# One checkpoint chunk of one partition, atomically (a script rather than MULTI/EXEC so the owner
# check and the writes are one step):
#   KEYS: states hash, meta hash
#   ARGV: owner token, mode, offset ('' = leave), nsets, k1, v1, ..., then keys to delete
#   mode 'f': first chunk of a full rewrite: drop the states and the offset, claim the partition
#             unless another worker owns it
#   mode 'c': like 'f', but takes the partition over from any previous owner: the claim that the
#             assignment could not make because Redis was unreachable then
#   mode 'n': normal chunk: the partition must still be ours
# Returns 0 ok, 1 ownership record missing (Redis lost the partition under us), 2 other owner.
FLUSH_SCRIPT = """
local owner = redis.call('HGET', KEYS[2], 'owner')
if ARGV[2] == 'f' or ARGV[2] == 'c' then
  if ARGV[2] == 'f' and owner and owner ~= ARGV[1] then return 2 end
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[2], 'offset')
  redis.call('HSET', KEYS[2], 'owner', ARGV[1])
else
  if not owner then return 1 end
  if owner ~= ARGV[1] then return 2 end
end
local nsets = tonumber(ARGV[4])
local i = 5
for _ = 1, nsets do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  i = i + 1
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[2], 'offset', ARGV[3])
end
return 0
"""

FLUSH_OK, FLUSH_WIPED, FLUSH_FENCED = 0, 1, 2


def script_args(token: str, mode: str, offset: int | None, sets: list, deletes: list) -> list:
    args: list = [token, mode, "" if offset is None else str(offset), str(len(sets))]
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
