"""The Lua scripts behind :class:`~storage.redis_store.RedisStore`.

Redis runs a script alone, start to end, so each write here is one step that
every worker on every host sees whole or not at all: that is what replaces
SQLite's ``BEGIN IMMEDIATE``.  Redis does not roll a script back when it fails
half-way, so the append script reads and decides everything first and writes
only after nothing can fail any more; the ``#!lua`` line makes Redis refuse
the whole script up front when it is out of memory, instead of at its first
write.  Values are JSON built in Python (orjson) and stored as they are; the
scripts only compose a few JSON strings with ``cjson.encode``.

Key layout, under the store's prefix ``P``::

    P meta            hash: epoch, floor (last seq of the previous epoch), pruned_upto
    P seq, P lines    counters: event seq, log line number
    P log             stream of every event, entry id <seq>-0 (the hub tails it): e epoch
                      (the id is <epoch>-<seq>; entries written before hold i, the id), t
                      type, p project, d deployment, r received, b body (storage/bodies.py)
    P ps:<project>    per-project stream of the same entry ids, each only "l" "" (the
                      event is read from the log; replay, trimmed, TTL)
    P de:<deployment> list of the deployment's seqs (replay, trimmed, TTL): a list, as
                      small as its entries, where a stream of each took 4 KB at least
    P dep:<id>        hash: project, last_seq, last_id, last_activity, ts0, view_seq
                      (newest lifecycle seq the fold holds), life_seq (newest lifecycle
                      seq stored), metrics, metrics_key, ix_* (its place in the lists); all
                      short, so Redis keeps it as a listpack (hash-max-listpack-entries 128,
                      -value 64: ix_member, "<sort_ts>\0<id>", fits for ids up to 39 bytes)
    P fold:<id>       string: the ledger's fold (JSON); hashes written before kept it in
                      their field "fold", read until the fold is next written (READ_ROW)
    P dirty           set of deployments whose stored fold may lag their events
    P life:<id>       list of the deployment's lifecycle events (what the fold folds), each
                      "<seq>:" and its type, project and body deflated (storage/redis_life.py;
                      entries written before: [seq or id, type, project, body] as JSON)
    P ln:<id>         list of its log lines, oldest first, each a JSON array [line id,
                      event id, job, step, level, timestamp, text] (LINES finds a line id)
    P dl:<p>|<s>|<b>  lex-sorted sets "<sort_ts>\\0<id>" for each project/status/branch
                      filter combination ("*" where a filter is absent)
    P projects        set of projects with deployments
    P activity        sorted set: deployment -> last_activity (pruning by age, and by count:
                      a deployment last written by seq n was last active by n's time)
    P dedup:<key>     ids of a delivery or an event_id, expiring with retention
    P meta layout     3 (storage/redis_store.py LAYOUT; the layout before 2 kept
                      deployments' replay and log lines in streams ds:<id> and logs:<id>,
                      see MIGRATE; the one before 3 also kept a set P lastseq)
    P meta aggregates the aggregates' layout once they are counted (storage/redis_aggregates.py)
    P dep:<id> facts, times
                      the deployment's counted facts (ledger/aggregates.py), packed short
                      so that the hash stays a listpack (storage/redis_aggregates.py)
    P agg:<group>     hash: the aggregates' counters of one group, field -> n
    P starts, P ends:<project>, P across, P backward,
    P envs:<project>\x1f<environment> (and envok:, envopen:)
                      sorted sets of the deployments by start, by completion, and per
                      environment by start, successes by completion, open ones by start
                      (storage/redis_aggregates.py)
    P outday:<project>\x1f<environment or "">
                      hash: UTC day -> outage summary ("" until read again), "#v" version
    P txn:<token>     the answer of one append call, so a retried call is not a repeat
    P notify          pub/sub channel: "something was appended" (payload: last seq)
"""

from __future__ import annotations

