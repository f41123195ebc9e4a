"""What both frontends need that is not I/O of one event loop: settings, the
runtime around the core (built with each loop's `LoopParts`), the request flow
both apps run, metrics, logs, the probers and hypercorn setup."""
