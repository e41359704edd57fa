-- wrk script: POST distinct, genuinely signed GitHub deliveries, one pool record per request.
-- The pool (bench/load.py) is a file of fixed-size records: X-Hub-Signature-256 value, then the body it signs.
-- Every request reads the next record and carries a new X-GitHub-Delivery id, so no body and no id repeats
-- (hookbot de-duplicates on both). Arguments after `--`: pool file, record size, signature size, first record,
-- records in the pool, delivery id prefix, event name.

local pool, record_bytes, signature_bytes, next_record, records
local counter = 0
local prefix = "bench"

function init(args)
  pool = assert(io.open(args[1], "rb"))
  record_bytes = tonumber(args[2])
  signature_bytes = tonumber(args[3])
  next_record = tonumber(args[4])
  records = tonumber(args[5])
  prefix = args[6]
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["User-Agent"] = "GitHub-Hookshot/bench"
  wrk.headers["X-GitHub-Event"] = args[7] or "issues"
  pool:seek("set", (next_record % records) * record_bytes)
end

function request()
  if next_record % records == 0 then
    pool:seek("set", 0)
  end
  local record = pool:read(record_bytes)
  next_record = next_record + 1
  counter = counter + 1
  wrk.headers["X-Hub-Signature-256"] = record:sub(1, signature_bytes)
  wrk.headers["X-GitHub-Delivery"] = prefix .. "-" .. counter
  return wrk.format(nil, nil, nil, record:sub(signature_bytes + 1))
end

-- One JSON line the harness parses: totals, errors and the latency percentiles (microseconds).
function done(summary, latency, requests)
  local points = {}
  for _, p in ipairs({1, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99}) do
    points[#points + 1] = string.format('"%s":%d', p, latency:percentile(p))
  end
  io.write(string.format(
    '\nWRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"latency_max_us":%d,"percentiles_us":{%s}}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, latency.max, table.concat(points, ",")))
end
