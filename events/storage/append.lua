-- Append a batch of events to one run, atomically, with optimistic concurrency and
-- idempotency by event id (no time window).  Everything is checked before the first write,
-- because Redis does not roll a script back.
--
-- KEYS[1] run stream   KEYS[2] run index hash   KEYS[3] partition log   (all share the {pN} tag)
-- ARGV[1] expected version   ARGV[2] n events
-- then per event FIELDS (6) values: event_id, digest, type, at, data, run_id
-- The partition log is never trimmed here: a length cap would drop entries that a consumer group
-- has not read or acknowledged yet.  Retention is `airfix trim` (events/trim.lua), which removes
-- only what every group acknowledged.
local FIELDS = 6
local expected = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local current = tonumber(redis.call('HGET', KEYS[2], 'version') or '0')

-- 1. idempotency: which of these event ids are already recorded?
local seen = 0
local positions = {}
for i = 0, n - 1 do
  local base = 3 + i * FIELDS
  local rec = redis.call('HGET', KEYS[2], 'e:' .. ARGV[base])
  if rec then
    local v, runpos, logpos, dg = string.match(rec, '^(%d+) (%S+) (%S+) (%S+)$')
    if dg ~= ARGV[base + 1] then
      return {'DIFFERENT', ARGV[base]}
    end
    if tonumber(v) ~= expected + 1 + i then
      return {'DIFFERENT', ARGV[base]}
    end
    seen = seen + 1
    positions[#positions + 1] = runpos
    positions[#positions + 1] = logpos
  end
end
if seen == n then
  return {'DUPLICATE', current, unpack(positions)}
end
if seen > 0 then
  return {'PARTIAL', current}
end
if current ~= expected then
  return {'CONFLICT', current}
end

-- 2. write: run stream entry id is 0-<version>, so XRANGE by version needs no index.
local out = {'OK', expected + n}
for i = 0, n - 1 do
  local base = 3 + i * FIELDS
  local v = expected + 1 + i
  local runpos = redis.call('XADD', KEYS[1], '0-' .. v,
    'type', ARGV[base + 2], 'v', v, 'id', ARGV[base], 'run', ARGV[base + 5],
    'at', ARGV[base + 3], 'data', ARGV[base + 4])
  local logpos = redis.call('XADD', KEYS[3], '*',
    'type', ARGV[base + 2], 'v', v, 'id', ARGV[base], 'run', ARGV[base + 5],
    'at', ARGV[base + 3], 'data', ARGV[base + 4])
  redis.call('HSET', KEYS[2], 'e:' .. ARGV[base], v .. ' ' .. runpos .. ' ' .. logpos .. ' ' .. ARGV[base + 1])
  out[#out + 1] = runpos
  out[#out + 1] = logpos
end
redis.call('HSET', KEYS[2], 'version', expected + n)
return out