_HELPERS = r"""
local P = ARGV[1]

-- Byte order, which is how Python and SQLite compare these strings (Lua's own
-- comparison follows the server's locale).
local function lt(a, b)
  if a == b then return false end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function int(n) return string.format('%d', n) end

local function part(v)
  if not v then return '*' end
  return int(#v) .. ':' .. v
end

-- The listing sets a deployment belongs to: every combination of its project,
-- status and branch with "any"; a deployment without a branch only in "any".
local function list_keys(project, status, branch)
  local out = {}
  for _, p in ipairs({part(project), '*'}) do
    for _, s in ipairs({part(status), '*'}) do
      out[#out + 1] = P .. 'dl:' .. p .. '|' .. s .. '|*'
      if branch then out[#out + 1] = P .. 'dl:' .. p .. '|' .. s .. '|' .. part(branch) end
    end
  end
  return out
end

local function stored_branch(flagged)
  if flagged and string.sub(flagged, 1, 1) == '1' then return string.sub(flagged, 2) end
  return false
end

-- Take a deployment out of the listing sets it was last put in.
local function unlist(cur_project, cur_status, cur_branch, cur_member)
  if not cur_member then return end
  for _, k in ipairs(list_keys(cur_project, cur_status, stored_branch(cur_branch))) do
    redis.call('ZREM', k, cur_member)
  end
  if redis.call('ZCARD', P .. 'dl:' .. part(cur_project) .. '|*|*') == 0 then
    redis.call('SREM', P .. 'projects', cur_project)
  end
end

-- The epoch and the counter; a new epoch when Redis has lost the store's data
-- (flushed, restarted without persistence or with the last writes missing from
-- its append-only file, the log stream deleted), newer than any epoch the
-- caller has seen, so ids keep increasing and are never handed out twice.
-- known: "<epoch>:<seq>", the newest the calling process has seen.
local function current_epoch(known)
  local known_epoch, known_seq = string.match(known, '^(%d+):(%d+)$')
  known_epoch, known_seq = tonumber(known_epoch), tonumber(known_seq)
  local meta = redis.call('HMGET', P .. 'meta', 'epoch', 'floor')
  local counter = tonumber(redis.call('GET', P .. 'seq') or '0')
  local top = 0
  local last = redis.call('XREVRANGE', P .. 'log', '+', '-', 'COUNT', 1)
  if last[1] then top = tonumber(string.match(last[1][1], '^%d+')) end
  counter = math.max(counter, top)
  local lost = meta[1] and (
    (counter > tonumber(meta[2]) and redis.call('EXISTS', P .. 'log') == 0)
    or (tonumber(meta[1]) == known_epoch and counter < known_seq))
  if meta[1] and not lost then
    if counter > tonumber(redis.call('GET', P .. 'seq') or '0') then
      redis.call('SET', P .. 'seq', int(counter))
    end
    return meta[1], counter
  end
  local t = redis.call('TIME')
  local e = math.max(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), known_epoch + 1)
  if meta[1] then e = math.max(e, tonumber(meta[1]) + 1) end
  counter = math.max(counter, known_seq)
  local epoch = int(e)
  redis.call('SET', P .. 'seq', int(counter))
  redis.call('HSET', P .. 'meta', 'epoch', epoch, 'floor', int(counter),
             'pruned_upto', int(counter))
  redis.log(redis.LOG_WARNING, 'deployment hub store ' .. P .. ': new epoch ' .. epoch)
  return epoch, counter
end
"""

