-- Stream entry ids compared as numbers ("<ms>-<seq>"), never as strings.  Prepended to every
-- script that compares ids (projections/apply.lua, events/trim.lua): see events/store.py.
local function parse_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then return nil end
  return {tonumber(ms), tonumber(seq)}
end
local function newer(a, b)
  return a[1] > b[1] or (a[1] == b[1] and a[2] > b[2])
end

