-- Eight pipelined requests per write, for make_capture.sh.
init = function(args)
  local r = {}
  local paths = { "/s/100.txt", "/api/users/1", "/s/1024.txt", "/empty",
                  "/gz/1024.txt", "/s/missing", "/api/users/2", "/s/4096.txt" }
  for k, p in ipairs(paths) do r[k] = wrk.format("GET", p) end
  req = table.concat(r)
end
request = function() return req end
