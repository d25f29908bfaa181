-- Shared by every script of resilience.redis (prepended to each).
-- ARGV[1] is '' in production: the time is the Redis server's (TIME), never a client's.
-- Tests of the decisions pass a time in microseconds instead, to drive a fake clock.
local function clock_us()
  if ARGV[1] ~= '' then
    return tonumber(ARGV[1])
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Data read back from Redis is untrusted: a key holding another type than the one a
-- script keeps there (someone else's data, a bug) is dropped and the script starts afresh.
-- Returns 1 when it dropped the key.
local function drop_foreign(key, kind)
  local found = redis.call('TYPE', key)['ok']
  if found == 'none' or found == kind then
    return 0
  end
  redis.call('DEL', key)
  return 1
end

-- Expire `key` `ms` milliseconds from now (at least 1 ms); keys without a TTL never leave.
-- Redis expires keys on its own clock, which a test's fake clock does not move: under a
-- fake clock keys are kept a minute, and the scripts' own time checks decide alone.
local function keep_for(key, ms)
  if ARGV[1] ~= '' then
    ms = 60000
  elseif ms < 1 then
    ms = 1
  end
  redis.call('PEXPIRE', key, math.ceil(ms))
end