#: Moving a deployment's counts, in the same script that writes or drops its fold: ARGV from
#: ``first`` are the facts counted before (compared with the stored ones: "" for none), the
#: facts to count now ("": none) and the changes, four each: op ("+" adds value to a
#: counter and drops it at 0, "s" sets a hash field, "z" adds a member with the score value
#: to a sorted set, "r" removes one), key under the prefix, field or member, value.
#: The changes are Python's (``storage/redis_aggregates.py``); the script only applies them.
_COUNT = r"""
-- The counted facts are two fields of the deployment's hash: the packed facts' first
-- three parts and their last three (storage/redis_aggregates.py, FACT_FIELDS).
local function counted_as(d, first)
  local f = redis.call('HMGET', P .. 'dep:' .. d, 'facts', 'times')
  local cur = ''
  if f[1] and f[2] then cur = f[1] .. '\31' .. f[2] end
  return cur == ARGV[first]
end

local function count(d, first)
  local key = P .. 'dep:' .. d
  if ARGV[first + 1] == '' then
    redis.call('HDEL', key, 'facts', 'times')
  else
    local facts, times = string.match(ARGV[first + 1], '^([^\31]*\31[^\31]*\31[^\31]*)\31(.*)$')
    redis.call('HSET', key, 'facts', facts, 'times', times)
  end
  for i = first + 2, #ARGV, 4 do
    local k, f, v = P .. ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    if ARGV[i] == '+' then
      if redis.call('HINCRBY', k, f, v) == 0 then redis.call('HDEL', k, f) end
    elseif ARGV[i] == 's' then
      redis.call('HSET', k, f, v)
    elseif ARGV[i] == 'z' then
      redis.call('ZADD', k, v, f)
    else
      redis.call('ZREM', k, f)
    end
  end
end
"""

#: ARGV: prefix, deployment, then the counts (:data:`_COUNT`, from 3).  Recounts a stored
#: deployment (when the aggregates are first built); -1 if its counted facts changed
#: meanwhile, 0 if it is gone.
COUNT = (
    "#!lua\n"
    + _HELPERS
    + _COUNT
    + r"""
local d = ARGV[2]
if redis.call('EXISTS', P .. 'dep:' .. d) == 0 then return 0 end
if not counted_as(d, 3) then return -1 end
count(d, 3)
return 1
"""
)

#: ARGV: prefix, key (under it), version, then day and summary pairs.  Stores the outage day
#: summaries a reader summed up, unless a write changed the key's days since it read them
#: (its "#v" moved); an empty summary removes the day.
SET_OUTAGE_DAYS = r"""
local key = ARGV[1] .. ARGV[2]
if (redis.call('HGET', key, '#v') or '') ~= ARGV[3] then return 0 end
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', key, ARGV[i])
  else
    redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  end
end
return 1
"""

#: ARGV: prefix, milliseconds since the epoch.  The first millisecond of each UTC day from
#: that one's on when a deployment started, found by jumping over the days between.
START_DAYS = r"""
local P, from = ARGV[1], tonumber(ARGV[2])
local days = {}
while true do
  local found = redis.call('ZRANGEBYSCORE', P .. 'starts', from, '+inf', 'WITHSCORES',
                           'LIMIT', 0, 1)
  if not found[1] then return days end
  local day = math.floor(tonumber(found[2]) / 86400000) * 86400000
  days[#days + 1] = string.format('%d', day)
  from = day + 86400000
end
"""

#: ARGV: prefix, milliseconds from, milliseconds to (not included), and a project or none.
#: The members of ``starts`` scored in between; with a project, only its deployments' (a
#: member's second part), kept here so that one project's day does not travel whole.
STARTED = r"""
local found = redis.call('ZRANGEBYSCORE', ARGV[1] .. 'starts', ARGV[2], '(' .. ARGV[3])
if not ARGV[4] then return found end
local kept = {}
for _, member in ipairs(found) do
  if string.match(member, '^[^\31]*\31([^\31]*)') == ARGV[4] then kept[#kept + 1] = member end
end
return kept
"""

#: ARGV: prefix, "<epoch>:<seq>" newest known to the caller.  Returns the epoch.
INIT = (
    "#!lua\n"
    + _HELPERS
    + r"""
local epoch = current_epoch(ARGV[2])
return epoch
"""
)

