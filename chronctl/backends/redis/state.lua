-- luacheck: std lua51, read globals redis KEYS ARGV cjson
-- __DEFAULTS__ and __LONG__ are filled in by lua.py from its Python tables before loading.
-- luacheck: read globals __DEFAULTS__ __LONG__
-- chronctl's Redis state machine. Every function runs inside one EVAL, so a
-- crash between two steps of a state change cannot lose or duplicate a task.
-- KEYS[1] is the key prefix (with its hash tag); ARGV[1] names the operation.
-- All values cross as strings: Lua never re-encodes a float, so nothing loses
-- precision (cjson would print 14 digits). A task record is a JSON object of
-- strings (see RECORD_KEYS in redis_lua.py); `get` fills in left-out defaults.

local P = KEYS[1]
local op = ARGV[1]
-- Set once a RabbitMQ backend uses this Redis as its state store: pending tasks
-- whose publish the broker has not confirmed are then indexed in pub:<queue>.
local BROKERED = redis.call('EXISTS', P .. 'brokered') == 1

local DEF = {__DEFAULTS__}
local FINISHED = {succeeded = true, dead = true, cancelled = true}

local function get(r, k)
  local v = r[k]
  if v == nil then return DEF[k] end
  return v
end

-- set a field; a default value is left out
local function set(r, k, v)
  if v == DEF[k] then r[k] = nil else r[k] = v end
end

local function created(r) return r.c or r.a end

-- scheduled_at changes: keep created_at (left out while the two are equal)
local function set_at(r, at)
  if r.c == nil then r.c = r.a end
  r.a = at
  if r.c == at then r.c = nil end
end

-- the bucket hash a record lives in: pending records apart, so that their
-- buckets stay small listpacks (a running or finished record is longer)
local function home(id, pending)
  local b = string.sub(id, -3)
  if not string.find(b, '^[%w%-_.]*$') then  -- key names stay printable ASCII
    b = string.gsub(b, '.', function(c) return string.format('%02x', string.byte(c)) end)
  end
  return P .. (pending and 'tp:' or 'tx:') .. b
end

local HOME = {}  -- id -> the hash its record was read from

-- a task's record, or nil; `running`: look among non-pending records first
local function load(id, running)
  local first = not running
  for _, pending in ipairs({first, not first}) do
    local h = home(id, pending)
    local raw = redis.call('HGET', h, id)
    if raw then
      HOME[id] = h
      return cjson.decode(raw)
    end
  end
  return nil
end

-- write a record (moving it between buckets when it enters or leaves pending);
-- returns its JSON
local function save(id, r)
  local h = home(id, r.s == nil)
  local was = HOME[id]
  if was and was ~= h then redis.call('HDEL', was, id) end
  local raw = cjson.encode(r)
  redis.call('HSET', h, id, raw)
  HOME[id] = h
  return raw
end

local function delete(id)
  if HOME[id] then redis.call('HDEL', HOME[id], id) end
  HOME[id] = nil
end

-- pending or running tasks per job (max_instances)
local function active(job, delta)
  local n = redis.call('HINCRBY', P .. 'active', job, delta)
  if n <= 0 then redis.call('HDEL', P .. 'active', job) end
end

local function ready_score(pr, sa)
  return (9 - (tonumber(pr) or 5)) * 1e10 + (tonumber(sa) or 0)
end

local function seq_member(seq, id)
  return string.format('%015d', tonumber(seq or 0)) .. ':' .. id
end

-- a due task joins its queue's ready set
local function make_ready(id, r)
  redis.call('ZADD', P .. 'ready:' .. get(r, 'q'), ready_score(get(r, 'p'), r.a),
             seq_member(r.i, id))
end

-- Finished tasks per job and status, scored by finish time (done:<status>:<job>), and
-- the jobs that have any or have history rows (donejobs): per-job retention reads one
-- job's oldest rows without reading any other job's (layout 3).
local function done_key(st, job) return P .. 'done:' .. st .. ':' .. job end

local function index_done(id, r, st)
  redis.call('ZADD', done_key(st, r.j), r.f or created(r) or '0', id)
  redis.call('SADD', P .. 'donejobs', r.j)
end

