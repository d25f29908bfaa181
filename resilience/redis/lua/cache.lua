-- A cache entry shared by the fleet, and the lock that makes one process compute a missing
-- (or refresh a stale) entry while the others wait (or serve the stale value).
-- KEYS[1] the entry: a hash, v = the value's JSON, f = fresh until (us); the key's TTL is
--         the end of its stale period, so a stale entry is one that exists past `f`
-- KEYS[2] the lock: a string holding its holder's token, with a TTL (the lease)
-- ARGV[2] op, then:
--   get        token, lease (ms), single flight (0/1), drop (0/1: the value read last was
--              unreadable: delete it first), stale (us)
--              -> {repaired, 1 fresh | 2 stale, refresh it | 3 stale, being refreshed |
--                  4 missing, compute it | 5 missing, being computed, value or lock TTL}
--   set        token, json, ttl (us), stale (us), locked (0/1: store only while holding it)
--              -> {repaired, 1 stored | 0 not (the lock was lost: invalidated, or expired)}
--   renew      token, lease (ms) -> {repaired, 1 | 0}
--   release    token -> {repaired, 1 | 0}
--   invalidate -> {repaired, 1}
local now = clock_us()
local entry, lock = KEYS[1], KEYS[2]
local op = ARGV[2]
local repaired = 0
-- A lock key of another type would never let SET NX succeed: drop it (a fresh hit, the hot
-- path, does not look at the lock at all).
local function lock_usable()
  repaired = math.max(repaired, drop_foreign(lock, 'string'))
end

local function holds(token)
  return redis.call('GET', lock) == token
end

if op == 'get' then
  local token, lease, single, drop = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
  local stale = tonumber(ARGV[7])
  if drop == '1' then
    redis.call('DEL', entry)
  end
  local found = redis.pcall('HMGET', entry, 'v', 'f')
  if found['err'] then  -- not a hash: someone else's data
    redis.call('DEL', entry)
    repaired, found = 1, {false, false}
  end
  local value, fresh_until = found[1], tonumber(found[2])
  if value and fresh_until == nil then
    redis.call('DEL', entry)
    repaired, value = 1, false
  elseif value and now >= fresh_until + stale then
    redis.call('DEL', entry)  -- past its stale period (Redis's own expiry may lag a little)
    value = false
  end
  if value then
    if now < fresh_until then
      return {repaired, 1, value}
    end
    lock_usable()
    if redis.call('SET', lock, token, 'NX', 'PX', lease) then
      return {repaired, 2, value}
    end
    return {repaired, 3, value}
  end
  if single == '0' then
    return {repaired, 4, ''}
  end
  lock_usable()
  if redis.call('SET', lock, token, 'NX', 'PX', lease) then
    return {repaired, 4, ''}
  end
  return {repaired, 5, redis.call('PTTL', lock)}
end
lock_usable()
repaired = math.max(repaired, drop_foreign(entry, 'hash'))
if op == 'set' then
  local token, json, ttl, stale, locked = ARGV[3], ARGV[4], tonumber(ARGV[5]),
                                          tonumber(ARGV[6]), ARGV[7]
  if locked == '1' and not holds(token) then
    return {repaired, 0}
  end
  redis.call('DEL', entry)
  redis.call('HSET', entry, 'v', json, 'f', string.format('%d', now + ttl))
  keep_for(entry, (ttl + stale) / 1000)
  if locked == '1' then
    redis.call('DEL', lock)
  end
  return {repaired, 1}
elseif op == 'renew' then
  if holds(ARGV[3]) then
    redis.call('PEXPIRE', lock, tonumber(ARGV[4]))
    return {repaired, 1}
  end
  return {repaired, 0}
elseif op == 'release' then
  if holds(ARGV[3]) then
    redis.call('DEL', lock)
    return {repaired, 1}
  end
  return {repaired, 0}
elseif op == 'invalidate' then
  redis.call('DEL', entry, lock)
  return {repaired, 1}
end
return redis.error_reply('ERR unknown cache op ' .. op)