#: ARGV: prefix, "<epoch>:<seq>" newest known to the caller, call token, delivery key
#: (or ""), body digest (or ""), dedup TTL s (0: none), stream MAXLEN (0: none), stream TTL
#: ms (0: none), token TTL s, event count; then 11 per event: type, project, mode,
#: deployment, dedup key, lifecycle entry (storage/redis_life.py; "" for an event of
#: another type), body JSON, timestamp, log lines (JSON arrays
#: joined by "\n"), metrics key, metrics JSON.
#: project: the event's project as the ledger resolved it (a new deployment's row keeps it).
#: mode: "n" no deployment, "p" project-only event naming a deployment, "d" this
#: deployment, "a" a new "<project>-auto-<seq>", "r" the deployment of event #<deployment>.
#: A delivery is remembered as "<digest>|<ids JSON>" (before digests: the ids JSON alone); a
#: repeat with another digest stores nothing and returns {epoch, conflict: true}.
#: Returns JSON {epoch, duplicate, ids, stored: [[index, id, deployment]], deps: [[deployment,
#: life_seq before, life_seq after, lifecycle events added]]} (deps: the deployments whose
#: fold must be written: created, or with lifecycle events added).
APPEND = (
    "#!lua\n"
    + _HELPERS
    + r"""
local token, delivery, digest = ARGV[3], ARGV[4], ARGV[5]
local dedup_ttl, maxlen = tonumber(ARGV[6]), ARGV[7]
local stream_ttl, token_ttl, n = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local NF, FIRST = 11, 10

local done = redis.call('GET', P .. 'txn:' .. token)
if done then return done end
local epoch, seq = current_epoch(ARGV[2])

if delivery ~= '' then
  local earlier = redis.call('GET', P .. 'dedup:' .. delivery)
  if earlier then
    local was, earlier_ids = string.match(earlier, '^(%x+)|(.*)$')
    if not was then earlier_ids = earlier end
    if was and digest ~= '' and was ~= digest then
      return '{"epoch":"' .. epoch .. '","conflict":true}'
    end
    return '{"epoch":"' .. epoch .. '","duplicate":true,"ids":' .. earlier_ids .. '}'
  end
end

local t = redis.call('TIME')
local received = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))

-- Pass 1: give seqs and read rows, write nothing.  Every decision came in with the
-- arguments (the ledger's, in Python); only the new deployments' names wait for their seqs.
local rows, plan, ids, seen, resolved = {}, {}, {}, {}, {}
local function row(d)
  local r = rows[d]
  if not r then
    local h = redis.call('HMGET', P .. 'dep:' .. d, 'project', 'metrics_key', 'life_seq')
    r = {exists = h[1] ~= false, mkey = h[2] or nil, prior = tonumber(h[3] or '0'), added = 0}
    rows[d] = r
  end
  return r
end

for i = 1, n do
  local b = FIRST + (i - 1) * NF
  local project, mode, dep, key = ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  local prior = false
  if key ~= '' then prior = seen[key] or redis.call('GET', P .. 'dedup:' .. key) end
  if prior then
    ids[#ids + 1] = prior
  else
    seq = seq + 1
    local id = epoch .. '-' .. string.format('%012d', seq)
    local d, owned = false, true
    if mode == 'd' then d = dep
    elseif mode == 'p' then d, owned = dep, false
    elseif mode == 'r' then d = resolved[tonumber(dep)] end
    -- A new deployment is named after its first event's seq (ledger.recorder.auto_deployment_id).
    if (mode == 'a' or mode == 'r') and not d then d = project .. '-auto-' .. int(seq) end
    resolved[i] = d
    if d and owned then
      local r = row(d)
      if not r.exists then
        r.exists, r.created, r.project, r.ts0 = true, true, project, ARGV[b + 8]
      end
      r.last_seq, r.last_id = seq, id
    end
    if key ~= '' then seen[key] = id end
    plan[#plan + 1] = {i = i, b = b, seq = seq, id = id, d = d, owned = owned, project = project}
    ids[#ids + 1] = id
  end
end

-- Pass 2: write.
local trim = {}
if maxlen ~= '0' then trim = {'MAXLEN', '~', maxlen} end
local function xadd(key, id, fields, trimmed)
  local args = {'XADD', key}
  if trimmed then for _, v in ipairs(trim) do args[#args + 1] = v end end
  args[#args + 1] = id
  for _, v in ipairs(fields) do args[#args + 1] = v end
  return args
end
-- A replay stream is secondary: should it refuse an id (only after Redis lost
-- data), the event is still stored; it is logged, not half-written.
local function side(args, ttl)
  local ok = redis.pcall(unpack(args))
  if type(ok) == 'table' and ok.err then
    redis.log(redis.LOG_WARNING, 'deployment hub store: ' .. args[2] .. ': ' .. ok.err)
  end
  if ttl > 0 then redis.call('PEXPIRE', args[2], ttl) end
end

local lineno = tonumber(redis.call('GET', P .. 'lines') or '0')
local first_line = lineno
local stored = {}
for _, e in ipairs(plan) do
  local b = e.b
  local etype = ARGV[b + 1]
  local fields = {'e', epoch, 't', etype, 'p', e.project, 'r', received, 'b', ARGV[b + 7]}
  if e.d then
    fields[#fields + 1] = 'd'
    fields[#fields + 1] = e.d
  end
  local sid = int(e.seq) .. '-0'
  redis.call(unpack(xadd(P .. 'log', sid, fields, true)))
  side(xadd(P .. 'ps:' .. e.project, sid, {'l', ''}, true), stream_ttl)
  if e.d then
    local de = P .. 'de:' .. e.d
    redis.call('RPUSH', de, int(e.seq))
    if maxlen ~= '0' then redis.call('LTRIM', de, -tonumber(maxlen), -1) end
    if stream_ttl > 0 then redis.call('PEXPIRE', de, stream_ttl) end
  end
  if e.d and e.owned then
    local d, r = e.d, rows[e.d]
    if ARGV[b + 6] ~= '' then
      r.life_seq, r.added = e.seq, r.added + 1
      redis.call('RPUSH', P .. 'life:' .. d, int(e.seq) .. ':' .. ARGV[b + 6])
    end
    if ARGV[b + 9] ~= '' then
      local held = {}
      for line in string.gmatch(ARGV[b + 9], '[^\n]+') do
        lineno = lineno + 1
        held[#held + 1] = '[' .. int(lineno) .. ',"' .. e.id .. '",' .. string.sub(line, 2)
      end
      for i = 1, #held, 1000 do  -- unpack takes at most a few thousand values
        redis.call('RPUSH', P .. 'ln:' .. d, unpack(held, i, math.min(i + 999, #held)))
      end
    end
    if etype == 'metrics_update' and ARGV[b + 10] ~= '' then
      if not r.mkey or lt(r.mkey, ARGV[b + 10]) then
        r.mkey, r.metrics = ARGV[b + 10], ARGV[b + 11]
      end
    end
  end
  local key = ARGV[b + 5]
  if key ~= '' then
    if dedup_ttl > 0 then
      redis.call('SET', P .. 'dedup:' .. key, e.id, 'EX', dedup_ttl)
    else
      redis.call('SET', P .. 'dedup:' .. key, e.id)
    end
  end
  stored[#stored + 1] = {e.i, e.id, e.d or cjson.null}
end

if #plan > 0 then redis.call('SET', P .. 'seq', int(seq)) end
if lineno > first_line then redis.call('SET', P .. 'lines', int(lineno)) end
local deps = {}
for d, r in pairs(rows) do
  local h = {'last_seq', int(r.last_seq), 'last_id', r.last_id, 'last_activity', received}
  if r.created then
    h[#h + 1] = 'project'
    h[#h + 1] = r.project
    h[#h + 1] = 'ts0'
    h[#h + 1] = r.ts0
  end
  if r.life_seq then
    h[#h + 1] = 'life_seq'
    h[#h + 1] = int(r.life_seq)
  end
  if r.metrics then
    h[#h + 1] = 'metrics'
    h[#h + 1] = r.metrics
    h[#h + 1] = 'metrics_key'
    h[#h + 1] = r.mkey
  end
  redis.call('HSET', P .. 'dep:' .. d, unpack(h))
  redis.call('ZADD', P .. 'activity', received, d)
  if r.created or r.life_seq then
    deps[#deps + 1] = {d, r.prior, r.life_seq or r.prior, r.added}
    redis.call('SADD', P .. 'dirty', d)
  end
end

local ids_json = '[]'
if #ids > 0 then ids_json = cjson.encode(ids) end
if delivery ~= '' then
  local remembered = ids_json
  if digest ~= '' then remembered = digest .. '|' .. ids_json end
  if dedup_ttl > 0 then
    redis.call('SET', P .. 'dedup:' .. delivery, remembered, 'EX', dedup_ttl)
  else
    redis.call('SET', P .. 'dedup:' .. delivery, remembered)
  end
end
if #plan > 0 then redis.call('PUBLISH', P .. 'notify', int(seq)) end

local stored_json, deps_json = '[]', '[]'
if #stored > 0 then stored_json = cjson.encode(stored) end
if #deps > 0 then deps_json = cjson.encode(deps) end
local answer = '{"epoch":"' .. epoch .. '","duplicate":' .. tostring(#plan == 0)
  .. ',"ids":' .. ids_json .. ',"stored":' .. stored_json .. ',"deps":' .. deps_json .. '}'
redis.call('SET', P .. 'txn:' .. token, answer, 'EX', token_ttl)
return answer
"""
)

