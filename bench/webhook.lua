-- wrk script: POST one signed GitHub delivery, a new X-GitHub-Delivery id on every request.
-- The HMAC covers only the body, so the body and its signature stay constant while the id (what dedupe keys
-- on) changes. Arguments after `--`: body file, X-Hub-Signature-256 value, delivery id prefix, event name.

local counter = 0
local prefix = "bench"

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["User-Agent"] = "GitHub-Hookshot/bench"
  wrk.headers["X-Hub-Signature-256"] = args[2]
  prefix = args[3]
  wrk.headers["X-GitHub-Event"] = args[4] or "issues"
end

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. "-" .. counter
  return wrk.format()
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
