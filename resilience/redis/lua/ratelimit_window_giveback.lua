-- Give back sliding-window reservations whose callers left (cancelled while waiting, or
-- their decision was lost): as if they had never been made. Absent members are skipped;
-- foreign data is left for the next decision to drop.
-- KEYS[1] the log, KEYS[2] the meta (see ratelimit_window.lua)
-- ARGV[2..] members '<id>|<cost>'
-- Reply: the number of members removed.
local log, meta = KEYS[1], KEYS[2]
if redis.call('TYPE', log)['ok'] ~= 'zset' then
  return 0
end
local used = nil
if redis.call('TYPE', meta)['ok'] == 'hash' then
  used = tonumber(redis.call('HGET', meta, 'used'))
end
local removed = 0
for i = 2, #ARGV do
  if redis.call('ZREM', log, ARGV[i]) == 1 then
    removed = removed + 1
    if used ~= nil then
      used = used - (tonumber(string.match(ARGV[i], '|(%d+)$')) or 0)
    end
  end
end
if removed > 0 and used ~= nil then
  if used < 0 or redis.call('ZCARD', log) == 0 then
    used = 0
  end
  redis.call('HSET', meta, 'used', used)
end
return removed
