-- A bulkhead for the fleet: at most `max_concurrent` permits held at once, each a lease
-- that its holder renews; at most `max_queued` waiters, served in arrival order (FIFO
-- across the fleet). One call does everything a process needs at a time: give permits
-- back, drop waiters that gave up, renew what it holds, and decide its candidates.
-- KEYS[1] holders  sorted set: permit id -> lease expiry (us)
-- KEYS[2] queue    sorted set: waiter id -> arrival (us): the order
-- KEYS[3] waiting  sorted set: waiter id -> expiry of its place (us), renewed by polling
-- ARGV[2] max_concurrent, ARGV[3] max_queued, ARGV[4] lease (us), ARGV[5] place (us),
-- ARGV[6] key TTL (ms); then counted lists: releases, give-ups, renewals (ids), and
-- candidates (id, may queue 0/1).
-- Reply: {repaired, held now, queued now, per candidate: 1 granted, 2 queued, 0 refused}.
local now = clock_us()
local holders, queue, waiting = KEYS[1], KEYS[2], KEYS[3]
local max_concurrent, max_queued = tonumber(ARGV[2]), tonumber(ARGV[3])
local lease, place, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local repaired = math.min(1, drop_foreign(holders, 'zset') + drop_foreign(queue, 'zset')
                             + drop_foreign(waiting, 'zset'))

-- Holders that stopped renewing (dead, or cut off) give their permit back by expiring;
-- waiters that stopped polling lose their place.
redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
local lost = redis.call('ZRANGEBYSCORE', waiting, '-inf', now)
if #lost > 0 then
  redis.call('ZREM', queue, unpack(lost))
  redis.call('ZREMRANGEBYSCORE', waiting, '-inf', now)
end

local arg = 7
local function ids()
  local n = tonumber(ARGV[arg])
  local list = {}
  for i = 1, n do
    list[i] = ARGV[arg + i]
  end
  arg = arg + n + 1
  return list
end
local releases, giveups, renewals = ids(), ids(), ids()
if #releases > 0 then
  redis.call('ZREM', holders, unpack(releases))
end
if #giveups > 0 then
  redis.call('ZREM', queue, unpack(giveups))
  redis.call('ZREM', waiting, unpack(giveups))
end
for _, id in ipairs(renewals) do
  redis.call('ZADD', holders, 'XX', now + lease, id)
end

local reply = {repaired, 0, 0}
local n = tonumber(ARGV[arg])
for i = 1, n do
  local id, may_queue = ARGV[arg + 2 * i - 1], ARGV[arg + 2 * i]
  local free = max_concurrent - redis.call('ZCARD', holders)
  local rank = redis.call('ZRANK', queue, id)
  local result = 0
  if rank ~= false and rank ~= nil then
    if rank < free then
      redis.call('ZREM', queue, id)
      redis.call('ZREM', waiting, id)
      redis.call('ZADD', holders, now + lease, id)
      result = 1
    else
      redis.call('ZADD', waiting, 'XX', now + place, id)
      result = 2
    end
  elseif redis.call('ZCARD', queue) == 0 and free > 0 then
    redis.call('ZADD', holders, now + lease, id)
    result = 1
  elseif may_queue == '1' and redis.call('ZCARD', queue) < max_queued then
    redis.call('ZADD', queue, now, id)
    redis.call('ZADD', waiting, now + place, id)
    result = 2
  end
  reply[#reply + 1] = result
end

reply[2] = redis.call('ZCARD', holders)
reply[3] = redis.call('ZCARD', queue)
keep_for(holders, ttl)
keep_for(queue, ttl)
keep_for(waiting, ttl)
return reply
