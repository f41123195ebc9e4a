"""`python -m frontends serve ...` is the same as `service-discovery serve ...`."""

from frontends.cli import main

raise SystemExit(main())
