"""Where events are kept: the event store on Redis (its Lua scripts), the embedded store and its
journal.  I/O lives here; the pure core never imports it."""
