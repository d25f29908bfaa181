-- One circuit breaker for the fleet. Every transition happens here, atomically, so each is
-- a compare-and-set on the circuit's epoch (bumped by every transition): outcomes a
-- process counted under another epoch than the current one are dropped, and a probe's
-- outcome only counts for the half-open period that leased it.
--
-- KEYS[1] state     hash: st (closed/open/half_open), ep, iso, oa (opened at), ou (open
--                   until), op (consecutive opens), ps (probe successes), ho (half open
--                   since), lfp (last failed prober), ls/lsb (latest success, and whose),
--                   n_succ/n_fail/n_canc/n_slow/n_rej (lifetime counts of the fleet)
-- KEYS[2] failures  sorted set: the failures since the fleet's latest success (consecutive
--                   mode), member '<proc>:<flush>:<i>', score = when (us), newest kept
-- KEYS[3] window    ratio mode: a hash of time slices ('<slice>:c|f|s'), or a list of
--                   flushes ('<proc> <calls> <failures> <slow>', newest first)
-- KEYS[4] probes    sorted set: half-open probe leases, score = lease expiry (us)
-- KEYS[5] runs      hash: proc -> when its current run of failures began (us)
-- KEYS[6] seen      sorted set: proc -> its latest flush (us); forgotten processes leave
-- KEYS[7] own       hash: proc -> '<calls> <failures> <slow> <when>', its own share of a
--                   time window as it last reported it
--
-- ARGV[2] op: sync | probe | done | isolate | reset      ARGV[3] the process's token
-- ARGV[4..15] the breaker's options (see below), then the op's own arguments.
-- Reply: the circuit as it is after the op (see the end), then the op's result.
local now = clock_us()
local state_key, failures_key, window_key, probes_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local runs_key, seen_key, own_key = KEYS[5], KEYS[6], KEYS[7]
local op, proc = ARGV[2], ARGV[3]
local threshold = tonumber(ARGV[4])       -- consecutive failures that trip (0: ratio mode)
local failure_ratio = tonumber(ARGV[5])   -- nil unless ratio mode
local slow_ratio = tonumber(ARGV[6])      -- nil unless set
local window_kind = ARGV[7]               -- 'count', 'time' or '' (no window)
local window_size = tonumber(ARGV[8])     -- calls, or us
local minimum = tonumber(ARGV[9])         -- calls the window needs before a ratio counts
local success_threshold = tonumber(ARGV[10])
local max_probes = tonumber(ARGV[11])
local probe_lease = tonumber(ARGV[12])    -- us
local fairness = tonumber(ARGV[13])       -- us: the last failed prober waits this long
local veto = tonumber(ARGV[14])           -- us: how long another's success is evidence
local ttl = tonumber(ARGV[15])            -- ms every key is kept after the last use
local arg = 16

local function next_arg()
  local value = ARGV[arg]
  arg = arg + 1
  return value
end

local repaired = 0
if drop_foreign(state_key, 'hash') + drop_foreign(failures_key, 'zset')
    + drop_foreign(probes_key, 'zset') + drop_foreign(runs_key, 'hash')
    + drop_foreign(seen_key, 'zset') + drop_foreign(own_key, 'hash') > 0 then
  repaired = 1
end
if window_kind == 'time' then
  repaired = math.max(repaired, drop_foreign(window_key, 'hash'))
elseif window_kind == 'count' then
  repaired = math.max(repaired, drop_foreign(window_key, 'list'))
end

local fields = {'st', 'ep', 'iso', 'oa', 'ou', 'op', 'ps', 'ho', 'lfp', 'ls', 'lsb',
                'n_succ', 'n_fail', 'n_canc', 'n_slow', 'n_rej'}
local raw = redis.call('HMGET', state_key, unpack(fields))
local s = {}
for i, name in ipairs(fields) do
  s[name] = raw[i]
end
local function number(name)
  local value = tonumber(s[name])
  if s[name] and value == nil then
    repaired = 1
  end
  return value or 0
end
local st = s.st or 'closed'
if st ~= 'closed' and st ~= 'open' and st ~= 'half_open' then
  repaired = 1
  st = 'closed'
end
local ep, iso, oa, ou, opens = number('ep'), number('iso'), number('oa'), number('ou'), number('op')
local ps, ho, ls = number('ps'), number('ho'), number('ls')
local lfp, lsb = s.lfp or '', s.lsb or ''
local counts = {n_succ = number('n_succ'), n_fail = number('n_fail'), n_canc = number('n_canc'),
                n_slow = number('n_slow'), n_rej = number('n_rej')}

local function count(name, delta)
  counts[name] = counts[name] + (tonumber(delta) or 0)
end

local function clear_counts()
  redis.call('DEL', failures_key, window_key, own_key)
end

local function transition(to)
  st = to
  ep = ep + 1
  ps = 0
  redis.call('DEL', probes_key)
end

local function close()
  transition('closed')
  iso, oa, ou, opens = 0, 0, 0, 0
  clear_counts()
end

