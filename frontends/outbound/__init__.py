"""What the registry calls out to: the HTTP/1.1 pool, the etcd gateway client
and store driver, the cluster member, and the probers. These use anyio, which
runs on either loop, and import no loop, server or framework themselves."""
