"""Admission (DESIGN.md §1 step 2, §4): per-key rate limits and budgets, before forwarding.

- `budgets`: which budgets a request counts against, their periods, the worst-case estimate
  and the money arithmetic (pure).
- `limits`: requests/tokens per minute as token buckets, in-flight caps (pure).
- `ledger`: reservations and counters, atomic; in the process (`LocalLedger`), or in
  Redis through Lua scripts (`redis_ledger.RedisLedger`).
- `gate`: the two calls the proxy makes, `admit` before forwarding and `settle` at the end.
- `alerts`: one e-mail per budget, period and threshold (80 %, 100 %), off the hot path.
"""
