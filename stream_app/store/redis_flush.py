"""The Redis side of the table store: key layout, the atomic flush script (data, changelog offset
and partition ownership in one step), and the back-off after failed flushes.

Layout and consistency argument: docs/state-store.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """Redis key names for one table."""

    prefix: str
    table: str

    def data(self, partition: int) -> str:
        return f"{self.prefix}:{self.table}:{partition}"

    @property
    def offsets(self) -> str:
        return f"{self.prefix}:{self.table}:offsets"

    @property
    def owners(self) -> str:
        return f"{self.prefix}:{self.table}:owners"

    @property
    def pattern(self) -> str:
        return f"{self.prefix}:{self.table}:*"


# One partition's flush chunk, atomically (a script rather than MULTI/EXEC so
# the owner check and the writes are one step):
#   KEYS: data hash, offsets hash, owners hash
#   ARGV: partition, owner token, mode, offset ('' = leave), nsets, k1, v1, ..., then deletes
#   mode 'f': first chunk of a full rewrite: drop hash and offset, claim ownership
#   mode 'c': like 'f', but takes the partition over from any previous owner: the
#             claim that a load could not make because Redis was unreachable then
#   mode 'n': normal chunk: the partition must still be ours
# Returns 0 ok, 1 ownership record missing (Redis wiped under us), 2 other owner.
FLUSH_SCRIPT = """
local owner = redis.call('HGET', KEYS[3], ARGV[1])
if ARGV[3] == 'f' or ARGV[3] == 'c' then
  if ARGV[3] == 'f' and owner and owner ~= ARGV[2] then return 2 end
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
else
  if not owner then return 1 end
  if owner ~= ARGV[2] then return 2 end
end
local nsets = tonumber(ARGV[5])
local i = 6
for _ = 1, nsets do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  i = i + 1
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
end
return 0
"""

FLUSH_OK, FLUSH_WIPED, FLUSH_FENCED = 0, 1, 2


def flush_backoff(failures: int, interval: float, cap: float) -> float:
    """Seconds until the next flush after ``failures`` consecutive failed ones.

    Doubles from the flush interval up to ``cap``: an unreachable Redis is retried
    promptly at first, then gently (no reconnect storm, no log flood), and a
    Redis that comes back is written within ``cap`` seconds.
    """
    if failures <= 0:
        return interval
    return min(cap, interval * 2.0 ** min(failures, 30))


def script_args(partition: int, token: str, mode: str, offset: int | None, sets, dels) -> list:
    args: list = [str(partition), token, mode, "" if offset is None else str(offset), str(len(sets))]
    for k, v in sets:
        args.append(k)
        args.append(v)
    args.extend(dels)
    return args
