-- Sliding window (a sliding log): never more than `capacity` cost admitted in any interval
-- (t - per, t]. A batch of requests from one process, decided in order.
-- KEYS[1]  the log: a sorted set, member '<id>|<cost>', score = admission time (us)
-- KEYS[2]  the meta: a hash, field 'used' = the sum of the costs in the log
-- ARGV[2]  capacity (the rate), ARGV[3] per (us)
-- ARGV[4..] per request: id, cost, max_wait (us; -1 = wait as long as needed)
-- Reply: {repaired (0/1), now (us), then per request: admitted (0/1), wait (us)}.
-- An admitted request with wait > 0 is a reservation: it counts from `now + wait`, when
-- its caller may proceed. Reservations are made in non-decreasing time order, so checking
-- the one window that ends at the new admission is enough for every window.
local now = clock_us()
local log, meta = KEYS[1], KEYS[2]
local capacity = tonumber(ARGV[2])
local per = tonumber(ARGV[3])
local repaired = math.min(1, drop_foreign(log, 'zset') + drop_foreign(meta, 'hash'))

local function cost_of(member)
  return tonumber(string.match(member, '|(%d+)$'))
end

local used = tonumber(redis.call('HGET', meta, 'used'))
if redis.call('ZCARD', log) == 0 then
  used = 0
elseif used == nil then
  -- The meta is missing or unreadable: count the log again (dropping unreadable members).
  repaired = 1
  used = 0
  for _, member in ipairs(redis.call('ZRANGE', log, 0, -1)) do
    local cost = cost_of(member)
    if cost == nil then
      redis.call('ZREM', log, member)
    else
      used = used + cost
    end
  end
end

-- What was admitted at or before now - per no longer counts.
local gone = redis.call('ZRANGEBYSCORE', log, '-inf', now - per)
if #gone > 0 then
  for _, member in ipairs(gone) do
    used = used - (cost_of(member) or 0)
  end
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - per)
end
if used < 0 then
  used = 0
end

local last = nil
local newest = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
if #newest == 2 then
  last = tonumber(newest[2])
end

-- The earliest time >= start at which `cost` fits: after the oldest entries, whose costs
-- cover the excess, have left the window.
local function schedule(start, cost)
  local excess = used + cost - capacity
  if excess <= 0 then
    return start
  end
  local index = 0
  while true do
    local chunk = redis.call('ZRANGE', log, index, index + 31, 'WITHSCORES')
    if #chunk == 0 then
      return nil
    end
    for i = 1, #chunk, 2 do
      excess = excess - (cost_of(chunk[i]) or 0)
      if excess <= 0 then
        local at = tonumber(chunk[i + 1]) + per
        if at < start then
          at = start
        end
        return at
      end
    end
    index = index + 32
  end
end

local reply = {repaired, now}
local i = 4
while i <= #ARGV do
  local id, cost, max_wait = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local start = now
  if last ~= nil and last > now then
    start = last
  end
  local at = schedule(start, cost)
  if at == nil then
    return redis.error_reply('ERR cost ' .. cost .. ' above capacity ' .. capacity)
  end
  local wait = at - now
  if max_wait >= 0 and wait > max_wait then
    reply[#reply + 1] = 0
  else
    redis.call('ZADD', log, at, id .. '|' .. cost)
    used = used + cost
    last = at
    reply[#reply + 1] = 1
  end
  reply[#reply + 1] = wait
  i = i + 3
end

if last ~= nil then
  redis.call('HSET', meta, 'used', used)
  keep_for(log, (last + per - now) / 1000)
  keep_for(meta, (last + per - now) / 1000)
end
return reply
