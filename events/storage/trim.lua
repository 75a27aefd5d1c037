-- Remove one finished run's entries from its partition log, but only if every consumer group on
-- that log has acknowledged every one of them: read (at or before the group's last-delivered id)
-- and not pending.  Then record the trim; with ARGV[3] == '1' also delete the run's stream (it was
-- archived).  Everything is checked before the first write (Redis does not roll a script back), and
-- in the same atomic step as the delete, so a group created or lagging meanwhile is never skipped.
--
-- KEYS[1] partition log   KEYS[2] trimmed hash   KEYS[3] the run's stream   (all share {pN})
-- ARGV[1] run id   ARGV[2] the trim record (JSON)   ARGV[3] '1': delete the run's stream
-- ARGV[4..] the run's entry ids in the log
-- parse_id and newer come from events/stream_ids.lua, prepended when the script is loaded.

for a = 4, #ARGV do
  if not parse_id(ARGV[a]) then return redis.error_reply('bad entry id ' .. tostring(ARGV[a])) end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOGROUP', ''} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return {'NOGROUP', ''} end
for _, g in ipairs(groups) do
  local info = {}
  for k = 1, #g, 2 do info[g[k]] = g[k + 1] end
  local name = info['name']
  local last = parse_id(info['last-delivered-id'])
  for a = 4, #ARGV do
    if newer(parse_id(ARGV[a]), last) then return {'UNREAD', name, ARGV[a]} end
  end
  if tonumber(info['pending']) > 0 then
    for a = 4, #ARGV do
      if #redis.call('XPENDING', KEYS[1], name, ARGV[a], ARGV[a], 1) > 0 then
        return {'PENDING', name, ARGV[a]}
      end
    end
  end
end

local removed = 0
for a = 4, #ARGV, 500 do
  local chunk = {}
  for b = a, math.min(a + 499, #ARGV) do chunk[#chunk + 1] = ARGV[b] end
  removed = removed + redis.call('XDEL', KEYS[1], unpack(chunk))
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] == '1' then redis.call('DEL', KEYS[3]) end
return {'OK', removed}
