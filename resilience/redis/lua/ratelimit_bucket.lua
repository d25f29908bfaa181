-- Token bucket as GCRA: one key holding the theoretical arrival time (TAT, us). The bucket
-- holds `capacity` tokens, refilled by one every `interval` us; a full bucket is no key.
-- A batch of requests from one process, decided in order.
-- KEYS[1]  the TAT (a string: whole microseconds)
-- ARGV[2]  interval (us per token), ARGV[3] capacity (burst)
-- ARGV[4..] per request: cost, max_wait (us; -1 = wait as long as needed)
-- Reply: {repaired (0/1), now (us), then per request: admitted (0/1), wait (us)}.
-- An admitted request with wait > 0 took its tokens now (the TAT moved) and may proceed at
-- now + wait; over any interval of length d at most capacity + d / interval is admitted.
local now = clock_us()
local key = KEYS[1]
local interval = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local repaired = drop_foreign(key, 'string')
local stored = redis.call('GET', key)
local tat = tonumber(stored)
if stored and tat == nil then
  repaired = 1
end
if tat == nil or tat < now then
  tat = now
end
local reply = {repaired, now}
local i = 4
while i <= #ARGV do
  local cost, max_wait = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  -- The TAT stays a whole number of microseconds, rounded up at every admission: a double
  -- near today's clock (1.8e15 us) could not hold its fraction, and rounding up never
  -- admits early (at worst a microsecond later per admission in a row).
  local later = tat + math.ceil(cost * interval)
  local wait = (later - now) - capacity * interval
  if wait < 0.001 then
    wait = 0
  else
    wait = math.ceil(wait)
  end
  if max_wait >= 0 and wait > max_wait then
    reply[#reply + 1] = 0
  else
    tat = later
    reply[#reply + 1] = 1
  end
  reply[#reply + 1] = wait
  i = i + 2
end
if tat > now then
  redis.call('SET', key, string.format('%d', tat))
  keep_for(key, (tat - now) / 1000 + 1)
end
return reply