-- Only finished tasks have a st:<status> set: pending ones are in ready/sched,
-- running ones in lease:<queue>.
local function set_status(id, r, new)
  local old = get(r, 's')
  if FINISHED[old] then
    redis.call('ZREM', P .. 'st:' .. old, id)
    redis.call('ZREM', done_key(old, r.j), id)
  end
  if FINISHED[new] then
    redis.call('ZADD', P .. 'st:' .. new, created(r) or '0', id)
    index_done(id, r, new)
  end
  set(r, 's', new)
end

-- ready members are "<seq>:<id>": equal scores then sort by enqueue order (FIFO)
-- candidates {member, score, queue}: the ready order (priority, then time, then FIFO)
local function by_ready_order(a, b)
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[1] < b[1]
end

local function unindex_queue(id, r)
  local q = get(r, 'q')
  redis.call('ZREM', P .. 'ready:' .. q, seq_member(r.i, id))
  redis.call('ZREM', P .. 'sched:' .. q, id)
  redis.call('ZREM', P .. 'lease:' .. q, id)
end

-- pending or running -> a finished status; saves the record
local function finish(id, r, new)
  local q = get(r, 'q')
  unindex_queue(id, r)
  if BROKERED then redis.call('ZREM', P .. 'pub:' .. q, id) end
  set_status(id, r, new)
  r.l = nil
  active(r.j, -1)
  if r.k and redis.call('HGET', P .. 'keys', r.k) == id then
    redis.call('HDEL', P .. 'keys', r.k)
  end
  return save(id, r)
end

-- a task (re)enters pending at r.a: straight into the ready set when due by `now`
-- (nil: let the next claim promote it); `unpub`: the broker must be handed it again
-- (pub:<queue> is scored by when the publish pump may next take it)
local function schedule(id, r, unpub, now)
  local q = get(r, 'q')
  if now and tonumber(r.a) <= tonumber(now) then
    make_ready(id, r)
  else
    redis.call('ZADD', P .. 'sched:' .. q, r.a, id)
  end
  if BROKERED and unpub then
    r.u, r.v = nil, nil
    redis.call('ZADD', P .. 'pub:' .. q, r.a, id)
  end
end

-- a history row (long field names, as every version wrote them)
local function push_run(id, r, status, finished_at)
  local run = {task_id = id, status = status, finished_at = finished_at, job = r.j,
               queue = get(r, 'q'), attempt = get(r, 'n'), started_at = r.b,
               args = get(r, 'A'), kwargs = get(r, 'K'), priority = get(r, 'p'),
               scheduled_at = r.a, result = r.r, error = r.e, traceback = r.x,
               output = r.o}
  local member = cjson.encode(run)
  redis.call('ZADD', P .. 'runs', finished_at, member)
  redis.call('ZADD', P .. 'runs:' .. r.j, finished_at, member)
  redis.call('SADD', P .. 'donejobs', r.j)
end

local KNOWN_QUEUES = {}

-- a new task, from a record plus its `id`; returns id, created (1/0)
local function put(r, as_status, now)
  local id = r.id
  r.id = nil
  local key = r.k
  if key == '' then key = nil; r.k = nil end
  if as_status == 'pending' and key then
    local existing = redis.call('HGET', P .. 'keys', key)
    if existing then return {existing, 0} end
  end
  -- the same task sent again while pending (a retried call): stored once, counted once
  if redis.call('HEXISTS', home(id, true), id) == 1 then return {id, 0} end
  local seq = redis.call('INCR', P .. 'seq')
  r.i = tostring(seq)
  set(r, 's', as_status)
  HOME[id] = nil
  save(id, r)
  local q = get(r, 'q')
  if not KNOWN_QUEUES[q] then  -- once per queue per script call
    redis.call('SADD', P .. 'queues', q)
    KNOWN_QUEUES[q] = true
  end
  if as_status == 'pending' then
    active(r.j, 1)
    if now and tonumber(r.a) <= tonumber(now) then
      redis.call('ZADD', P .. 'ready:' .. q, ready_score(get(r, 'p'), r.a), seq_member(seq, id))
    else
      redis.call('ZADD', P .. 'sched:' .. q, r.a, id)
    end
    if BROKERED then redis.call('ZADD', P .. 'pub:' .. q, r.a, id) end
    if key then redis.call('HSET', P .. 'keys', key, id) end
  else
    redis.call('ZADD', P .. 'st:' .. as_status, created(r) or '0', id)
    index_done(id, r, as_status)
  end
  return {id, 1}
