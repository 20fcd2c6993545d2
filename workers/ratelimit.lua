-- Global sliding-window limiter for one model: requests per window AND tokens per window.
-- Runs atomically inside Redis; every time comes from the server's clock (TIME), never from a worker's.
--
-- KEYS[1]  ZSET  reservation id -> admission time, then answer time once settled (server us); the log
-- KEYS[2]  HASH  reservation id -> tokens currently charged (estimate, then the settled real count)
-- KEYS[3]  STR   sum of KEYS[2], kept incrementally so admission is not O(window) on every call
-- KEYS[4]  STR   "blocked until" (server microseconds), set by provider 429 feedback
--
-- ARGV[1]  op: "reserve" | "settle" | "release" | "penalize" | "usage"
-- ARGV[2]  span in microseconds: how long an admission counts (window + safety margin)
-- ARGV[3]  requests allowed per span          (reserve)
-- ARGV[4]  tokens allowed per span            (reserve)
-- ARGV[5]  reservation id                     (reserve, settle, release)
-- ARGV[6]  tokens (reserve, settle) | block duration in microseconds (penalize)
--
-- Replies (all integers):
--   reserve  {admitted 0|1, wait_us, reason 0 ok|1 rpm|2 tpm|3 blocked}
--   settle   {1 if the reservation was still in the window else 0}
--   release  {1 if the reservation was still in the window else 0}
--   penalize {blocked_remaining_us}
--   usage    {requests, tokens, blocked_remaining_us}

local log_key, tok_key, total_key, blocked_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op = ARGV[1]
local span = tonumber(ARGV[2])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- Keys die by themselves once idle for a full span: by then every entry in them has expired anyway.
local ttl_ms = math.floor(span / 1000) + 1000
local BATCH = 500  -- bounded unpack() and reply sizes however large the window is

-- Drop every admission older than the span, un-charging its tokens. Returns requests, tokens in the window.
local function trim()
  local cutoff = now - span
  while true do
    local old = redis.call('ZRANGEBYSCORE', log_key, '-inf', cutoff, 'LIMIT', 0, BATCH)
    if #old == 0 then break end
    local charged = redis.call('HMGET', tok_key, unpack(old))
    local freed = 0
    for i = 1, #charged do freed = freed + (tonumber(charged[i]) or 0) end
    redis.call('HDEL', tok_key, unpack(old))
    redis.call('ZREM', log_key, unpack(old))
    if freed ~= 0 then redis.call('DECRBY', total_key, freed) end
  end
  local count = redis.call('ZCARD', log_key)
  if count == 0 then
    -- Empty window: reset the token side too, so no drift can outlive the window.
    redis.call('DEL', tok_key, total_key)
    return 0, 0
  end
  return count, tonumber(redis.call('GET', total_key) or '0')
end

local function blocked_remaining()
  local b = tonumber(redis.call('GET', blocked_key) or '0')
  if b > now then return b - now end
  return 0
end

local function touch()
  redis.call('PEXPIRE', log_key, ttl_ms)
  redis.call('PEXPIRE', tok_key, ttl_ms)
  redis.call('PEXPIRE', total_key, ttl_ms)
end

if op == 'reserve' then
  local rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])
  local id, tokens = ARGV[5], tonumber(ARGV[6])
  -- Trim first: an id whose admission has expired must be charged again, not waved through below.
  local count, total = trim()
  -- Idempotent: a client retrying after a lost reply must not be charged twice.
  if redis.call('ZSCORE', log_key, id) then return {1, 0, 0} end
  local blocked = blocked_remaining()
  if blocked > 0 then return {0, blocked, 3} end

  local wait, reason = 0, 0
  if count + 1 > rpm then
    -- The (count - rpm + 1) oldest must leave; wait for the youngest of them.
    local e = redis.call('ZRANGE', log_key, count - rpm, count - rpm, 'WITHSCORES')
    wait, reason = tonumber(e[2]) + span - now, 1
  end
  if total + tokens > tpm then
    -- Walk from the oldest until enough tokens would be freed; wait for that admission to expire.
    local excess, freed, at, start = total + tokens - tpm, 0, nil, 0
    while at == nil do
      local e = redis.call('ZRANGE', log_key, start, start + BATCH - 1, 'WITHSCORES')
      if #e == 0 then break end
      local ids = {}
      for i = 1, #e, 2 do ids[#ids + 1] = e[i] end
      local charged = redis.call('HMGET', tok_key, unpack(ids))
      for i = 1, #ids do
        freed = freed + (tonumber(charged[i]) or 0)
        at = tonumber(e[2 * i])
        if freed >= excess then break end
      end
      if freed < excess then at = nil end
      start = start + BATCH
    end
    if at == nil then
      -- Inconsistent bookkeeping (cannot happen when tokens <= tpm): the whole window must pass.
      local last = redis.call('ZRANGE', log_key, -1, -1, 'WITHSCORES')
      at = tonumber(last[2])
    end
    local tw = at + span - now
    if tw > wait then wait, reason = tw, 2 end
  end
  if wait > 0 then return {0, wait, reason} end

  redis.call('ZADD', log_key, now, id)
  redis.call('HSET', tok_key, id, tokens)
  redis.call('INCRBY', total_key, tokens)
  touch()
  return {1, 0, 0}

elseif op == 'settle' then
  trim()
  local id, actual = ARGV[5], tonumber(ARGV[6])
  local old = redis.call('HGET', tok_key, id)
  if not old then return {0} end
  redis.call('HSET', tok_key, id, actual)
  redis.call('INCRBY', total_key, actual - tonumber(old))
  -- Re-stamp the request at its answer: the provider counted it at arrival, which can be well after our
  -- admission (a new connection, a busy event loop), but never after the answer. Counting it from here
  -- means the next window's requests can never reach the provider while it still counts this one.
  redis.call('ZADD', log_key, 'XX', now, id)
  return {1}

elseif op == 'release' then
  trim()
  local id = ARGV[5]
  if redis.call('ZREM', log_key, id) == 0 then return {0} end
  local old = tonumber(redis.call('HGET', tok_key, id) or '0')
  redis.call('HDEL', tok_key, id)
  if old ~= 0 then redis.call('DECRBY', total_key, old) end
  return {1}

elseif op == 'penalize' then
  local untl = now + tonumber(ARGV[6])
  local current = tonumber(redis.call('GET', blocked_key) or '0')
  -- Never shorten a block another process set from a later reset time.
  if untl > current then
    redis.call('SET', blocked_key, untl, 'PX', math.floor((untl - now) / 1000) + 1000)
  end
  return {blocked_remaining()}

elseif op == 'usage' then
  local count, total = trim()
  return {count, total, blocked_remaining()}
end

return redis.error_reply('ratelimit.lua: unknown op ' .. tostring(op))
