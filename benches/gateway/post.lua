-- wrk request: an OpenAI chat completion with a demo virtual key.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer sk-aispend-demo-search"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"say hello to the benchmark please"}]}'