end

-- the record of a task this worker runs (status, worker, deliveries match), or nil
local function owned(id, worker, deliveries)
  local r = load(id, true)
  if r and r.s == 'running' and (r.w or '') == worker and get(r, 'd') == deliveries then
    return r
  end
  return nil
end

local function lost_lease(id, r, now, err)
  r.f, r.e, r.x = now, err, nil
  push_run(id, r, 'failed', now)
  local attempt = tonumber(get(r, 'n')) + 1
  set(r, 'n', tostring(attempt))
  if attempt > (tonumber(get(r, 'm')) or 0) then
    finish(id, r, 'dead')
  else
    redis.call('ZREM', P .. 'lease:' .. get(r, 'q'), id)
    set_status(id, r, 'pending')
    r.l = nil
    set_at(r, now)
    schedule(id, r, true, now)
    save(id, r)
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
      local r = load(id, true)
      if r then
        lost_lease(id, r, now, err)
      else
        redis.call('ZREM', P .. 'lease:' .. q, id)
      end
      recovered = recovered + 1
    end
    local due = redis.call('ZRANGEBYSCORE', P .. 'sched:' .. q, '-inf', nowf, 'LIMIT', 0, 5000)
    for _, id in ipairs(due) do
      redis.call('ZREM', P .. 'sched:' .. q, id)
      local r = load(id)
      if r then make_ready(id, r) end
    end
  end
  return recovered
end

