-- Apply a batch of projection ops and advance the checkpoint, in one atomic step.
-- Entries at or below the checkpoint are no-ops, so a redelivered batch changes nothing.
-- Everything is validated before the first write (Redis does not roll back a script).
--
-- ARGV[1] is the mode:
--   'ckpt'  KEYS[1] checkpoint hash (field = partition log key, value = last applied entry id);
--           ARGV[2] checkpoint field.  The normal path.
--   'once'  KEYS[1] retry-marker hash; ARGV[2] marker field.  A dead-letter retry: the entry sits
--           behind the partition's checkpoint (later entries moved it on), so the fence is the
--           marker instead: present -> nothing is applied; absent -> apply, then set it.
-- KEYS[2..] keys the ops write (all in the view's slot)
-- ARGV[3]   number of entries
-- per entry: entry_id, number of ops; per op: name, key index, number of args, args...
local ALLOWED = {SET=1, DEL=1, ZADD=1, ZREM=1, HSET=1, HDEL=1, SADD=1, SREM=1,
                 ZREMRANGEBYRANK=1, REBUILD_LIST=1, SETNEWER=1}

-- parse_id and newer come from events/stream_ids.lua, prepended when the script is loaded.

-- pass 1: validate
local mode = ARGV[1]
if mode ~= 'ckpt' and mode ~= 'once' then return redis.error_reply('bad mode ' .. tostring(mode)) end
local n = tonumber(ARGV[3])
local i = 4
local entries = {}
for e = 1, n do
  local id = parse_id(ARGV[i])
  if not id then return redis.error_reply('bad entry id ' .. tostring(ARGV[i])) end
  local nops = tonumber(ARGV[i + 1])
  local ops = {}
  i = i + 2
  for o = 1, nops do
    local name, kidx, nargs = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    if not ALLOWED[name] then return redis.error_reply('op not allowed: ' .. tostring(name)) end
    if not kidx or kidx < 1 or kidx > #KEYS then return redis.error_reply('bad key index') end
    if not nargs then return redis.error_reply('bad arg count') end
    if name == 'REBUILD_LIST' or name == 'SETNEWER' then
      local ref = tonumber(ARGV[i + 3])
      if not ref or ref < 1 or ref > #KEYS then return redis.error_reply('bad key reference') end
    end
    ops[#ops + 1] = {name, kidx, i + 3, nargs}
    i = i + 3 + nargs
  end
  entries[#entries + 1] = {id = id, ops = ops}
end

-- pass 2: apply what is past the checkpoint (or everything, once)
local ckpt = {-1, -1}
if mode == 'ckpt' then
  ckpt = parse_id(redis.call('HGET', KEYS[1], ARGV[2]) or '0-0')
elseif redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then
  return 0
end
local last = nil
local applied = 0
for _, entry in ipairs(entries) do
  local id = entry.id
  if newer(id, ckpt) then
    for _, op in ipairs(entry.ops) do
      local name, key, a, na = op[1], KEYS[op[2]], op[3], op[4]
      local args = {}
      for k = 0, na - 1 do args[#args + 1] = ARGV[a + k] end
      if name == 'REBUILD_LIST' then
        -- args: source zset key index, length.  The zset's members are "<position>|<value>" with
        -- score 0, so ZREVRANGE is newest first whatever order the partitions were processed in.
        local src = KEYS[tonumber(args[1])]
        local members = redis.call('ZREVRANGE', src, 0, tonumber(args[2]) - 1)
        redis.call('DEL', key)
        for _, m in ipairs(members) do
          redis.call('RPUSH', key, string.sub(m, string.find(m, '|', 1, true) + 1))
        end
      elseif name == 'SETNEWER' then
        -- args: position key index, position (fixed width), value: keep the newest value only
        local poskey = KEYS[tonumber(args[1])]
        local cur = redis.call('GET', poskey) or ''
        if args[2] > cur then
          redis.call('SET', poskey, args[2])
          redis.call('SET', key, args[3])
        end
      else
        redis.call(name, key, unpack(args))
      end
    end
    ckpt = id
    last = id
    applied = applied + 1
  end
end
if last then
  redis.call('HSET', KEYS[1], ARGV[2], last[1] .. '-' .. last[2])
end
return applied