#: ARGV: prefix, deployment, view_seq, project, status, branch ("1<branch>" or "0"),
#: list member "<sort_ts>\0<id>", fold JSON, then the counts (:data:`_COUNT`, from 9).
#: Writes the fold and moves the counts only when it holds more of the deployment's
#: lifecycle than the stored one (a fold of a deployment with none yet, at view_seq 0, only
#: when none is stored); returns 1 if it did, -1 if the counted facts changed meanwhile.
SET_VIEW = (
    "#!lua\n"
    + _HELPERS
    + _COUNT
    + r"""
local d, view_seq = ARGV[2], tonumber(ARGV[3])
local project, status, branch, member = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local key = P .. 'dep:' .. d
local cur = redis.call('HMGET', key, 'project', 'view_seq', 'ix_project', 'ix_status',
                       'ix_branch', 'ix_member', 'life_seq')
if not cur[1] then
  redis.call('SREM', P .. 'dirty', d)
  return 0
end
local life_seq = tonumber(cur[7] or '0')
if cur[2] and tonumber(cur[2]) >= view_seq then
  if tonumber(cur[2]) >= life_seq then redis.call('SREM', P .. 'dirty', d) end
  return 0
end
if not counted_as(d, 9) then return -1 end
if view_seq >= life_seq then redis.call('SREM', P .. 'dirty', d) end
count(d, 9)
unlist(cur[3], cur[4], cur[5], cur[6])
for _, k in ipairs(list_keys(project, status, stored_branch(branch))) do
  redis.call('ZADD', k, 0, member)
end
redis.call('SADD', P .. 'projects', project)
redis.call('HSET', key, 'project', project, 'view_seq', ARGV[3],
           'ix_project', project, 'ix_status', status, 'ix_branch', branch, 'ix_member', member)
redis.call('SET', P .. 'fold:' .. d, ARGV[8])
redis.call('HDEL', key, 'view', 'fold')  -- the view as JSON before folds, the fold before keys
return 1
"""
)