-- a claimed task for the client: {id, record JSON}
local function row(id, raw) return {id, raw} end

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
    redis.call('ZREM', P .. 'ready:' .. q, member)
    if BROKERED then redis.call('ZREM', P .. 'pub:' .. q, id) end
    local r = load(id)
    if r then
      r.s, r.b, r.l, r.w = 'running', now, until_, worker
      r.d = tostring(tonumber(get(r, 'd')) + 1)
      redis.call('ZADD', P .. 'lease:' .. q, until_, id)
      out[#out + 1] = row(id, save(id, r))
    end
  end
  return out

elseif op == 'records' then
  -- ids...: each task's record JSON, or nil (listings: one call for many tasks)
  local out = {}
  for i = 2, #ARGV do
    local id = ARGV[i]
    out[i - 1] = redis.call('HGET', home(id, true), id) or
                 redis.call('HGET', home(id, false), id)
  end
  return out

elseif op == 'newest_pending' then
  -- zset ('ready:<q>' or 'sched:<q>'), start, count, job ('' = any), limit: one page
  -- of a queue's pending tasks read here, so that a listing of the newest few does not
  -- carry every record to the client. Returns {members read, then created_at, id,
  -- record for the page's newest `limit` of the job}.
  local ready = string.sub(ARGV[2], 1, 6) == 'ready:'
  local start, job, limit = tonumber(ARGV[3]), ARGV[5], tonumber(ARGV[6])
  local members = redis.call('ZRANGE', P .. ARGV[2], start, start + tonumber(ARGV[4]) - 1)
  -- records are read as text, not decoded: inside a value every quote is escaped,
  -- so '"s":' (a status other than pending) or '"j":<job>' can only be a field
  local want = '"j":' .. cjson.encode(job)
  local found = {}
  for _, m in ipairs(members) do
    local id = m
    if ready then id = string.sub(m, 17) end
    local raw = redis.call('HGET', home(id, true), id)
    if raw and not string.find(raw, '"s":', 1, true) and
       (job == '' or string.find(raw, want, 1, true)) then
      local at = string.match(raw, '"c":"([^"]*)"') or string.match(raw, '"a":"([^"]*)"')
      found[#found + 1] = {tonumber(at), id, raw, at}
    end
  end
  table.sort(found, function(a, b) return a[1] > b[1] end)
  local out = {#members}
  for i = 1, math.min(limit, #found) do
    out[#out + 1] = found[i][4]
    out[#out + 1] = found[i][2]
    out[#out + 1] = found[i][3]
  end
  return out

elseif op == 'recover' then
  local now, err = ARGV[2], ARGV[3]
  return recover_and_promote(redis.call('SMEMBERS', P .. 'queues'), now, tonumber(now), err)

elseif op == 'enqueue' then
  -- json array of records (each with its `id`), now, [origin: the wake message, so
  -- the enqueuing process, already awake, can ignore its own], [batch, start, total,
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
  for _, r in ipairs(tasks) do
    if load(r.id) == nil then
      local st = get(r, 's')
      if st == 'running' then st = 'pending' end
      local res = put(r, st)
      if res[2] == 1 then added = added + 1 end
    end
  end
  redis.call('PUBLISH', P .. 'wake', '1')
  return added

elseif op == 'ack' then
  -- one JSON array of strings, groups of six: id, worker, deliveries, finished_at,
  -- result, output (one argument: packing thousands of arguments costs the client
  -- more than cjson costs here); one 0/1 each.
  local A = cjson.decode(ARGV[2])
  local out = {}
  for i = 1, #A, 6 do
    local id, finished, result, output = A[i], A[i + 3], A[i + 4], A[i + 5]
    local r = owned(id, A[i + 1], A[i + 2])
    if r then
      local q = get(r, 'q')
      r.e, r.x, r.r, r.o, r.l = nil, nil, nil, nil, nil
      r.f, r.s = finished, 'succeeded'
      if result ~= '' then r.r = result end
      if output ~= '' then r.o = output end
      save(id, r)
      redis.call('ZREM', P .. 'lease:' .. q, id)
      redis.call('ZADD', P .. 'st:succeeded', created(r) or '0', id)
      index_done(id, r, 'succeeded')
      active(r.j, -1)
      if r.k and redis.call('HGET', P .. 'keys', r.k) == id then
        redis.call('HDEL', P .. 'keys', r.k)
      end
      if BROKERED then redis.call('ZREM', P .. 'pub:' .. q, id) end
      push_run(id, r, 'succeeded', finished)
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
  return out

elseif op == 'reject' then
  -- id, worker, deliveries, finished_at, error, traceback, output, requeue, retry_at
  local id = ARGV[2]
  local r = owned(id, ARGV[3], ARGV[4])
  if not r then return 0 end
  r.f, r.e, r.x, r.o = ARGV[5], ARGV[6], nil, nil
  if ARGV[7] ~= '' then r.x = ARGV[7] end
  if ARGV[8] ~= '' then r.o = ARGV[8] end
  push_run(id, r, 'failed', ARGV[5])
  set(r, 'n', tostring(tonumber(get(r, 'n')) + 1))
  if ARGV[9] == '1' then
    redis.call('ZREM', P .. 'lease:' .. get(r, 'q'), id)
    set_status(id, r, 'pending')
    r.l = nil
    set_at(r, ARGV[10])
    schedule(id, r, true, ARGV[5])
    save(id, r)
    redis.call('PUBLISH', P .. 'wake', '1')
  else
    finish(id, r, 'dead')
  end
  return 1

elseif op == 'release' then
  -- at ('' = keep), then triples id, worker, deliveries
  local at = ARGV[2]
  local n = 0
  for i = 3, #ARGV, 3 do
    local id = ARGV[i]
    local r = owned(id, ARGV[i + 1], ARGV[i + 2])
    if r then
      redis.call('ZREM', P .. 'lease:' .. get(r, 'q'), id)
      set_status(id, r, 'pending')
      r.l, r.b, r.w = nil, nil, nil
      if at ~= '' then set_at(r, at) end
      schedule(id, r, at ~= '')
      save(id, r)
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
    local r = owned(id, ARGV[i + 1], ARGV[i + 2])
    if r then
      r.l = until_
      save(id, r)
      redis.call('ZADD', P .. 'lease:' .. get(r, 'q'), until_, id)
    else
      lost[#lost + 1] = id
    end
  end
  return lost

elseif op == 'cancel' then
  local id, now = ARGV[2], ARGV[3]
  local r = load(id)
  if not r then return 0 end
  local st = get(r, 's')
  if st ~= 'pending' and st ~= 'running' then return 0 end
  r.f = now
  finish(id, r, 'cancelled')
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
        redis.call('ZREM', P .. zs .. q, member)
        local r = load(id)
        if r then
          finish(id, r, 'cancelled')
          redis.call('ZREM', P .. 'st:cancelled', id)
          redis.call('ZREM', done_key('cancelled', r.j), id)
          delete(id)
        end
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
    local r = load(id, true)
    if r and r.s == 'dead' then
      set_status(id, r, 'pending')
      r.n, r.f, r.b, r.w = nil, nil, nil, nil
      set_at(r, now)
      active(r.j, 1)
      schedule(id, r, true, now)
      save(id, r)
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
    local r = load(id, true)
    if r and get(r, 's') == st then
      redis.call('ZREM', P .. 'st:' .. st, id)
      redis.call('ZREM', done_key(st, r.j), id)
      delete(id)
      n = n + 1
    end
  end
  return n

elseif op == 'trim_done' then
  -- cutoff ('+inf' or '(<t>'), limit, nst, statuses..., jobs...: delete up to `limit`
  -- of the given jobs' finished tasks of those statuses finished before cutoff, each
  -- job's oldest first (per-job retention). Returns {deleted, entries read}.
  local cutoff, limit, nst = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
  local n, read = 0, 0
  for j = 5 + nst, #ARGV do
    local job = ARGV[j]
    for s = 5, 4 + nst do
      local st = ARGV[s]
      if read >= limit then break end
      local key = done_key(st, job)
      for _, id in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', 0,
                                     limit - read)) do
        read = read + 1
        redis.call('ZREM', key, id)
        local r = load(id, true)
        if r and get(r, 's') == st and r.j == job then
          redis.call('ZREM', P .. 'st:' .. st, id)
          delete(id)
          n = n + 1
        end
      end
    end
    if read >= limit then break end
  end
  return {n, read}

elseif op == 'trim_runs' then
  -- cutoff, limit, all ('1': every status; else the statuses), nst, statuses..., jobs...:
  -- delete up to `limit` of the given jobs' history rows finished before cutoff.
  -- Returns {deleted, rows read}; a job with no rows or finished tasks left is
  -- dropped from donejobs.
  local cutoff, limit, all, nst = ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1', tonumber(ARGV[5])
  local wanted = {}
  for s = 6, 5 + nst do wanted[ARGV[s]] = true end
  local n, read = 0, 0
  for j = 6 + nst, #ARGV do
    local job = ARGV[j]
    local key = P .. 'runs:' .. job
    if read < limit then
      for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', 0,
                                         limit - read)) do
        read = read + 1
        if all or wanted[cjson.decode(member).status] then
          redis.call('ZREM', key, member)
          redis.call('ZREM', P .. 'runs', member)
          n = n + 1
        end
      end
    end
    if redis.call('EXISTS', key, done_key('succeeded', job), done_key('cancelled', job),
                  done_key('dead', job)) == 0 then
      redis.call('SREM', P .. 'donejobs', job)
    end
  end
  return {n, read}

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
  if ARGV[5] ~= '' and
     (tonumber(redis.call('HGET', P .. 'active', job)) or 0) >= tonumber(ARGV[5]) then
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

-- ---- stored schedules (chronctl/schedules.py) ----
elseif op == 'put_schedule' then
  -- name, record json, create ('1': only if absent; '0': only if present), origin:
  -- store it, bump the version and tell every process (wake, 's:<origin>'); 0 = unchanged
  local h = P .. 'schedules'
  local present = redis.call('HEXISTS', h, ARGV[2]) == 1
  if present == (ARGV[4] == '1') then return 0 end
  redis.call('HSET', h, ARGV[2], ARGV[3])
  redis.call('INCR', P .. 'schedver')
  redis.call('PUBLISH', P .. 'wake', 's:' .. ARGV[5])
  return 1

elseif op == 'delete_schedule' then
  -- name, origin: as put_schedule; 0 = there was none
  if redis.call('HDEL', P .. 'schedules', ARGV[2]) == 0 then return 0 end
  redis.call('INCR', P .. 'schedver')
  redis.call('PUBLISH', P .. 'wake', 's:' .. ARGV[3])
  return 1

-- ---- delivery by a message broker (RabbitMQ keeps its task state here) ----
elseif op == 'broker_on' then
  -- index every pending task once, then keep the index up to date
  if BROKERED then return 0 end
  redis.call('SET', P .. 'brokered', '1')
  local n = 0
  for _, q in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
    for _, zs in ipairs({'ready:', 'sched:'}) do
      for _, member in ipairs(redis.call('ZRANGE', P .. zs .. q, 0, -1)) do
        local id = member
        if zs == 'ready:' then id = string.sub(member, 17) end
        local r = load(id)
        if r then
          if r.u or r.v then
            r.u, r.v = nil, nil
            save(id, r)
          end
          redis.call('ZADD', P .. 'pub:' .. q, r.a, id)
          n = n + 1
        end
      end
    end
  end
  return n

elseif op == 'claim_publish' then
  -- now, limit, stamp_until (now + stale), nids, ids...: stamp due pending tasks not
  -- yet published (or stamped longer than `stale` ago and never confirmed)
  local now, limit, until_ = ARGV[2], tonumber(ARGV[3]), ARGV[4]
  local nowf = tonumber(now)
  local nids = tonumber(ARGV[5])
  local cands = {}
  local function consider(id, q, r)
    if not r or r.s ~= nil then
      redis.call('ZREM', P .. 'pub:' .. q, id)
    elseif tonumber(r.a) <= nowf then
      cands[#cands + 1] = {seq_member(r.i, id), ready_score(get(r, 'p'), r.a), q, r}
    end
  end
  if nids > 0 then
    for i = 6, 5 + nids do
      local id = ARGV[i]
      local r = load(id)
      if r then
        local q = get(r, 'q')
        local score = redis.call('ZSCORE', P .. 'pub:' .. q, id)
        if score and tonumber(score) <= nowf then consider(id, q, r) end
      end
    end
  else
    for _, q in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
      local ids = redis.call('ZRANGEBYSCORE', P .. 'pub:' .. q, '-inf', now, 'LIMIT', 0, limit)
      for _, id in ipairs(ids) do consider(id, q, load(id)) end
    end
  end
  table.sort(cands, by_ready_order)
  local out = {}
  for i = 1, math.min(limit, #cands) do
    local id, q, r = string.sub(cands[i][1], 17), cands[i][3], cands[i][4]
    r.u, r.v = now, nil
    redis.call('ZADD', P .. 'pub:' .. q, until_, id)
    out[#out + 1] = row(id, save(id, r))
  end
  return out

elseif op == 'confirm_publish' then
  for i = 2, #ARGV do
    local id = ARGV[i]
    local r = load(id)
    if r and r.u then
      r.v = '1'
      save(id, r)
      redis.call('ZREM', P .. 'pub:' .. get(r, 'q'), id)
    end
  end
  return 1

elseif op == 'unpublish' then
  for i = 2, #ARGV do
    local id = ARGV[i]
    local r = load(id)
    if r and r.s == nil then
      r.u, r.v = nil, nil
      save(id, r)
      redis.call('ZADD', P .. 'pub:' .. get(r, 'q'), r.a, id)
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
  -- and is taken over, or goes dead. Returns {claimed rows, dead ids}.
  local now, until_, worker, err = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
  local nowf = tonumber(now)
  local nlost = tonumber(ARGV[6])
  local lost = {}
  for i = 7, 6 + nlost do lost[ARGV[i]] = true end
  local claimed, dead = {}, {}
  local function take(id, r)
    r.s, r.b, r.l, r.w = 'running', now, until_, worker
    r.d = tostring(tonumber(get(r, 'd')) + 1)
    redis.call('ZADD', P .. 'lease:' .. get(r, 'q'), until_, id)
    claimed[#claimed + 1] = row(id, save(id, r))
  end
  for i = 7 + nlost, #ARGV do
    local id = ARGV[i]
    local r = load(id)
    if r and r.s == nil and tonumber(r.a) <= nowf then
      unindex_queue(id, r)
      redis.call('ZREM', P .. 'pub:' .. get(r, 'q'), id)
      take(id, r)
    elseif r and r.s == 'running' and lost[id] then
      r.f, r.e, r.x = now, err, nil
      push_run(id, r, 'failed', now)
      local attempt = tonumber(get(r, 'n')) + 1
      set(r, 'n', tostring(attempt))
      if attempt > (tonumber(get(r, 'm')) or 0) then
        finish(id, r, 'dead')
        dead[#dead + 1] = id
      else
        r.f = nil
        take(id, r)
      end
    end
  end
  return {claimed, dead}

-- ---- storage layout upgrade ----
elseif op == 'index_done' then
  -- phase, cursor: one step of the layout 2 -> 3 upgrade. Phase 'runs' SCANs this
  -- prefix's keys for runs:<job> (donejobs); then one ZSCAN page of st:<status> per
  -- step for each finished status, filing each task in done:<status>:<job>. Returns
  -- the next {phase, cursor, count}; phase 'end' after the last step, which writes the
  -- layout. Each step is atomic and idempotent: several processes may run it.
  local phase, cursor = ARGV[2], ARGV[3]
  local count = 0
  local order = {'runs', 'succeeded', 'cancelled', 'dead', 'end'}
  local nxt
  if phase == 'runs' then
    local pattern = string.gsub(P, '[%*%?%[%]\\]', '\\%0') .. 'runs:*'
    local scan = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
    for _, key in ipairs(scan[2]) do
      redis.call('SADD', P .. 'donejobs', string.sub(key, #P + 6))
      count = count + 1
    end
    nxt = scan[1]
  else
    local scan = redis.call('ZSCAN', P .. 'st:' .. phase, cursor, 'COUNT', 500)
    for i = 1, #scan[2], 2 do
      local id = scan[2][i]
      local r = load(id, true)
      if r and get(r, 's') == phase then
        index_done(id, r, phase)
        count = count + 1
      end
    end
    nxt = scan[1]
  end
  if nxt == '0' then
    for i, name in ipairs(order) do
      if name == phase then phase = order[i + 1]; break end
    end
    if phase == 'end' then redis.call('SET', P .. 'layout', ARGV[4]) end
  end
  return {phase, nxt, count}

elseif op == 'upgrade' then
  -- cursor: one SCAN step over this prefix's keys, converting layout 1 (a hash
  -- t:<id> per task, st:pending/st:running, a set active:<job> per job) to records;
  -- the step that ends the scan drops the old indexes and writes the layout.
  -- Each step is atomic and converts a task once: several processes may run it.
  local LONG = {__LONG__}
  local pattern = string.gsub(P, '[%*%?%[%]\\]', '\\%0') .. '*'
  local scan = redis.call('SCAN', ARGV[2], 'MATCH', pattern, 'COUNT', 1000)
  local converted = 0
  for _, key in ipairs(scan[2]) do
    local rest = string.sub(key, #P + 1)
    if string.sub(rest, 1, 2) == 't:' and redis.call('TYPE', key).ok == 'hash' then
      local id = string.sub(rest, 3)
      local flat = redis.call('HGETALL', key)
      local r = {}
      for j = 1, #flat, 2 do
        local name, v = flat[j], flat[j + 1]
        if LONG[name] then
          if v ~= '' or name == 'worker' then set(r, LONG[name], v) end
        elseif name == 'seq' then r.i = v
        elseif name == 'pub_at' then r.u = v
        elseif name == 'pub_ok' then r.v = v
        end
      end
      if r.c == r.a then r.c = nil end
      if r.j and r.a then  -- else not a task (left as it is: nothing is lost)
        HOME[id] = nil
        save(id, r)
        if r.s == nil or r.s == 'running' then active(r.j, 1) end
        converted = converted + 1
        redis.call('DEL', key)
      end
    elseif string.sub(rest, 1, 7) == 'active:' then
      redis.call('DEL', key)
    end
  end
  if scan[1] == '0' then
    redis.call('DEL', P .. 'st:pending', P .. 'st:running')
    redis.call('SET', P .. 'layout', ARGV[3])
  end
  return {scan[1], converted}
end

return redis.error_reply('unknown operation ' .. tostring(op))
