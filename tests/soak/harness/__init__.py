"""The hostile and soak harness: a registry process driven by hostile peers and a fleet.

`tests/soak` runs it small enough for CI; each module is also a command for
the full run (`python -m tests.soak.harness.soak`, `.hostile_matrix`,
`.hostile_clients`, `.parked_wake`, `.cluster_faults`, from the project root;
docs/reliability.md and docs/cluster.md have the options and the figures). It
starts processes and speaks to the registry through the conformance helpers
(`conformance.server_process`, `conformance.fake_peers`,
`conformance.health_checker`, `conformance.client`), and prints its tables
with `bench.common`.

- `peers`: the hostile peer kinds and the peer server's driver;
- `scenario`: what the matrix and the soak share (clients, /proc figures, checks);
- `hostile_matrix`, `soak`: the hostile instances and the soak;
- `hostile_clients`, `parked_wake`: hostile API clients and a mass wake, measured by
  what a health-check client sees meanwhile;
- `cluster_faults`: etcd and nodes stalled, killed, put behind and wiped under a
  heartbeating fleet (it runs with the benchmarks' process helpers, `bench.processes`).
"""