local function open(duration)
  transition('open')
  opens = opens + 1
  oa = now
  ou = now + duration
  clear_counts()
end

-- The open state ends by the clock alone: nothing extends it but a failed probe.
if st == 'open' and iso == 0 and now >= ou then
  transition('half_open')
  ho = now
end
if st == 'half_open' then
  redis.call('ZREMRANGEBYSCORE', probes_key, '-inf', now)
end

-- The window's totals after adding a flush (calls, failures, slow), and each process's
-- share of them: exact for a count window (its flushes); for a time window, what each
-- process last reported of its own window (fresher than the window).
local function window_totals(calls, failed, slow)
  local shares = {}
  if window_kind == 'time' then
    local width = window_size / 100
    local current = math.floor(now / width)
    if calls > 0 then
      -- (string.format: Lua writes large numbers as 1.8e+15 when it concatenates them.)
      local slice = string.format('%d', current)
      redis.call('HINCRBY', window_key, slice .. ':c', calls)
      redis.call('HINCRBY', window_key, slice .. ':f', failed)
      redis.call('HINCRBY', window_key, slice .. ':s', slow)
    end
    local totals = {c = 0, f = 0, s = 0}
    local flat = redis.call('HGETALL', window_key)
    local old = {}
    for i = 1, #flat, 2 do
      local slice, kind = string.match(flat[i], '^(%-?%d+):([cfs])$')
      slice = tonumber(slice)
      if slice == nil or slice <= current - 100 then
        old[#old + 1] = flat[i]
      else
        totals[kind] = totals[kind] + (tonumber(flat[i + 1]) or 0)
      end
    end
    if #old > 0 then
      redis.call('HDEL', window_key, unpack(old))
    end
    local reported = redis.call('HGETALL', own_key)
    for i = 1, #reported, 2 do
      local c, f, sl, t = string.match(reported[i + 1], '^(%d+) (%d+) (%d+) (%d+)$')
      if c ~= nil and tonumber(t) > now - window_size then
        shares[reported[i]] = {tonumber(c), tonumber(f), tonumber(sl)}
      end
    end
    return totals.c, totals.f, totals.s, shares
  end
  if calls > 0 then
    redis.call('LPUSH', window_key, proc .. ' ' .. calls .. ' ' .. failed .. ' ' .. slow)
  end
  local c, f, sl = 0, 0, 0
  local entries = redis.call('LRANGE', window_key, 0, window_size - 1)
  local kept = 0
  for _, entry in ipairs(entries) do
    local who, ec, ef, es = string.match(entry, '^(%S+) (%d+) (%d+) (%d+)$')
    if who ~= nil then
      c, f, sl = c + ec, f + ef, sl + es
      local share = shares[who] or {0, 0, 0}
      shares[who] = {share[1] + ec, share[2] + ef, share[3] + es}
    end
    kept = kept + 1
    if c >= window_size then
      break
    end
  end
  redis.call('LTRIM', window_key, 0, kept - 1)
  return c, f, sl, shares
end

local function crosses(calls, failed, slow)
  if calls < minimum or calls <= 0 then
    return false
  end
  if failure_ratio ~= nil and failed / calls >= failure_ratio then
    return true
  end
  return slow_ratio ~= nil and slow / calls >= slow_ratio
end

-- A process is failing alone when another process had a success after its current run of
-- failures began (and recently): its failures are its own, not the fleet's.
local alone_cache = {}
local function failing_alone(who)
  local cached = alone_cache[who]
  if cached ~= nil then
    return cached
  end
  local since = tonumber(redis.call('HGET', runs_key, who))
  cached = since ~= nil and lsb ~= who and ls > since and ls >= now - veto
  alone_cache[who] = cached
  return cached
end

-- A closed-state flush: the process's outcomes since its previous flush. Returns whether
-- it tripped the circuit.
local function flush(view_epoch, trip_duration, forget)
  local w_calls, w_failed, w_slow = tonumber(next_arg()), tonumber(next_arg()), tonumber(next_arg())
  local success_age, run_age = tonumber(next_arg()), tonumber(next_arg())
  local own_calls, own_failed, own_slow = next_arg(), next_arg(), next_arg()
  local flush_id = next_arg()
  local n_ages = tonumber(next_arg())
  local ages = {}
  for i = 1, n_ages do
    ages[i] = tonumber(next_arg())
  end
  -- Who is failing since when, whatever the circuit's epoch (a run outlives transitions).
  if run_age >= 0 then
    redis.call('HSET', runs_key, proc, now - run_age)
  else
    redis.call('HDEL', runs_key, proc)
  end
  redis.call('ZADD', seen_key, now, proc)
  local gone = redis.call('ZRANGEBYSCORE', seen_key, '-inf', now - forget)
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', seen_key, '-inf', now - forget)
    redis.call('HDEL', runs_key, unpack(gone))
    redis.call('HDEL', own_key, unpack(gone))
  end
  if st ~= 'closed' or view_epoch ~= ep then
    return 0  -- counted under another circuit than this one: dropped
  end
  if success_age >= 0 and now - success_age > ls then
    ls = now - success_age
    lsb = proc
  end
  local trip = false
  if threshold > 0 then
    redis.call('ZREMRANGEBYSCORE', failures_key, '-inf', ls)
    if not failing_alone(proc) then
      for i, age in ipairs(ages) do
        if now - age > ls then
          redis.call('ZADD', failures_key, now - age, flush_id .. ':' .. i)
        end
      end
    end
    local streak = redis.call('ZCARD', failures_key)
    if streak > threshold then
      redis.call('ZREMRANGEBYRANK', failures_key, 0, streak - threshold - 1)
    end
    local counted = 0
    for _, member in ipairs(redis.call('ZRANGE', failures_key, 0, -1)) do
      if not failing_alone(string.match(member, '^([^:]+):')) then
        counted = counted + 1
      end
    end
    trip = counted >= threshold
  end
  if window_kind ~= '' then
    if window_kind == 'time' then
      redis.call('HSET', own_key, proc,
                 own_calls .. ' ' .. own_failed .. ' ' .. own_slow .. ' ' .. string.format('%d', now))
    end
    local c, f, sl, shares = window_totals(w_calls, w_failed, w_slow)
    if crosses(c, f, sl) then
      -- Leave-one-out: when the fleet without one process has a window of its own and it
      -- is healthy, that process's outcomes alone do not open the fleet's circuit.
      local healthy_without_one = false
      for _, share in pairs(shares) do
        local oc, of, os = c - share[1], f - share[2], sl - share[3]
        if oc >= minimum and not crosses(oc, of, os) then
          healthy_without_one = true
        end
      end
      if not healthy_without_one then
        trip = true
      end
    end
  end
  if trip then
    open(trip_duration)
    lfp = ''
    return 1
  end
  return 0
end

local result = 0
if op == 'sync' then
  local view_epoch, trip_duration = tonumber(next_arg()), tonumber(next_arg())
  local forget = tonumber(next_arg())
  count('n_succ', next_arg())
  count('n_fail', next_arg())
  count('n_canc', next_arg())
  count('n_slow', next_arg())
  count('n_rej', next_arg())
  result = flush(view_epoch, trip_duration, forget)
  local n_leases = tonumber(next_arg())
  for _ = 1, n_leases do
    redis.call('ZADD', probes_key, 'XX', now + probe_lease, next_arg())
  end
elseif op == 'probe' then
  local lease = next_arg()
  if st == 'closed' then
    result = 2  -- closed meanwhile: an ordinary call
  elseif st == 'half_open' then
    if lfp == proc and now < ho + fairness then
      result = 3  -- this process's probe failed last: the others go first
    elseif redis.call('ZCARD', probes_key) < max_probes then
      redis.call('ZADD', probes_key, now + probe_lease, lease)
      result = 1
    end
  end
elseif op == 'done' then
  local lease, lease_epoch, outcome = next_arg(), tonumber(next_arg()), next_arg()
  local slow, reopen = tonumber(next_arg()), tonumber(next_arg())
  if outcome == 's' then
    count('n_succ', 1)
  elseif outcome == 'f' then
    count('n_fail', 1)
  else
    count('n_canc', 1)
  end
  count('n_slow', slow)
  local held = redis.call('ZREM', probes_key, lease) == 1
  if held and st == 'half_open' and lease_epoch == ep then
    local slow_fails = slow == 1 and slow_ratio ~= nil
    if outcome == 'f' or (outcome == 's' and slow_fails) then
      open(reopen)
      lfp = proc
    elseif outcome == 's' then
      ps = ps + 1
      ls, lsb = now, proc
      if ps >= success_threshold then
        close()
      end
    end
  end
elseif op == 'isolate' then
  if st ~= 'open' then
    transition('open')
    oa = now
  end
  iso, ou = 1, 0
elseif op == 'reset' then
  close()
end

redis.call('HSET', state_key, 'st', st, 'ep', ep, 'iso', iso, 'oa', oa, 'ou', ou, 'op', opens,
           'ps', ps, 'ho', ho, 'lfp', lfp, 'ls', ls, 'lsb', lsb,
           'n_succ', counts.n_succ, 'n_fail', counts.n_fail, 'n_canc', counts.n_canc,
           'n_slow', counts.n_slow, 'n_rej', counts.n_rej)
local keep = ttl
if st == 'open' and iso == 0 and ou - now > 0 then
  keep = keep + (ou - now) / 1000
end
for _, key in ipairs(KEYS) do
  keep_for(key, keep)
end

local streak = 0
if threshold > 0 then
  streak = redis.call('ZCARD', failures_key)
end
local w_c, w_f, w_s = 0, 0, 0
if window_kind ~= '' then
  w_c, w_f, w_s = window_totals(0, 0, 0)
end
return {repaired, now, st, ep, iso, oa, ou, opens, redis.call('ZCARD', probes_key), streak,
        w_c, w_f, w_s, counts.n_succ, counts.n_fail, counts.n_canc, counts.n_slow, counts.n_rej,
        result}
