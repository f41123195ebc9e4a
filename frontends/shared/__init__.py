"""What both frontends need that is not I/O of one event loop: settings, the
runtime around the core, metrics, logs, the probe request and hypercorn setup."""
