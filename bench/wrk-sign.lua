-- wrk script of bench/wrk-check.sh: one signed ~1.1 KiB Stream `message.new` (BODY_FILE, its
-- X-Signature SIG over the body with API_KEY's secret) and a unique X-Webhook-Id per request,
-- so that every request is stored (none is a duplicate).
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
local body = f:read("*a")
f:close()
local sig = os.getenv("SIG")
local key = os.getenv("API_KEY")
local run = tostring(os.time()) .. "-" .. tostring(math.random(1, 1000000))
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/", {
    ["Content-Type"] = "application/json",
    ["X-Webhook-Id"] = run .. "-" .. n,
    ["X-Webhook-Attempt"] = "1",
    ["X-Api-Key"] = key,
    ["X-Signature"] = sig,
  }, body)
end