#: ARGV: prefix, deployment, age cutoff (seconds, or ""), count cutoff seq (0: none), then
#: the counts (:data:`_COUNT`, from 5).  Deletes the whole deployment if it is still past a
#: limit; returns its last seq (-1 if its counted facts changed meanwhile).
DROP_DEPLOYMENT = (
    "#!lua\n"
    + _HELPERS
    + _COUNT
    + r"""
local d, cutoff, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local key = P .. 'dep:' .. d
local cur = redis.call('HMGET', key, 'last_activity', 'last_seq', 'ix_project', 'ix_status',
                       'ix_branch', 'ix_member')
if cur[1] then
  local old = cutoff ~= '' and tonumber(cur[1]) < tonumber(cutoff)
  local many = limit > 0 and tonumber(cur[2]) <= limit
  if not (old or many) then return false end
end
redis.call('ZREM', P .. 'activity', d)
if not cur[1] then return false end
if not counted_as(d, 5) then return -1 end
count(d, 5)
unlist(cur[3], cur[4], cur[5], cur[6])
redis.call('DEL', key, P .. 'fold:' .. d, P .. 'life:' .. d, P .. 'ln:' .. d, P .. 'de:' .. d)
redis.call('SREM', P .. 'dirty', d)
return cur[2]
"""
)

