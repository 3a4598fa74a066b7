"""The Lua state machine of the Redis backend, one EVAL per state change."""

#: The order in which a claim returns a task's fields: values only (HMGET), so a
#: claimed batch crosses without field names and decodes by position.
TASK_FIELDS = (
    "id",
    "job",
    "queue",
    "status",
    "key",
    "worker",
    "error",
    "traceback",
    "output",
    "priority",
    "attempt",
    "max_retries",
    "deliveries",
    "scheduled_at",
    "created_at",
    "started_at",
    "finished_at",
    "lease_until",
    "fire_time",
    "args",
    "kwargs",
    "result",
)

SCRIPT = r"""
-- chronctl's Redis state machine. Every function runs inside one EVAL, so a
-- crash between two steps of a state change cannot lose or duplicate a task.
-- KEYS[1] is the key prefix (with its hash tag); ARGV[1] names the operation.
-- All values cross as strings: Lua never re-encodes a float, so nothing loses
-- precision (cjson would print 14 digits).

local P = KEYS[1]
local op = ARGV[1]
-- Set once a RabbitMQ backend uses this Redis as its state store: pending tasks
-- whose publish the broker has not confirmed are then indexed in pub:<queue>.
local BROKERED = redis.call('EXISTS', P .. 'brokered') == 1

local function tkey(id) return P .. 't:' .. id end

local TASK_FIELDS = {__TASK_FIELDS__}
-- a claimed task for the client: its values in TASK_FIELDS order
local function task_row(h) return redis.call('HMGET', h, unpack(TASK_FIELDS)) end
local F = {}  -- field name -> position in a row
for i, name in ipairs(TASK_FIELDS) do F[name] = i end

local function ready_score(pr, sa)
  return (9 - (tonumber(pr) or 5)) * 1e10 + (tonumber(sa) or 0)
end

local function seq_member(seq, id)
  return string.format('%015d', tonumber(seq or 0)) .. ':' .. id
end

-- a due task joins its queue's ready set
local function make_ready(id, q)
  local v = redis.call('HMGET', tkey(id), 'priority', 'scheduled_at', 'seq')
  redis.call('ZADD', P .. 'ready:' .. q, ready_score(v[1], v[2]), seq_member(v[3], id))
end

-- Running tasks have no st: set (lease:<queue> lists them); the ZREM of an old
-- 'running' still clears the st:running set that earlier chronctl versions kept.
local function set_status(id, old, new)
  if old then redis.call('ZREM', P .. 'st:' .. old, id) end
  if new ~= 'running' then
    redis.call('ZADD', P .. 'st:' .. new, redis.call('HGET', tkey(id), 'created_at') or '0', id)
  end
  redis.call('HSET', tkey(id), 'status', new)
end

-- ready members are "<seq>:<id>": equal scores then sort by enqueue order (FIFO)
-- candidates {member, score, queue}: the ready order (priority, then time, then FIFO)
local function by_ready_order(a, b)
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[1] < b[1]
end

local function ready_member(id)
  return seq_member(redis.call('HGET', tkey(id), 'seq'), id)
end

local function unindex_queue(id, q)
  redis.call('ZREM', P .. 'ready:' .. q, ready_member(id))
  redis.call('ZREM', P .. 'sched:' .. q, id)
  redis.call('ZREM', P .. 'lease:' .. q, id)
end

-- pending or running -> a finished status
local function finish(id, new)
  local h = tkey(id)
  local q = redis.call('HGET', h, 'queue')
  local old = redis.call('HGET', h, 'status')
  unindex_queue(id, q)
  if BROKERED then redis.call('ZREM', P .. 'pub:' .. q, id) end
  set_status(id, old, new)
  redis.call('HDEL', h, 'lease_until')
  redis.call('SREM', P .. 'active:' .. redis.call('HGET', h, 'job'), id)
  local key = redis.call('HGET', h, 'key')
  if key and redis.call('HGET', P .. 'keys', key) == id then
    redis.call('HDEL', P .. 'keys', key)
  end
end

-- a task (re)enters pending at `at`: straight into the ready set when due by `now`
-- (nil: let the next claim promote it); `unpub`: the broker must be handed it again
-- (pub:<queue> is scored by when the publish pump may next take it)
local function schedule(id, q, at, unpub, now)
  if now and tonumber(at) <= tonumber(now) then
    make_ready(id, q)
  else
    redis.call('ZADD', P .. 'sched:' .. q, at, id)
  end
  if BROKERED and unpub then
    redis.call('HDEL', tkey(id), 'pub_at', 'pub_ok')
    redis.call('ZADD', P .. 'pub:' .. q, at, id)
  end
end

local RUN_FIELDS = {'job', 'queue', 'attempt', 'started_at', 'args', 'kwargs', 'priority',
                    'scheduled_at', 'result', 'error', 'traceback', 'output'}

local function push_run(id, status, finished_at)
  local h = tkey(id)
  local run = {task_id = id, status = status, finished_at = finished_at}
  for _, f in ipairs(RUN_FIELDS) do
    local v = redis.call('HGET', h, f)
    if v then run[f] = v end
  end
  local member = cjson.encode(run)
  redis.call('ZADD', P .. 'runs', finished_at, member)
  redis.call('ZADD', P .. 'runs:' .. run.job, finished_at, member)
end

local KNOWN_QUEUES = {}

-- a new task, from a flat JSON object of strings; returns id, created (1/0)
local function put(fields, as_status, now)
  local id = fields.id
  local key = fields.key
  if as_status == 'pending' and key and key ~= '' then
    local existing = redis.call('HGET', P .. 'keys', key)
    if existing then return {existing, 0} end
  end
  local h = tkey(id)
  local seq = redis.call('INCR', P .. 'seq')
  fields.seq = tostring(seq)
  fields.status = as_status
  local flat = {}
  for k, v in pairs(fields) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  redis.call('HSET', h, unpack(flat))
  local q = fields.queue
  if not KNOWN_QUEUES[q] then  -- once per queue per script call
    redis.call('SADD', P .. 'queues', q)
    KNOWN_QUEUES[q] = true
  end
  redis.call('ZADD', P .. 'st:' .. as_status, fields.created_at or '0', id)
  if as_status == 'pending' then
    redis.call('SADD', P .. 'active:' .. fields.job, id)
    if now and tonumber(fields.scheduled_at) <= tonumber(now) then
      redis.call('ZADD', P .. 'ready:' .. q, ready_score(fields.priority, fields.scheduled_at),
                 seq_member(seq, id))
    else
      redis.call('ZADD', P .. 'sched:' .. q, fields.scheduled_at, id)
    end
    if BROKERED then redis.call('ZADD', P .. 'pub:' .. q, fields.scheduled_at, id) end
    if key and key ~= '' then redis.call('HSET', P .. 'keys', key, id) end
  end
  return {id, 1}
end

local function owned(id, worker, deliveries)
  local h = tkey(id)
  local st = redis.call('HMGET', h, 'status', 'worker', 'deliveries')
  return st[1] == 'running' and (st[2] or '') == worker and st[3] == deliveries
end

local function lost_lease(id, now, err)
  local h = tkey(id)
  redis.call('HSET', h, 'finished_at', now, 'error', err)
  redis.call('HDEL', h, 'traceback')
  push_run(id, 'failed', now)
  local attempt = redis.call('HINCRBY', h, 'attempt', 1)
  local max = tonumber(redis.call('HGET', h, 'max_retries')) or 0
  if attempt > max then
    finish(id, 'dead')
  else
    local q = redis.call('HGET', h, 'queue')
    redis.call('ZREM', P .. 'lease:' .. q, id)
    set_status(id, 'running', 'pending')
    redis.call('HDEL', h, 'lease_until')
    redis.call('HSET', h, 'scheduled_at', now)
    schedule(id, q, now, true, now)
  end
end

local function queue_list(from)
  local qs = {}
  local n = tonumber(ARGV[from])
  if n == 0 then
    qs = redis.call('SMEMBERS', P .. 'queues')
  else
    for i = 1, n do qs[i] = ARGV[from + i] end
  end
  return qs
end

local function recover_and_promote(qs, now, nowf, err)
  local recovered = 0
  for _, q in ipairs(qs) do
    local expired = redis.call('ZRANGEBYSCORE', P .. 'lease:' .. q, '-inf', nowf)
    for _, id in ipairs(expired) do
      lost_lease(id, now, err)
      recovered = recovered + 1
    end
    local due = redis.call('ZRANGEBYSCORE', P .. 'sched:' .. q, '-inf', nowf, 'LIMIT', 0, 5000)
    for _, id in ipairs(due) do
      redis.call('ZREM', P .. 'sched:' .. q, id)
      make_ready(id, q)
    end
  end
  return recovered
end

if op == 'claim' then
  -- now, lease_until, worker, max, err, nq, q...
  local now, until_, worker, max, err = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
  local nowf = tonumber(now)
  local qs = queue_list(7)
  recover_and_promote(qs, now, nowf, err)
  local cands = {}
  for _, q in ipairs(qs) do
    if redis.call('SISMEMBER', P .. 'paused', q) == 0 then
      local top = redis.call('ZRANGE', P .. 'ready:' .. q, 0, max - 1, 'WITHSCORES')
      for i = 1, #top, 2 do
        cands[#cands + 1] = {top[i], tonumber(top[i + 1]), q}
      end
    end
  end
  table.sort(cands, by_ready_order)
  local out = {}
  for i = 1, math.min(max, #cands) do
    local member, q = cands[i][1], cands[i][3]
    local id = string.sub(member, 17)
    local h = tkey(id)
    redis.call('ZREM', P .. 'ready:' .. q, member)
    if BROKERED then redis.call('ZREM', P .. 'pub:' .. q, id) end
    redis.call('ZREM', P .. 'st:pending', id)
    -- read the row first and patch it: one call fewer than write-then-read
    local row = task_row(h)
    local deliveries = tostring((tonumber(row[F.deliveries]) or 0) + 1)
    redis.call('HSET', h, 'status', 'running', 'started_at', now, 'lease_until', until_,
               'worker', worker, 'deliveries', deliveries)
    row[F.status], row[F.started_at], row[F.lease_until] = 'running', now, until_
    row[F.worker], row[F.deliveries] = worker, deliveries
    redis.call('ZADD', P .. 'lease:' .. q, until_, id)
    out[#out + 1] = row
  end
  return out

elseif op == 'recover' then
  local now, err = ARGV[2], ARGV[3]
  return recover_and_promote(redis.call('SMEMBERS', P .. 'queues'), now, tonumber(now), err)

elseif op == 'enqueue' then
  -- json array of flat string objects, now, [origin: the wake message, so the
  -- enqueuing process, already awake, can ignore its own], [batch, start, total,
  -- keep: one step of a bulk enqueue, whose record bulk:<batch> lists the ids of
  -- the batch's tasks stored so far, in order; the step that completes the batch
  -- deletes it]. Tasks the record already holds (a concurrent run of the same
  -- batch stored them) are not stored twice: their recorded ids come back, not created.
  local tasks = cjson.decode(ARGV[2])
  local record, start, done, prior = nil, 0, 0, {}
  if ARGV[5] then
    record, start = P .. 'bulk:' .. ARGV[5], tonumber(ARGV[6])
    local n = redis.call('LLEN', record)
    if start > n then
      return redis.error_reply('the record of this bulk enqueue is gone (another run of the ' ..
        'same batch completed it, or it expired after an interruption): nothing more stored')
    end
    done = math.min(n - start, #tasks)
    if done > 0 then prior = redis.call('LRANGE', record, start, start + done - 1) end
  end
  local out, new = {}, {}
  for i, fields in ipairs(tasks) do
    if i <= done then
      out[#out + 1] = prior[i]
      out[#out + 1] = 0
    else
      local r = put(fields, 'pending', ARGV[3])
      out[#out + 1] = r[1]
      out[#out + 1] = r[2]
      new[#new + 1] = r[1]
    end
  end
  if record then
    if start + #tasks >= tonumber(ARGV[7]) then
      redis.call('DEL', record)
    elseif #new > 0 then
      redis.call('RPUSH', record, unpack(new))
      redis.call('EXPIRE', record, ARGV[8])
    end
  end
  redis.call('PUBLISH', P .. 'wake', ARGV[4] or '1')
  return out

elseif op == 'next_due' then
  -- nq, q...: over the unpaused queues, now (as '0': the client reads its own clock)
  -- when one has a due task, else the earliest scheduled time, else nothing
  local best = nil
  for _, q in ipairs(queue_list(2)) do
    if redis.call('SISMEMBER', P .. 'paused', q) == 0 then
      if redis.call('ZCARD', P .. 'ready:' .. q) > 0 then return '0' end
      local first = redis.call('ZRANGE', P .. 'sched:' .. q, 0, 0, 'WITHSCORES')
      if first[2] and (best == nil or tonumber(first[2]) < tonumber(best)) then
        best = first[2]
      end
    end
  end
  return best

elseif op == 'import' then
  local tasks = cjson.decode(ARGV[2])
  local added = 0
  for _, fields in ipairs(tasks) do
    if redis.call('EXISTS', tkey(fields.id)) == 0 then
      local st = fields.status
      if st == 'running' then st = 'pending' end
      fields.status = nil
      local r = put(fields, st)
      if r[2] == 1 then added = added + 1 end
    end
  end
  redis.call('PUBLISH', P .. 'wake', '1')
  return added

elseif op == 'ack' then
  -- one JSON array of strings, groups of six: id, worker, deliveries, finished_at,
  -- result, output (one argument: packing thousands of arguments costs the client
  -- more than cjson costs here); one 0/1 each. The hot path: one HMGET reads all a
  -- success needs (ownership, indexes, history row).
  local A = cjson.decode(ARGV[2])
  local out = {}
  for i = 1, #A, 6 do
    local id, finished, result, output = A[i], A[i + 3], A[i + 4], A[i + 5]
    local h = tkey(id)
    local v = redis.call('HMGET', h, 'status', 'worker', 'deliveries', 'queue', 'created_at',
                         'job', 'key', 'attempt', 'started_at', 'args', 'kwargs', 'priority',
                         'scheduled_at')
    if v[1] == 'running' and (v[2] or '') == A[i + 1] and v[3] == A[i + 2] then
      local q, job, key = v[4], v[6], v[7]
      redis.call('HDEL', h, 'error', 'traceback', 'result', 'output', 'lease_until')
      local set = {'finished_at', finished, 'status', 'succeeded'}
      local run = {task_id = id, status = 'succeeded', finished_at = finished, job = job,
                   queue = q}
      if result ~= '' then
        set[#set + 1] = 'result'; set[#set + 1] = result; run.result = result
      end
      if output ~= '' then
        set[#set + 1] = 'output'; set[#set + 1] = output; run.output = output
      end
      redis.call('HSET', h, unpack(set))
      redis.call('ZREM', P .. 'lease:' .. q, id)
      redis.call('ZADD', P .. 'st:succeeded', v[5] or '0', id)
      redis.call('SREM', P .. 'active:' .. job, id)
      if key and redis.call('HGET', P .. 'keys', key) == id then
        redis.call('HDEL', P .. 'keys', key)
      end
      if BROKERED then redis.call('ZREM', P .. 'pub:' .. q, id) end
      local names = {'attempt', 'started_at', 'args', 'kwargs', 'priority', 'scheduled_at'}
      for j, name in ipairs(names) do
        if v[7 + j] then run[name] = v[7 + j] end
      end
      local member = cjson.encode(run)
      redis.call('ZADD', P .. 'runs', finished, member)
      redis.call('ZADD', P .. 'runs:' .. job, finished, member)
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
  return out

elseif op == 'reject' then
  -- id, worker, deliveries, finished_at, error, traceback, output, requeue, retry_at
  local id = ARGV[2]
  if not owned(id, ARGV[3], ARGV[4]) then return 0 end
  local h = tkey(id)
  redis.call('HSET', h, 'finished_at', ARGV[5], 'error', ARGV[6])
  redis.call('HDEL', h, 'traceback', 'output')
  if ARGV[7] ~= '' then redis.call('HSET', h, 'traceback', ARGV[7]) end
  if ARGV[8] ~= '' then redis.call('HSET', h, 'output', ARGV[8]) end
  push_run(id, 'failed', ARGV[5])
  redis.call('HINCRBY', h, 'attempt', 1)
  if ARGV[9] == '1' then
    local q = redis.call('HGET', h, 'queue')
    redis.call('ZREM', P .. 'lease:' .. q, id)
    set_status(id, 'running', 'pending')
    redis.call('HDEL', h, 'lease_until')
    redis.call('HSET', h, 'scheduled_at', ARGV[10])
    schedule(id, q, ARGV[10], true, ARGV[5])
    redis.call('PUBLISH', P .. 'wake', '1')
  else
    finish(id, 'dead')
  end
  return 1

elseif op == 'release' then
  -- at ('' = keep), then triples id, worker, deliveries
  local at = ARGV[2]
  local n = 0
  for i = 3, #ARGV, 3 do
    local id = ARGV[i]
    if owned(id, ARGV[i + 1], ARGV[i + 2]) then
      local h = tkey(id)
      local q = redis.call('HGET', h, 'queue')
      redis.call('ZREM', P .. 'lease:' .. q, id)
      set_status(id, 'running', 'pending')
      redis.call('HDEL', h, 'lease_until', 'started_at', 'worker')
      if at ~= '' then redis.call('HSET', h, 'scheduled_at', at) end
      schedule(id, q, redis.call('HGET', h, 'scheduled_at'), at ~= '')
      n = n + 1
    end
  end
  redis.call('PUBLISH', P .. 'wake', '1')
  return n

elseif op == 'extend' then
  -- until, then triples; returns the ids no longer owned
  local until_ = ARGV[2]
  local lost = {}
  for i = 3, #ARGV, 3 do
    local id = ARGV[i]
    if owned(id, ARGV[i + 1], ARGV[i + 2]) then
      redis.call('HSET', tkey(id), 'lease_until', until_)
      redis.call('ZADD', P .. 'lease:' .. redis.call('HGET', tkey(id), 'queue'), until_, id)
    else
      lost[#lost + 1] = id
    end
  end
  return lost

elseif op == 'cancel' then
  local id, now = ARGV[2], ARGV[3]
  local st = redis.call('HGET', tkey(id), 'status')
  if st ~= 'pending' and st ~= 'running' then return 0 end
  redis.call('HSET', tkey(id), 'finished_at', now)
  finish(id, 'cancelled')
  return 1

elseif op == 'clear' then
  -- nq, q...: delete pending tasks
  local qs = queue_list(2)
  local n = 0
  for _, q in ipairs(qs) do
    for _, zs in ipairs({'ready:', 'sched:'}) do
      local ids = redis.call('ZRANGE', P .. zs .. q, 0, -1)
      for _, member in ipairs(ids) do
        local id = member
        if zs == 'ready:' then id = string.sub(member, 17) end
        finish(id, 'cancelled')
        redis.call('ZREM', P .. 'st:cancelled', id)
        redis.call('DEL', tkey(id))
        n = n + 1
      end
    end
  end
  return n

elseif op == 'retry_dead' then
  -- now, ids...
  local now = ARGV[2]
  local n = 0
  for i = 3, #ARGV do
    local id = ARGV[i]
    local h = tkey(id)
    if redis.call('HGET', h, 'status') == 'dead' then
      set_status(id, 'dead', 'pending')
      redis.call('HSET', h, 'attempt', '0', 'scheduled_at', now)
      redis.call('HDEL', h, 'finished_at', 'started_at', 'worker')
      redis.call('SADD', P .. 'active:' .. redis.call('HGET', h, 'job'), id)
      schedule(id, redis.call('HGET', h, 'queue'), now, true, now)
      n = n + 1
    end
  end
  redis.call('PUBLISH', P .. 'wake', '1')
  return n

elseif op == 'delete' then
  -- status, ids...: delete finished tasks (purge / cleanup)
  local st = ARGV[2]
  local n = 0
  for i = 3, #ARGV do
    local id = ARGV[i]
    if redis.call('HGET', tkey(id), 'status') == st then
      redis.call('ZREM', P .. 'st:' .. st, id)
      redis.call('DEL', tkey(id))
      n = n + 1
    end
  end
  return n

elseif op == 'fire' then
  -- job, fire_time, task json ('' = missed), max_instances ('' = none), now
  local job, fire = ARGV[2], ARGV[3]
  local jk = P .. 'job:' .. job
  redis.call('HSETNX', jk, 'first_seen', fire)
  redis.call('SADD', P .. 'jobs', job)
  local last = redis.call('HGET', jk, 'last_fire')
  if last and tonumber(last) >= tonumber(fire) then return 'duplicate' end
  redis.call('HSET', jk, 'last_fire', fire)
  if ARGV[4] == '' then return 'missed' end
  if redis.call('HGET', jk, 'paused') == '1' then return 'paused' end
  if ARGV[5] ~= '' and redis.call('SCARD', P .. 'active:' .. job) >= tonumber(ARGV[5]) then
    return 'skipped'
  end
  put(cjson.decode(ARGV[4]), 'pending', ARGV[6])
  redis.call('PUBLISH', P .. 'wake', '1')
  return 'enqueued'

elseif op == 'rate' then
  -- job, count, per, now: sliding log; returns seconds to wait ('0' = take it)
  local k = P .. 'rate:' .. ARGV[2]
  local count, per, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - per)
  if redis.call('ZCARD', k) < count then
    redis.call('ZADD', k, now, ARGV[6])
    redis.call('PEXPIRE', k, math.ceil(per * 1000) + 1000)
    return '0'
  end
  local oldest = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + per - now)

-- ---- delivery by a message broker (RabbitMQ keeps its task state here) ----
elseif op == 'broker_on' then
  -- index every pending task once, then keep the index up to date
  if BROKERED then return 0 end
  redis.call('SET', P .. 'brokered', '1')
  local ids = redis.call('ZRANGE', P .. 'st:pending', 0, -1)
  for _, id in ipairs(ids) do
    local st = redis.call('HMGET', tkey(id), 'queue', 'scheduled_at')
    redis.call('HDEL', tkey(id), 'pub_at', 'pub_ok')
    redis.call('ZADD', P .. 'pub:' .. st[1], st[2], id)
  end
  return #ids

elseif op == 'claim_publish' then
  -- now, limit, stamp_until (now + stale), nids, ids...: stamp due pending tasks not
  -- yet published (or stamped longer than `stale` ago and never confirmed)
  local now, limit, until_ = ARGV[2], tonumber(ARGV[3]), ARGV[4]
  local nowf = tonumber(now)
  local nids = tonumber(ARGV[5])
  local cands = {}
  local function consider(id, q)
    local st = redis.call('HMGET', tkey(id), 'status', 'scheduled_at', 'priority', 'seq')
    if st[1] ~= 'pending' then
      redis.call('ZREM', P .. 'pub:' .. q, id)
    elseif tonumber(st[2]) <= nowf then
      cands[#cands + 1] = {seq_member(st[4], id), ready_score(st[3], st[2]), q}
    end
  end
  if nids > 0 then
    for i = 6, 5 + nids do
      local id = ARGV[i]
      local q = redis.call('HGET', tkey(id), 'queue')
      if q then
        local score = redis.call('ZSCORE', P .. 'pub:' .. q, id)
        if score and tonumber(score) <= nowf then consider(id, q) end
      end
    end
  else
    for _, q in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
      local ids = redis.call('ZRANGEBYSCORE', P .. 'pub:' .. q, '-inf', now, 'LIMIT', 0, limit)
      for _, id in ipairs(ids) do consider(id, q) end
    end
  end
  table.sort(cands, by_ready_order)
  local out = {}
  for i = 1, math.min(limit, #cands) do
    local id, q = string.sub(cands[i][1], 17), cands[i][3]
    redis.call('HSET', tkey(id), 'pub_at', now)
    redis.call('HDEL', tkey(id), 'pub_ok')
    redis.call('ZADD', P .. 'pub:' .. q, until_, id)
    out[#out + 1] = task_row(tkey(id))
  end
  return out

elseif op == 'confirm_publish' then
  for i = 2, #ARGV do
    local id = ARGV[i]
    local st = redis.call('HMGET', tkey(id), 'queue', 'pub_at')
    if st[1] and st[2] then
      redis.call('HSET', tkey(id), 'pub_ok', '1')
      redis.call('ZREM', P .. 'pub:' .. st[1], id)
    end
  end
  return 1

elseif op == 'unpublish' then
  for i = 2, #ARGV do
    local id = ARGV[i]
    local st = redis.call('HMGET', tkey(id), 'status', 'queue', 'scheduled_at')
    if st[1] == 'pending' then
      redis.call('HDEL', tkey(id), 'pub_at', 'pub_ok')
      redis.call('ZADD', P .. 'pub:' .. st[2], st[3], id)
    end
  end
  return 1

elseif op == 'next_publish' then
  -- nq, q...: the earliest time the publish pump has work in unpaused queues
  local best = nil
  for _, q in ipairs(queue_list(2)) do
    if redis.call('SISMEMBER', P .. 'paused', q) == 0 then
      local top = redis.call('ZRANGE', P .. 'pub:' .. q, 0, 0, 'WITHSCORES')
      if top[2] and (best == nil or tonumber(top[2]) < tonumber(best)) then best = top[2] end
    end
  end
  return best or ''

elseif op == 'claim_ids' then
  -- now, until, worker, lost_error, nlost, lost..., ids...: claim the tasks a broker
  -- delivered; a lost one (redelivered while still running) counts a failed attempt
  -- and is taken over, or goes dead. Returns {claimed hashes, dead ids}.
  local now, until_, worker, err = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
  local nowf = tonumber(now)
  local nlost = tonumber(ARGV[6])
  local lost = {}
  for i = 7, 6 + nlost do lost[ARGV[i]] = true end
  local claimed, dead = {}, {}
  local function take(id, q)
    local h = tkey(id)
    redis.call('HSET', h, 'started_at', now, 'lease_until', until_, 'worker', worker)
    redis.call('HINCRBY', h, 'deliveries', 1)
    redis.call('ZADD', P .. 'lease:' .. q, until_, id)
    claimed[#claimed + 1] = task_row(h)
  end
  for i = 7 + nlost, #ARGV do
    local id = ARGV[i]
    local h = tkey(id)
    local st = redis.call('HMGET', h, 'status', 'scheduled_at', 'queue')
    if st[1] == 'pending' and tonumber(st[2]) <= nowf then
      unindex_queue(id, st[3])
      redis.call('ZREM', P .. 'pub:' .. st[3], id)
      set_status(id, 'pending', 'running')
      take(id, st[3])
    elseif st[1] == 'running' and lost[id] then
      redis.call('HSET', h, 'finished_at', now, 'error', err)
      redis.call('HDEL', h, 'traceback')
      push_run(id, 'failed', now)
      local attempt = redis.call('HINCRBY', h, 'attempt', 1)
      if attempt > (tonumber(redis.call('HGET', h, 'max_retries')) or 0) then
        finish(id, 'dead')
        dead[#dead + 1] = id
      else
        redis.call('HDEL', h, 'finished_at')
        take(id, st[3])
      end
    end
  end
  return {claimed, dead}
end

return redis.error_reply('unknown operation ' .. tostring(op))
""".replace("__TASK_FIELDS__", ", ".join(f"'{name}'" for name in TASK_FIELDS))
