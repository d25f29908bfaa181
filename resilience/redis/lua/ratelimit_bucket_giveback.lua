-- Give back the tokens of token-bucket reservations whose callers left while waiting.
-- KEYS[1] the TAT (see ratelimit_bucket.lua); foreign data is left for the next decision.
-- ARGV[2] interval (us per token), ARGV[3] the cost to give back
-- Reply: 1 when the bucket changed.
local now = clock_us()
local key = KEYS[1]
if redis.call('TYPE', key)['ok'] ~= 'string' then
  return 0
end
local tat = tonumber(redis.call('GET', key))
if tat == nil or tat <= now then
  return 0
end
-- (Rounded down: what stays is never less than exact; an admission added it rounded up.)
tat = tat - math.floor(tonumber(ARGV[3]) * tonumber(ARGV[2]))
if tat <= now then
  redis.call('DEL', key)
else
  redis.call('SET', key, string.format('%d', tat))
  keep_for(key, (tat - now) / 1000 + 1)
end
return 1
