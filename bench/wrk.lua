-- bench/wrk.lua: wrk sends the requests bench/load.py built beforehand (cookies, CSRF
-- tokens, TOTP codes, Basic credentials already in them) and checks every answer.
--
--   wrk ... -s bench/wrk.lua URL -- FILE CHECK THREADS ONCE
--
-- FILE holds records "<length>\n<raw HTTP request>". With ONCE = "once" each record is
-- sent once (a pending login consumes its code): thread k of THREADS takes records
-- k, k + THREADS, ...; a thread that has sent all of its own gives its connections
-- GET /bench/ping (not counted) until every thread's last answer is in, then stops;
-- the phase lasts until the last of those answers. A thread does not stop before the
-- others: the connections of a stopped thread stay open, unread, and gunicorn (27 and
-- later) waits up to 2 s after each answer for the client to close, so a worker
-- answering one of them would sit idle while the other threads' requests wait.
-- Otherwise every thread cycles through all the records, each from its own place,
-- until wrk's duration ends.
--
-- CHECK says what a successful operation answers:
--   ping     200 with the body "ok"
--   gateway  200 with a Remote-User header
--   login    302 to /mfa/verify (a 200 sign-in page with its CSRF field and no error
--            message is the GET that precedes it: counted as a page, neither an
--            operation nor an error)
--   code     302 to / (the code step, and the passkey sign-in)
-- Anything else is an error, the first few kept as examples.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
void *calloc(size_t count, size_t size);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function monotonic()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

-- The setup environment: one per run. `done_flags` is one int per thread, shared by
-- all of them (wrk's threads are one process's threads, each with its own Lua state):
-- thread k sets flags[k] once its last answer is in.
local threads = {}
local done_flags

function setup(thread)
  -- setup() runs in the main Lua state only: the flags are made once, there.
  done_flags = done_flags or ffi.C.calloc(64, ffi.sizeof("int"))
  thread:set("thread_index", #threads)
  thread:set("done_flags_address", tonumber(ffi.cast("intptr_t", done_flags)))
  table.insert(threads, thread)
end

-- Each thread's environment.
local records, count, position = {}, 0, 0
local check, once, idle_request, flags, thread_count
local sent, answered = 0, 0
-- wrk calls the first thread's request() once before the run, to see whether it
-- pipelines; that call must not use up a record.
local verified

function init(args)
  local path = args[1]
  thread_count = tonumber(args[3])
  check, once = args[2], args[4] == "once"
  flags = ffi.cast("volatile int *", done_flags_address)
  local handle = assert(io.open(path, "rb"))
  local data = handle:read("*a")
  handle:close()
  local at, index = 1, 0
  while at <= #data do
    local newline = data:find("\n", at, true)
    local length = tonumber(data:sub(at, newline - 1))
    if not once or index % thread_count == thread_index then
      count = count + 1
      records[count] = data:sub(newline + 1, newline + length)
    end
    index = index + 1
    at = newline + 1 + length
  end
  if not once then
    -- Every thread cycles through all the records, each from its own place.
    position = math.floor(count * thread_index / thread_count)
  end
  idle_request = wrk.format("GET", "/bench/ping")
  verified = thread_index ~= 0
  ok, errors, pages, idle, exhausted = 0, 0, 0, 0, 0
  examples = {}
  started = monotonic()
  finished = 0
end

function request()
  if not verified then
    verified = true
    return records[1] or idle_request
  end
  position = position + 1
  if position > count then
    if once then
      exhausted = 1
      return idle_request
    end
    position = 1
  end
  sent = sent + 1
  return records[position]
end

local function location_path(headers)
  local location = headers["Location"] or headers["location"] or ""
  return (location:gsub("^https?://[^/]*", ""):match("^[^?#]*"))
end

local function judge(status, headers, body)
  if check == "ping" then
    return status == 200 and body == "ok"
  elseif check == "gateway" then
    local user = headers["Remote-User"] or headers["remote-user"]
    return status == 200 and user ~= nil and user ~= ""
  elseif check == "login" then
    -- A refused POST shows the form again, with its error message: not a page.
    if
      status == 200
      and body:find('name="csrf_token"', 1, true)
      and not body:find("message-error", 1, true)
    then
      return "page"
    end
    return status == 302 and location_path(headers) == "/mfa/verify"
  elseif check == "code" then
    return status == 302 and location_path(headers) == "/"
  elseif check == "userinfo" then
    return status == 200 and body:find('"sub"', 1, true) ~= nil
  elseif check == "token" then
    return status == 200 and body:find('"id_token"', 1, true) ~= nil
  end
  error("unknown check " .. tostring(check))
end

function response(status, headers, body)
  if once and exhausted == 1 and status == 200 and body == "ok" then
    idle = idle + 1
  else
    answered = answered + 1
    local verdict = judge(status, headers, body)
    if verdict == "page" then
      pages = pages + 1
    elseif verdict then
      ok = ok + 1
    else
      errors = errors + 1
      if #examples < 5 then
        local where = location_path(headers)
        table.insert(examples, tostring(status) .. (where ~= "" and (" -> " .. where) or ""))
      end
    end
  end
  if once and exhausted == 1 and answered >= sent then
    if finished == 0 then
      finished = monotonic()
      flags[thread_index] = 1
    end
    for index = 0, thread_count - 1 do
      if flags[index] == 0 then
        return -- another thread still has answers to come: go on pinging
      end
    end
    wrk.thread:stop()
  end
end

local function quoted(text)
  return '"' .. text:gsub('[%c"\\]', "?") .. '"'
end

function done(summary, latency, requests)
  local totals = { ok = 0, errors = 0, pages = 0, idle = 0 }
  local first_start, last_finish, shown = math.huge, 0, {}
  -- A thread ran out once it had sent all of its records and had every answer; one
  -- whose last answers were still out when wrk's duration ended did not (`finished`
  -- is still 0), and the phase then lasted wrk's duration.
  local ran_out = 0
  for _, thread in ipairs(threads) do
    for name in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
    if thread:get("finished") > 0 then
      ran_out = ran_out + 1
    end
    first_start = math.min(first_start, thread:get("started"))
    last_finish = math.max(last_finish, thread:get("finished"))
    for _, example in ipairs(thread:get("examples")) do
      if #shown < 5 then
        table.insert(shown, quoted(example))
      end
    end
  end
  -- Threads that all ran out stopped early: the phase lasted until the last answer.
  local seconds = summary.duration / 1e6
  if ran_out == #threads then
    seconds = last_finish - first_start
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"ok": %d, "errors": %d, "pages": %d, "idle": %d, '
      .. '"threads_exhausted": %d, "threads": %d, "seconds": %.6f, "responses": %d, '
      .. '"socket_errors": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, '
      .. '"examples": [%s]}\n',
    totals.ok, totals.errors, totals.pages, totals.idle, ran_out, #threads,
    seconds, summary.requests, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    table.concat(shown, ", ")
  ))
end