#: ARGV: prefix, seq.  Raises ``pruned_upto`` to seq (never lowers it).
RAISE_PRUNED = r"""
local P = ARGV[1]
local cur = tonumber(redis.call('HGET', P .. 'meta', 'pruned_upto') or '0')
if tonumber(ARGV[2]) > cur then redis.call('HSET', P .. 'meta', 'pruned_upto', ARGV[2]) end
return 1
"""

#: ARGV: list key of log lines, line id, count, "after" or "upto".  The first ``count``
#: lines after the line id, or the last ``count`` up to it (oldest first either way):
#: line ids increase along the list, so a binary search finds where to start.
LINES = r"""
local key, at, count = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function id(i) return tonumber(string.match(redis.call('LINDEX', key, i), '^%[(%d+)')) end
local lo, hi = 0, redis.call('LLEN', key)
while lo < hi do
  local mid = math.floor((lo + hi) / 2)
  if id(mid) <= at then lo = mid + 1 else hi = mid end
end
if ARGV[4] == 'after' then return redis.call('LRANGE', key, lo, lo + count - 1) end
if lo == 0 then return {} end
return redis.call('LRANGE', key, math.max(0, lo - count), lo - 1)
"""

#: ARGV: prefix, deployment.  Turns what the layout before lists kept of one deployment in
#: streams (ds:<id> replay entries, logs:<id> lines) into its lists, in one step; returns
#: the number of entries moved.
MIGRATE = r"""
local P, d = ARGV[1], ARGV[2]
local moved = 0
local ds, logs = P .. 'ds:' .. d, P .. 'logs:' .. d
if redis.call('TYPE', ds).ok == 'stream' then
  local ttl = redis.call('PTTL', ds)
  local seqs = {}
  for _, entry in ipairs(redis.call('XRANGE', ds, '-', '+')) do
    seqs[#seqs + 1] = string.match(entry[1], '^%d+')
  end
  redis.call('DEL', ds, P .. 'de:' .. d)
  for i = 1, #seqs, 1000 do
    redis.call('RPUSH', P .. 'de:' .. d, unpack(seqs, i, math.min(i + 999, #seqs)))
  end
  if ttl > 0 and #seqs > 0 then redis.call('PEXPIRE', P .. 'de:' .. d, ttl) end
  moved = moved + #seqs
end
if redis.call('TYPE', logs).ok == 'stream' then
  local lines = {}
  for _, entry in ipairs(redis.call('XRANGE', logs, '-', '+')) do
    local f = {}
    for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
    lines[#lines + 1] = '[' .. string.match(entry[1], '^%d+') .. ',' .. cjson.encode(f.e) .. ','
      .. string.sub(f.l, 2)
  end
  redis.call('DEL', logs, P .. 'ln:' .. d)
  for i = 1, #lines, 1000 do
    redis.call('RPUSH', P .. 'ln:' .. d, unpack(lines, i, math.min(i + 999, #lines)))
  end
  moved = moved + #lines
end
return moved
"""

#: ARGV: prefix, deployment, hash fields...  HMGET of the deployment's hash, where the field
#: "fold" is read from its own key when it has one (hashes written before kept it inside).
READ_ROW = r"""
local P, d = ARGV[1], ARGV[2]
local fields = {unpack(ARGV, 3)}
local row = redis.call('HMGET', P .. 'dep:' .. d, unpack(fields))
local fold = redis.call('GET', P .. 'fold:' .. d)
if fold then
  for i, field in ipairs(fields) do
    if field == 'fold' then row[i] = fold end
  end
end
return row
"""
