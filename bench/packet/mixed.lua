-- A mix of methods, sizes and framings for make_capture.sh.
local paths = {
  "/s/100.txt", "/s/1024.txt", "/api/users/17", "/s/4096.txt", "/empty",
  "/gz/4096.txt", "/s/missing", "/api/orders/42/items", "/s/10240.txt", "/s/100.txt",
  "/gz/10240.txt", "/s/1024.txt", "/api/users/99", "/empty", "/s/65536.txt",
  "/gz/1024.txt", "/s/4096.txt", "/api/health", "/s/100.txt", "/gz/65536.txt",
}
local upload = string.rep("u", 3000)
local i = 0
request = function()
  i = i + 1
  if i % 9 == 0 then
    return wrk.format("POST", "/upload", { ["Content-Type"] = "application/octet-stream" }, upload)
  end
  local p = paths[(i % #paths) + 1]
  if i % 13 == 0 then
    return wrk.format("HEAD", p)
  end
  return wrk.format("GET", p)
end
